"""The photos a notebook trains on, as arrays: one call (notebooks 02–05).

``photos.load(DATA_DIR, IMAGE_SIZE, per_class=N)`` finds the photo folder as notebook 00
explains (:func:`helpers.data.datasets.get_photos`), checks every file (:mod:`helpers.data.checks`),
and returns raw 0–255 pixels and integer labels for three splits:

- **train**: ``per_class`` photos of each class (the same ones for the same seed);
- **val**: photos that choose the epoch to keep (``EarlyStopping``);
- **test**: photos that choose nothing, to report on. A folder without a ``test/`` split
  gives half of each class's validation photos to it (the rounded-down half: a class with
  one validation photo keeps it for validation), picked by a hash of class and file name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.data import datasets
from helpers.data import folders as data_mod


@dataclass
class Photos:
    """Pixels (N × size × size × 3, uint8) and labels of the train, val and test splits."""

    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_paths: list[Path]
    val_paths: list[Path]
    test_paths: list[Path]
    root: Path | None = None

    def __repr__(self) -> str:
        def counts(y):
            return ", ".join(f"{int(np.sum(y == i))} {name}" for i, name in enumerate(self.class_names))

        return (
            f"{self.root}: {len(self.class_names)} classes {self.class_names}, "
            f"{self.x_train.shape[1]}×{self.x_train.shape[2]} px\n"
            f"  train {len(self.y_train):4d} photos ({counts(self.y_train)})\n"
            f"  val   {len(self.y_val):4d} photos ({counts(self.y_val)})  — chooses the epoch\n"
            f"  test  {len(self.y_test):4d} photos ({counts(self.y_test)})  — reported"
        )


def _test_rank(path: Path, class_name: str, seed: int) -> tuple[int, str]:
    text = f"test:{seed}:{class_name}:{path.name}"  # a name that is not valid UTF-8 hashes as its bytes
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big"), str(path)


def splits(folder: data_mod.ImageFolder, seed: int = 0) -> dict[str, data_mod.Split]:
    """train / val / test of a checked photo folder; without a test split, half of each class's val is test."""
    if folder.test is not None and len(folder.test):
        return {"train": folder.train, "val": folder.val, "test": folder.test}
    to_test = set()
    for label, name in enumerate(folder.class_names):
        mine = [p for p, y in zip(folder.val.paths, folder.val.labels) if y == label]
        ranked = sorted(mine, key=lambda p: _test_rank(p, name, seed))
        to_test.update(ranked[: len(mine) // 2])
    val, test = data_mod.Split(), data_mod.Split()
    for path, label in zip(folder.val.paths, folder.val.labels):
        target = test if path in to_test else val
        target.paths.append(path)
        target.labels.append(label)
    return {"train": folder.train, "val": val, "test": test}


def class_names(data_dir: str | os.PathLike | None = None) -> list[str]:
    """The class names (folder names, sorted) of the photo folder, without decoding any photo."""
    return data_mod.load_folder(datasets.get_photos(data_dir), check=False).class_names


def load(
    data_dir: str | os.PathLike | None = None, image_size: int = 224, per_class: int | None = None, seed: int = 0
) -> Photos:
    """Find, check and decode the photos into train / val / test arrays at ``image_size``."""
    folder = data_mod.load_folder(datasets.get_photos(data_dir), per_class=per_class, seed=seed)
    parts = splits(folder, seed)
    arrays = {}
    for name, split in parts.items():
        arrays[f"x_{name}"] = data_mod.load_images(split.paths, image_size)
        arrays[f"y_{name}"] = np.asarray(split.labels, np.int32)
    return Photos(
        folder.class_names,
        train_paths=list(parts["train"].paths),
        val_paths=list(parts["val"].paths),
        test_paths=list(parts["test"].paths),
        root=folder.root,
        **arrays,
    )
