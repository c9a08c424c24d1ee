"""Photo folders as the lessons use them: check one, load its splits, read its photos' pixels.

Notebook 03 introduces these. :func:`check_data` is the data report
(:mod:`helpers.data.survey` looks at every file); :func:`load_folder` turns a folder into class
names and train / val (/ test) splits (:class:`helpers.data.splits.Split`), optionally N photos per class
(:func:`helpers.data.splits.sample_per_class`); :func:`load_image` and :func:`load_images` decode
photos into arrays, applying the fixes the report announces.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from helpers.data.checks import MAX_PIXELS, MIN_SIDE, display_name, not_a_file_reason, to_rgb
from helpers.data.report import DataReport
from helpers.data.splits import SPLIT_NAMES, VAL_FRACTION, Split, sample_per_class
from helpers.data.survey import survey_folder


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
