"""Photo folders: find classes, split train/val, pick N photos per class, load pixels.

Notebook 03 introduces these. A photo folder is either ``DIR/<class>/*.jpg`` (we make a
seeded, stratified validation split) or ``DIR/{train,val[,test]}/<class>/*.jpg`` (we use
the split you made). Splits and the "N photos per class" sample are decided by a hash of
each file's name, so adding photos to one class never reshuffles the others.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Split:
    """Image files and their integer labels (indices into the class names)."""

    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self, n_classes: int) -> list[int]:
        return [self.labels.count(i) for i in range(n_classes)]


@dataclass
class ImageFolder:
    """A labelled photo collection: class names and train / val (/ test) splits."""

    root: Path
    class_names: list[str]
    train: Split
    val: Split
    test: Split | None = None

    def summary(self) -> str:
        n = len(self.class_names)
        lines = [f"{self.root}: {n} classes"]
        for name in SPLIT_NAMES:
            split = getattr(self, name)
            if split is not None and len(split):
                counts = ", ".join(f"{c} {k}" for c, k in zip(self.class_names, split.counts(n)))
                lines.append(f"  {name:5s} {len(split):5d} photos ({counts})")
        return "\n".join(lines)


def _hash_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: the basis of stable splits and samples."""
    digest = hashlib.sha1(":".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _scan(folder: Path, class_names: list[str]) -> Split:
    split = Split()
    for label, name in enumerate(class_names):
        sub = folder / name
        for path in list_images(sub) if sub.is_dir() else []:
            split.paths.append(path)
            split.labels.append(label)
    return split


def load_folder(root: str | os.PathLike, val_fraction: float = 0.2, per_class: int | None = None,
                seed: int = 0) -> ImageFolder:
    """Read a photo folder into class names and splits (see the module docstring).

    ``per_class=N`` keeps only N training photos of each class, the same N for the same
    seed (the "small data" knob); validation keeps all its photos.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist; set WORKBOOK_DATA or pass --data DIR")
    has_splits = (root / "train").is_dir()
    class_root = root / "train" if has_splits else root
    class_names = [p.name for p in _class_folders(class_root)]
    if has_splits:
        train, val = _scan(root / "train", class_names), _scan(root / "val", class_names)
        test = _scan(root / "test", class_names) if (root / "test").is_dir() else None
    else:
        everything = _scan(root, class_names)
        train, val, test = Split(), Split(), None
        for path, label in zip(everything.paths, everything.labels):
            target = val if _hash_fraction("split", seed, path.name) < val_fraction else train
            target.paths.append(path)
            target.labels.append(label)
    empty = [c for c, n in zip(class_names, train.counts(len(class_names))) if n == 0]
    if len(class_names) - len(empty) < 2:
        raise ValueError(f"{class_root} has fewer than two classes with photos "
                         f"(class folders: {class_names}); a classifier needs at least two")
    if per_class is not None:
        train = sample_per_class(train, per_class, seed)
    return ImageFolder(root, class_names, train, val, test)


def sample_per_class(split: Split, n: int, seed: int = 0) -> Split:
    """The same ``n`` photos of every class for the same seed (stable when photos are added)."""
    if n < 1:
        raise ValueError(f"per_class must be at least 1, got {n}")
    ranked = sorted(zip(split.paths, split.labels), key=lambda pl: _hash_fraction("sample", seed, pl[0].name))
    out, taken = Split(), {}
    for path, label in ranked:
        if taken.get(label, 0) < n:
            taken[label] = taken.get(label, 0) + 1
            out.paths.append(path)
            out.labels.append(label)
    order = sorted(range(len(out)), key=lambda i: (out.labels[i], out.paths[i].name))
    return Split([out.paths[i] for i in order], [out.labels[i] for i in order])


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One photo as a ``size × size × 3`` uint8 RGB array (EXIF-rotated, centre-cropped)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
        image = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def load_images(paths: list[Path], size: int, workers: int | None = None) -> np.ndarray:
    """Many photos as one ``N × size × size × 3`` uint8 array, decoded in parallel threads."""
    if not paths:
        return np.zeros((0, size, size, 3), np.uint8)
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        return np.stack(list(pool.map(lambda p: load_image(p, size), paths)))
