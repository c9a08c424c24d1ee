"""Photo folders: find classes, split train/val, pick N photos per class, load pixels.

Notebook 03 introduces these. A photo folder is either ``DIR/<class>/*.jpg`` (we make a
seeded, stratified validation split) or ``DIR/{train,val[,test]}/<class>/*.jpg`` (we use
the split you made). Splits and the "N photos per class" sample are decided by a hash of
each file's class and name, class by class, so adding photos to one class never reshuffles
the others, and photos named alike in every class (``001.jpg``…) do not all land in one split.

Listing photos never opens anything that is not a regular file (a FIFO would hang the read),
and skips the workbook's own folders (a run's ``--out``, the activation cache) inside a photo
folder; both are reported.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from helpers.data.checks import (
    IMAGE_EXTENSIONS,
    JUNK_FOLDERS,
    MAX_PIXELS,
    MIN_SIDE,
    DataReport,
    FileCheck,
    check_image,
    display_name,
    find_duplicates,
    junk_reason,
    not_a_file_reason,
    to_rgb,
    workbook_folder_reason,
)

VAL_FRACTION = 0.2
"""Share of each class held out for validation when a folder has no split folders of its own."""
TINY_CLASS = 5
"""A class with fewer usable training photos than this gets a warning (too few to learn from)."""


def val_count(n: int, val_fraction: float = VAL_FRACTION) -> int:
    """How many of a class's ``n`` photos the automatic split holds out (``DIR/<class>/`` layout).

    ``round(n × val_fraction)``, but at least 2 from 3 photos on (one validation photo, one
    test photo: :func:`helpers.data.photos.splits` halves the held-out photos), at least 1 from 2
    photos, and always leaving one to train on.
    """
    if val_fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(round(n * val_fraction), 2 if n >= 3 else 1))


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
    report: DataReport | None = None  # what the data check fixed, skipped and warned about

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
    """Image files directly in ``folder`` (by extension; hidden files and OS junk skipped), sorted.

    A quick listing that decodes nothing; :func:`load_folder` also checks each file's contents.
    """
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and junk_reason(p.name) is None and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _skip_folder(name: str, path: Path | None = None, own: dict[Path, str] | None = None) -> str | None:
    if name in JUNK_FOLDERS:
        return f"{JUNK_FOLDERS[name]} folder"
    if name.startswith((".", "_")):
        return "hidden folder (name starts with '.' or '_')"
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        return "a folder named like a photo: not a photo, not looked into"
    if path is None:
        return None
    if own and Path(os.path.realpath(path)) in own:
        return own[Path(os.path.realpath(path))]
    return workbook_folder_reason(path)


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _files_below(folder: Path, ignored: list[tuple[Path, str]], own: dict[Path, str] | None = None) -> list[Path]:
    """Every file in ``folder`` and its subfolders (like Keras), minus junk folders, sorted.

    Symlinked folders are followed only while they stay inside ``folder``: a link that leads
    out of the class folder (to another class, or up the tree: a loop) is reported, not
    walked, so photos of other classes never get this class's label.
    """
    found, seen = [], set()
    real_root = Path(os.path.realpath(folder))
    for here, dirs, names in os.walk(folder, followlinks=True):
        info = os.stat(here)
        if (info.st_dev, info.st_ino) in seen:
            ignored.append((Path(here), "folder already visited through a link (a loop): not walked again"))
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        keep = []
        for d in sorted(dirs):
            why = _skip_folder(d, Path(here) / d, own)
            target = Path(os.path.realpath(Path(here) / d))
            if not why and os.path.islink(Path(here) / d) and not _inside(target, real_root):
                why = (
                    f"link to a folder outside the class folder ({target}): not followed "
                    f"(photos there are not labelled '{folder.name}')"
                )
            if why:
                ignored.append((Path(here) / d, why))
            else:
                keep.append(d)
        dirs[:] = keep
        found.extend(Path(here) / n for n in names)
    return sorted(found)


def _stray_photos(folder: Path) -> list[Path]:
    """Photos lying directly in ``folder`` where only sub-folders are expected (README files are fine)."""
    return list_images(folder)


def _split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root/train, "val": root/validation, …}`` for the folders that exist."""
    out: dict[str, Path] = {}
    for p in _subfolders(root):
        split = SPLIT_ALIASES.get(p.name.lower())
        if split and split not in out:
            out[split] = p
    return out


