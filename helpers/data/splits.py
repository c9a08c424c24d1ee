"""The split rules: which photo trains, which validates, and which N photos per class a sample keeps.

Both are decided by a hash of each file's class and name (:func:`hash_fraction`), class by
class, so adding photos to one class never reshuffles the others, and photos named alike in
every class (``001.jpg``…) do not all land in one split. ``helpers.data.survey`` applies the
automatic split while it looks at a folder; ``helpers.data.folders`` samples per class.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data.checks import FileCheck

VAL_FRACTION = 0.2
"""Share of each class held out for validation when a folder has no split folders of its own."""

SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def val_count(n: int, val_fraction: float = VAL_FRACTION) -> int:
    """How many of a class's ``n`` photos the automatic split holds out (``DIR/<class>/`` layout).

    ``round(n × val_fraction)``, but at least 2 from 3 photos on (one validation photo, one
    test photo: :func:`helpers.data.photos.splits` halves the held-out photos), at least 1 from 2
    photos, and always leaving one to train on.
    """
    if val_fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(round(n * val_fraction), 2 if n >= 3 else 1))


@dataclass
class Split:
    """Image files and their integer labels (indices into the class names)."""

    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self, n_classes: int) -> list[int]:
        return [self.labels.count(i) for i in range(n_classes)]


def hash_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: the basis of stable splits and samples."""
    # surrogateescape: a file name that is not valid UTF-8 (Linux allows any bytes) hashes as its bytes
    digest = hashlib.sha1(":".join(str(p) for p in parts).encode("utf-8", "surrogateescape")).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def flat_split(checks: list[FileCheck], val_fraction: float, seed: int) -> None:
    """Stratified ``train``/``val``: in each class, its usable photos are ranked by a hash of class and
    file name, and the first :func:`val_count` of them go to ``val`` (from 3 photos on, at least 2)."""
    by_class: dict[str, list[FileCheck]] = {}
    for c in checks:
        c.split = "train"
        if c.usable:
            by_class.setdefault(c.class_name, []).append(c)
    for name, members in by_class.items():
        ranked = sorted(members, key=lambda c: (hash_fraction("split", seed, name, c.path.name), str(c.path)))
        for c in ranked[: val_count(len(members), val_fraction)]:
            c.split = "val"


def sample_per_class(split: Split, n: int, seed: int = 0) -> Split:
    """The same ``n`` photos of every class for the same seed (stable when photos are added)."""
    if n < 1:
        raise ValueError(f"per_class must be at least 1, got {n}")
    ranked = sorted(zip(split.paths, split.labels), key=lambda pl: hash_fraction("sample", seed, pl[0].name))
    out, taken = Split(), {}
    for path, label in ranked:
        if taken.get(label, 0) < n:
            taken[label] = taken.get(label, 0) + 1
            out.paths.append(path)
            out.labels.append(label)
    order = sorted(range(len(out)), key=lambda i: (out.labels[i], out.paths[i].name))
    return Split([out.paths[i] for i in order], [out.labels[i] for i in order])
