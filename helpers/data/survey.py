"""The folder survey: find a photo folder's layout, classes and files, check each file, and report.

A photo folder is either ``DIR/<class>/*.jpg`` (a seeded, stratified validation split is made,
:mod:`helpers.data.splits`) or ``DIR/{train,val[,test]}/<class>/*.jpg`` (the split you made).
:func:`survey_folder` never raises for bad photos or layouts: it returns a
:class:`helpers.data.report.DataReport` whose errors say why training cannot start.

Listing photos never opens anything that is not a regular file (a FIFO would hang the read),
and skips the workbook's own folders (a run's ``--out``, the activation cache) inside a photo
folder; both are reported. Each folder left out gets a :class:`SkipKind`, and what is said
about it depends on that kind, never on the wording of its message.
"""

from __future__ import annotations

import enum
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data.checks import (
    IMAGE_EXTENSIONS,
    JUNK_FOLDERS,
    MAX_PIXELS,
    MIN_SIDE,
    FileCheck,
    check_image,
    display_name,
    junk_reason,
    not_a_file_reason,
    workbook_folder_reason,
)
from helpers.data.report import DataReport, find_duplicates
from helpers.data.splits import SPLIT_ALIASES, SPLIT_NAMES, VAL_FRACTION, flat_split

TINY_CLASS = 5
"""A class with fewer usable training photos than this gets a warning (too few to learn from)."""

FLAT_LAYOUT = "DIR/<class>/"


class SkipKind(enum.Enum):
    """Why a folder or file is left out of the survey, as a kind (what is said about it depends on this)."""

    JUNK = "junk"  # operating-system or tool metadata (__MACOSX, .ipynb_checkpoints, …)
    HIDDEN = "hidden"  # name starts with '.' or '_'
    PHOTO_NAMED = "photo-named"  # a folder named like a photo
    WORKBOOK = "workbook"  # the workbook's own folders (--out, the activation cache): said even beside train/
    LINK_OUT = "link-out"  # a symlink leading out of its class folder: also a warning
    LOOP = "loop"  # a folder reached again through a link
    NOT_A_SPLIT = "not-a-split"  # a folder beside train/ that is not a split folder
    STRAY = "stray"  # a photo outside the class folders


@dataclass(frozen=True)
class Skip:
    """One thing left out of the survey: its kind and the message said about it."""

    kind: SkipKind
    why: str


@dataclass
class _Survey:
    """What a survey collects while it walks a folder."""

    own: dict[Path, str]
    checks: list[FileCheck] = field(default_factory=list)
    ignored: list[tuple[Path, Skip]] = field(default_factory=list)

    def skip(self, path: Path, kind: SkipKind, why: str) -> None:
        self.ignored.append((path, Skip(kind, why)))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension; hidden files and OS junk skipped), sorted.

    A quick listing that decodes nothing; :func:`helpers.data.folders.load_folder` also checks each file's contents.
    """
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and junk_reason(p.name) is None and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def skip_folder(name: str, path: Path | None = None, own: dict[Path, str] | None = None) -> Skip | None:
    """Why a folder is not looked into (as a :class:`Skip`), or None when it may hold photos."""
    if name in JUNK_FOLDERS:
        return Skip(SkipKind.JUNK, f"{JUNK_FOLDERS[name]} folder")
    if name.startswith((".", "_")):
        return Skip(SkipKind.HIDDEN, "hidden folder (name starts with '.' or '_')")
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        return Skip(SkipKind.PHOTO_NAMED, "a folder named like a photo: not a photo, not looked into")
    if path is None:
        return None
    if own and Path(os.path.realpath(path)) in own:
        return Skip(SkipKind.WORKBOOK, own[Path(os.path.realpath(path))])
    why = workbook_folder_reason(path)
    return Skip(SkipKind.WORKBOOK, why) if why else None


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _files_below(folder: Path, survey: _Survey) -> list[Path]:
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
            survey.skip(Path(here), SkipKind.LOOP, "folder already visited through a link (a loop): not walked again")
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        keep = []
        for d in sorted(dirs):
            skip = skip_folder(d, Path(here) / d, survey.own)
            target = Path(os.path.realpath(Path(here) / d))
            if not skip and os.path.islink(Path(here) / d) and not _inside(target, real_root):
                skip = Skip(
                    SkipKind.LINK_OUT,
                    f"link to a folder outside the class folder ({target}): not followed "
                    f"(photos there are not labelled '{folder.name}')",
                )
            if skip:
                survey.ignored.append((Path(here) / d, skip))
            else:
                keep.append(d)
        dirs[:] = keep
        found.extend(Path(here) / n for n in names)
    return sorted(found)


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


def _scan_class_folders(folder: Path, split: str, survey: _Survey) -> list[str]:
    """Class names under ``folder``; every file below them goes into ``survey.checks`` (to be checked)."""
    names = []
    for class_dir in _subfolders(folder):
        skip = skip_folder(class_dir.name, class_dir, survey.own)
        if skip:
            survey.ignored.append((class_dir, skip))
            continue
        names.append(class_dir.name)
        for path in _files_below(class_dir, survey):
            survey.checks.append(FileCheck(path, split=split, class_name=class_dir.name))
    return names


def _survey_split_layout(root: Path, splits: dict[str, Path], report: DataReport, survey: _Survey) -> dict[str, list]:
    """``DIR/{train,val[,test]}/<class>/``: collect every split's files; ``{split: its class names}``."""
    report.layout = "DIR/{" + ",".join(s for s in SPLIT_NAMES if s in splits) + "}/<class>/"
    for p in _subfolders(root):
        if p not in splits.values():
            skip = skip_folder(p.name, p, survey.own)
            if skip is None:
                survey.skip(
                    p, SkipKind.NOT_A_SPLIT, "folder beside train/ that is not a split (train, val, test): not used"
                )
            elif skip.kind is SkipKind.WORKBOOK:  # the workbook's own folders are said too
                survey.ignored.append((p, skip))
    for p in list_images(root):
        survey.skip(p, SkipKind.STRAY, "photo outside the class folders: not used")
    class_sets = {}
    for split, folder in splits.items():
        class_sets[split] = _scan_class_folders(folder, split, survey)
        for p in list_images(folder):
            survey.skip(p, SkipKind.STRAY, f"photo directly in {split}/, outside any class folder: not used")
    return class_sets