def _check_all(paths: list[Path], min_side: int, max_pixels: int, decode: bool) -> list[FileCheck]:
    def one(path: Path) -> FileCheck:
        if not decode:
            why = junk_reason(path.name) or not_a_file_reason(path)
            if why or path.suffix.lower() not in IMAGE_EXTENSIONS:
                return FileCheck(path).skip(why or f"not an image file type ({path.suffix or 'no extension'})")
            return FileCheck(path)
        try:
            return check_image(path, min_side=min_side, max_pixels=max_pixels)
        except Exception as exc:  # never let one odd file stop the whole check
            return FileCheck(path).skip(f"unexpected error while checking ({type(exc).__name__}: {exc})")

    if len(paths) < 16:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(one, paths))


def _flat_split(checks: list[FileCheck], val_fraction: float, seed: int) -> None:
    """Stratified ``train``/``val``: in each class, its usable photos are ranked by a hash of class and
    file name, and the first :func:`val_count` of them go to ``val`` (from 3 photos on, at least 2)."""
    by_class: dict[str, list[FileCheck]] = {}
    for c in checks:
        c.split = "train"
        if c.usable:
            by_class.setdefault(c.class_name, []).append(c)
    for name, members in by_class.items():
        ranked = sorted(members, key=lambda c: (_hash_fraction("split", seed, name, c.path.name), str(c.path)))
        for c in ranked[: val_count(len(members), val_fraction)]:
            c.split = "val"


def _scan_class_folders(
    folder: Path, split: str, checks: list[FileCheck], ignored: list[tuple[Path, str]], own: dict[Path, str]
) -> list[str]:
    """Class names under ``folder``; every file below them goes into ``checks`` (to be checked)."""
    names = []
    for class_dir in _subfolders(folder):
        why = _skip_folder(class_dir.name, class_dir, own)
        if why:
            ignored.append((class_dir, why))
            continue
        names.append(class_dir.name)
        for path in _files_below(class_dir, ignored, own):
            checks.append(FileCheck(path, split=split, class_name=class_dir.name))
    return names


def survey_folder(
    root: str | os.PathLike,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
    decode: bool = True,
    own_folders: dict[str | os.PathLike, str] | None = None,
) -> DataReport:
    """Look at every file of a photo folder and report; never raises for bad photos or layouts.

    The report's ``errors`` say why training cannot start (no folder, fewer than two
    classes); its ``warnings`` cover dropped classes (``report.dropped`` says why),
    train/val class mismatches and duplicates across splits or classes. ``decode=False``
    checks only names (no pixels read). ``own_folders`` (folder → why) are skipped wherever
    they sit, even while still empty: ``train`` passes its ``--out`` and cache folders.
    """
    own = {Path(os.path.realpath(Path(k).expanduser())): why for k, why in (own_folders or {}).items()}
    started = time.perf_counter()
    root = Path(root).expanduser()
    report = DataReport(root, "", [], [])
    if not root.is_dir():
        report.errors.append(
            f"photo folder {root} does not exist: pass the folder that holds one "
            "sub-folder per class, or set WORKBOOK_DATA"
        )
        return report
    splits = _split_folders(root)
    if splits and "train" not in splits:
        report.errors.append(
            f"{root} has {', '.join(p.name + '/' for p in splits.values())} but no train/ "
            "folder: add DIR/train/<class>/, or use one folder per class (DIR/<class>/)"
        )
        return report
    ignored: list[tuple[Path, str]] = []
    checks: list[FileCheck] = []
    no_val_folder: set[str] = set()  # classes already reported as missing from val/
    if "train" in splits:
        report.layout = "DIR/{" + ",".join(s for s in SPLIT_NAMES if s in splits) + "}/<class>/"
        for p in _subfolders(root):
            if p not in splits.values():
                why = _skip_folder(p.name, p, own)
                if why is None or why.startswith("the "):  # the workbook's own folders are said too
                    ignored.append((p, why or "folder beside train/ that is not a split (train, val, test): not used"))
        for p in _stray_photos(root):
            ignored.append((p, "photo outside the class folders: not used"))
        class_sets = {}
        for split, folder in splits.items():
            class_sets[split] = _scan_class_folders(folder, split, checks, ignored, own)
            for p in _stray_photos(folder):
                ignored.append((p, f"photo directly in {split}/, outside any class folder: not used"))
        class_names = list(class_sets["train"])
        for split in ("val", "test"):
            if split in class_sets:
                extra = sorted(set(class_sets[split]) - set(class_names))
                missing = sorted(set(class_names) - set(class_sets[split]))
                if extra:
                    report.warnings.append(
                        f"{split}/ has classes that train/ has not: {', '.join(extra)}; "
                        f"their photos are not used (add them to train/ or rename the folders)"
                    )
                if missing:
                    no_val_folder.update(missing if split == "val" else [])
                    report.warnings.append(
                        f"{split}/ has no folder for: {', '.join(missing)}; "
                        f"{split} accuracy will not measure these classes"
                    )
        if "val" not in splits:
            report.warnings.append(
                "train/ but no val/ folder: there is nothing to measure accuracy on; "
                "add DIR/val/<class>/ (or use the DIR/<class>/ layout for an automatic split)"
            )
    else:
        report.layout = "DIR/<class>/"
        class_names = _scan_class_folders(root, "", checks, ignored, own)
        for p in _stray_photos(root):
            ignored.append((p, "photo outside the class folders: not used (make one folder per class)"))
    done = _check_all([c.path for c in checks], min_side, max_pixels, decode)
    for placeholder, result in zip(checks, done):
        result.split, result.class_name = placeholder.split, placeholder.class_name
    checks = done
    if report.layout == "DIR/<class>/":
        _flat_split(checks, val_fraction, seed)
    report.files, report.ignored = checks, ignored

    in_train = {c.class_name for c in checks if c.usable and c.split == "train"}
    for name in class_names:
        if name not in in_train:
            report.dropped[name] = _why_dropped(name, checks, "train/" if "train" in splits else "")
            report.warnings.append(f"class '{name}' {report.dropped[name]}: the class is dropped")
    report.class_names = [n for n in class_names if n in in_train]
    _class_size_warnings(
        report, "train" in splits and "val" not in splits, val_fraction, no_val_folder, has_test="test" in splits
    )
    for p, why in ignored:
        if why.startswith("link to a folder outside"):
            report.warnings.append(f"{display_name(p, root)} is a {why}")
    if len(report.class_names) < 2:
        found = ", ".join(f"'{n}'" for n in report.class_names) or "none"
        hint = ""
        if len(class_names) == 1 and "train" not in splits and _subfolders(root / class_names[0]):
            hint = f" Did you mean the folder inside it, {root / class_names[0]}?"
        report.errors.append(
            f"{root} has {len(report.class_names)} class(es) with usable photos ({found}); a classifier "
            f"needs at least two. Expected one sub-folder per class: {root}/<class>/*.jpg, or "
            f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg.{hint}"
        )
    if decode:
        report.duplicates = [
            d for d in find_duplicates(checks) if {d.first.class_name, d.second.class_name} <= set(report.class_names)
        ]
    leaks = [d for d in report.duplicates if d.leak]
    if leaks:
        exact = sum(d.exact for d in leaks)
        report.warnings.append(
            f"possible leakage: {len(leaks)} photo pairs appear in two splits ({exact} exact copies, "
            f"{len(leaks) - exact} near-duplicates), e.g. {display_name(leaks[0].first.path, root)} and "
            f"{display_name(leaks[0].second.path, root)}; the validation score is inflated until you "
            "delete one photo of each pair"
        )
    conflicts = [d for d in report.duplicates if d.conflicting_labels]
    if conflicts:
        report.warnings.append(
            f"conflicting labels: {len(conflicts)} pictures are filed under two classes, e.g. "
            f"{display_name(conflicts[0].first.path, root)} and {display_name(conflicts[0].second.path, root)}; "
            "keep each picture in the one class it belongs to"
        )
    report.seconds = time.perf_counter() - started
    return report