def _split_class_warnings(class_sets: dict[str, list], splits: dict[str, Path], report: DataReport) -> set[str]:
    """Warn about classes that val/ or test/ have and train/ has not, and the reverse; no val/ at all.

    Returns the classes already reported as missing from val/ (not warned about again).
    """
    no_val_folder: set[str] = set()
    for split in ("val", "test"):
        if split in class_sets:
            extra = sorted(set(class_sets[split]) - set(class_sets["train"]))
            missing = sorted(set(class_sets["train"]) - set(class_sets[split]))
            if extra:
                report.warnings.append(
                    f"{split}/ has classes that train/ has not: {', '.join(extra)}; "
                    f"their photos are not used (add them to train/ or rename the folders)"
                )
            if missing:
                no_val_folder.update(missing if split == "val" else [])
                report.warnings.append(
                    f"{split}/ has no folder for: {', '.join(missing)}; {split} accuracy will not measure these classes"
                )
    if "val" not in splits:
        report.warnings.append(
            "train/ but no val/ folder: there is nothing to measure accuracy on; "
            "add DIR/val/<class>/ (or use the DIR/<class>/ layout for an automatic split)"
        )
    return no_val_folder


def _layout_error(root: Path, splits: dict[str, Path]) -> str | None:
    """Why ``root`` cannot be surveyed at all (no folder; split folders without train/), else None."""
    if not root.is_dir():
        return (
            f"photo folder {root} does not exist: pass the folder that holds one "
            "sub-folder per class, or set WORKBOOK_DATA"
        )
    if splits and "train" not in splits:
        return (
            f"{root} has {', '.join(p.name + '/' for p in splits.values())} but no train/ "
            "folder: add DIR/train/<class>/, or use one folder per class (DIR/<class>/)"
        )
    return None


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
    splits = _split_folders(root) if root.is_dir() else {}
    error = _layout_error(root, splits)
    if error:
        report.errors.append(error)
        return report
    survey = _Survey(own)
    no_val_folder: set[str] = set()
    if "train" in splits:
        class_sets = _survey_split_layout(root, splits, report, survey)
        class_names = list(class_sets["train"])
        no_val_folder = _split_class_warnings(class_sets, splits, report)
    else:
        report.layout = FLAT_LAYOUT
        class_names = _scan_class_folders(root, "", survey)
        for p in list_images(root):
            survey.skip(p, SkipKind.STRAY, "photo outside the class folders: not used (make one folder per class)")
    checks = _check_all([c.path for c in survey.checks], min_side, max_pixels, decode)
    for placeholder, result in zip(survey.checks, checks):
        result.split, result.class_name = placeholder.split, placeholder.class_name
    if report.layout == FLAT_LAYOUT:
        flat_split(checks, val_fraction, seed)
    report.files, report.ignored = checks, [(p, skip.why) for p, skip in survey.ignored]
    _drop_classes(report, class_names, "train/" if "train" in splits else "")
    _class_size_warnings(
        report, "train" in splits and "val" not in splits, val_fraction, no_val_folder, has_test="test" in splits
    )
    for p, skip in survey.ignored:
        if skip.kind is SkipKind.LINK_OUT:
            report.warnings.append(f"{display_name(p, root)} is a {skip.why}")
    if len(report.class_names) < 2:
        report.errors.append(_too_few_classes(root, report.class_names, class_names, flat="train" not in splits))
    if decode:
        report.duplicates = [
            d for d in find_duplicates(checks) if {d.first.class_name, d.second.class_name} <= set(report.class_names)
        ]
    report.warn_about_duplicates()
    report.seconds = time.perf_counter() - started
    return report


def _drop_classes(report: DataReport, class_names: list[str], where: str) -> None:
    """Keep the classes with usable training photos; say why each other class is dropped."""
    in_train = {c.class_name for c in report.files if c.usable and c.split == "train"}
    for name in class_names:
        if name not in in_train:
            report.dropped[name] = _why_dropped(name, report.files, where)
            report.warnings.append(f"class '{name}' {report.dropped[name]}: the class is dropped")
    report.class_names = [n for n in class_names if n in in_train]


def _too_few_classes(root: Path, usable: list[str], class_names: list[str], flat: bool) -> str:
    """The error for a folder with fewer than two usable classes (with a hint when one folder is too high)."""
    found = ", ".join(f"'{n}'" for n in usable) or "none"
    hint = ""
    if len(class_names) == 1 and flat and _subfolders(root / class_names[0]):
        hint = f" Did you mean the folder inside it, {root / class_names[0]}?"
    return (
        f"{root} has {len(usable)} class(es) with usable photos ({found}); a classifier "
        f"needs at least two. Expected one sub-folder per class: {root}/<class>/*.jpg, or "
        f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg.{hint}"
    )


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
    split_layout = report.layout != FLAT_LAYOUT
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