def _why_dropped(name: str, checks: list[FileCheck], where: str) -> str:
    """The true reason a class folder has nothing to train on (said in check-data and by train)."""
    mine = [c for c in checks if c.class_name == name and (c.split == "train" or not where)]
    elsewhere = [c for c in checks if c.class_name == name and c.usable and c.split != "train"]
    if elsewhere and where:
        places = sorted({c.split for c in elsewhere})
        return (
            f"has {len(elsewhere)} usable photo{'s' * (len(elsewhere) != 1)} in {', '.join(p + '/' for p in places)}"
            f" but none in {where}{name}/ (move some to {where}{name}/)"
        )
    if not mine:
        return f"has no files in {where}{name}/ (add photos or remove the folder)"
    return (
        f"has none of its {len(mine)} file{'s' * (len(mine) != 1)} in {where}{name}/ usable as a photo "
        "(check-data says why for each; add photos or remove the folder)"
    )


def _class_size_warnings(
    report: DataReport, no_val_split: bool, val_fraction: float, already_reported: set[str], has_test: bool = False
) -> None:
    """Warn about classes too small to learn from, and classes absent from the validation or test split.

    Without a ``test/`` folder the test photos are half of each class's validation photos
    (:func:`helpers.data.photos.splits`), so a class with one validation photo has none to test on.
    """
    counts = report.counts()
    split_layout = report.layout != "DIR/<class>/"
    for name in report.class_names:
        n_train, n_val = counts[name].get("train", 0), counts[name].get("val", 0)
        if n_train < TINY_CLASS:
            report.warnings.append(
                f"class '{name}' has only {n_train} training photo{'s' * (n_train != 1)}: "
                f"too few to learn from (add photos: at least {TINY_CLASS}, better 20 or more)"
            )
        if n_val == 0 and not no_val_split and name not in already_reported and (split_layout or val_fraction > 0):
            where = f"val/{name}/" if split_layout else "the validation split"
            report.warnings.append(
                f"class '{name}' has no photos in {where}: its accuracy is not measured "
                + (
                    "(add photos to val/" + name + "/)"
                    if split_layout
                    else "(a class needs at least 2 photos to get one validation photo)"
                )
            )
        if n_val == 1 and not has_test:
            report.warnings.append(
                f"class '{name}' has 1 validation photo and none left for the test split (half of each class's "
                "validation photos): its test accuracy is not measured "
                + (f"(add a photo to val/{name}/)" if split_layout else "(a class needs at least 3 photos)")
            )


def check_data(
    root: str | os.PathLike,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> DataReport:
    """The data report of notebook 03 and ``python -m helpers check-data DIR``: print it.

    Lists per class the count and sizes of usable photos, and every file that will be
    skipped or is fixed on loading, with the reason. Your files are only read.
    """
    return survey_folder(root, val_fraction=val_fraction, seed=seed, min_side=min_side, max_pixels=max_pixels)


def _split_from(report: DataReport, split: str) -> Split:
    out = Split()
    index = {name: i for i, name in enumerate(report.class_names)}
    for c in sorted(report.valid, key=lambda c: (index[c.class_name], str(c.path))):
        if c.split == split:
            out.paths.append(c.path)
            out.labels.append(index[c.class_name])
    return out


def load_folder(
    root: str | os.PathLike,
    val_fraction: float = VAL_FRACTION,
    per_class: int | None = None,
    seed: int = 0,
    check: bool = True,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> ImageFolder:
    """Read a photo folder into class names and splits (see the module docstring).

    Every file is checked first (``check=False``: names only, no decoding), and only usable
    photos reach the splits; ``folder.report`` says what was fixed, skipped or suspicious.
    ``per_class=N`` keeps only N training photos of each class, the same N for the same
    seed (the "small data" knob); validation keeps all its photos.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist; set WORKBOOK_DATA or pass --data DIR")
    report = survey_folder(
        root, val_fraction=val_fraction, seed=seed, min_side=min_side, max_pixels=max_pixels, decode=check
    )
    if report.errors:
        raise ValueError(report.errors[0])
    train, val = _split_from(report, "train"), _split_from(report, "val")
    test = _split_from(report, "test") if any(c.split == "test" for c in report.files) else None
    if per_class is not None:
        train = sample_per_class(train, per_class, seed)
    return ImageFolder(root, report.class_names, train, val, test, report)


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


class PhotoError(ValueError):
    """A photo that cannot be loaded: the message names the file, says why and what to do."""


def load_image(path, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One photo as a ``size × size × 3`` uint8 RGB array, centre-cropped.

    The fixes the data report lists are applied here (``helpers.data.checks.to_rgb``): EXIF
    orientation, transparency onto white, 16-bit scaled, grayscale/palette/CMYK to RGB,
    first frame of an animation. Large JPEGs are decoded at reduced scale (draft mode).

    The pixel count is read from the header and checked against ``max_pixels`` before
    anything is decoded, so a small file that claims a huge picture (a decompression
    bomb) costs no memory. Any problem raises :class:`PhotoError` naming the file.
    """
    name = display_name(Path(path)) if isinstance(path, (str, os.PathLike)) else "the photo"
    if isinstance(path, (str, os.PathLike)):
        odd = not_a_file_reason(path)
        if odd:
            raise PhotoError(f"{name}: {odd}" + ("" if odd == "no such file" else "; pass a photo file"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit below
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(
                    f"{name}: too large to decode safely ({width}×{height} = "
                    f"{width * height / 1e6:.0f} megapixels, the limit is {max_pixels / 1e6:.0f}); "
                    "resize it"
                )
            image.draft(None, (size, size))
            image = to_rgb(image)
            image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except PhotoError:
        raise
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"{name}: too large to decode safely ({exc}); resize it") from None
    except FileNotFoundError:
        raise PhotoError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise PhotoError(f"{name}: a folder, not a photo") from None
    except PermissionError:
        raise PhotoError(f"{name}: cannot be read (permission denied); check its permissions") from None
    except MemoryError:
        raise PhotoError(f"{name}: not enough memory to decode it; resize it") from None
    except Exception as exc:  # PIL raises many types for corrupt or unknown data
        raise PhotoError(
            f"{name}: not an image we can read ({type(exc).__name__}: {exc}); "
            "use a JPEG or PNG photo (check-data lists such files)"
        ) from None


def _workers(workers: int | None) -> int:
    return workers or min(8, (os.cpu_count() or 2) * 2)


def load_images(paths: list[Path], size: int, workers: int | None = None) -> np.ndarray:
    """Many photos as one ``N × size × size × 3`` uint8 array, decoded in parallel threads.

    Raises :class:`PhotoError` (naming the file) at the first photo that cannot be loaded;
    :func:`load_images_skipping` goes on past bad photos instead.
    """
    if not paths:
        return np.zeros((0, size, size, 3), np.uint8)
    with ThreadPoolExecutor(_workers(workers)) as pool:
        return np.stack(list(pool.map(lambda p: load_image(p, size), paths)))


def load_images_skipping(paths: list, size: int, workers: int | None = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Like :func:`load_images`, but a bad photo is left out: ``(pixels, kept indices, problems)``.

    ``problems`` has one line per photo left out, naming it and why.
    """

    def one(p):
        try:
            return load_image(p, size), None
        except PhotoError as exc:
            return None, str(exc)

    with ThreadPoolExecutor(_workers(workers)) as pool:
        results = list(pool.map(one, paths))
    kept = [i for i, (pixels, _) in enumerate(results) if pixels is not None]
    problems = [problem for _, problem in results if problem]
    pixels = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
    return pixels, kept, problems
