"""The per-file checks: is one file a usable photo, one fixed on loading, or one to skip, and why.

Notebook 03 runs them before training (``check_data`` in ``helpers.data.folders``), and so does
``python -m helpers check-data DIR``. This module looks at ONE file at a time
(:func:`check_image`); ``helpers.data.survey`` finds the files and decides the splits, and
``helpers.data.report`` turns a folder's worth of results into a :class:`~helpers.data.report.DataReport`.

Nothing here ever modifies, moves or deletes a user's file: every check reads the bytes,
decodes them in memory and throws the pixels away. Nothing is cached either, so the
report is always about the files as they are now.

A photo is one of:

``ok``       usable as it is;
``fixed``    usable, but :func:`to_rgb` changes it on loading (EXIF rotation, CMYK, alpha, …);
``skipped``  not used for training (corrupt, empty, not an image, tiny, huge, OS junk, …).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
"""File endings the workbook reads as photos (Pillow decodes them all)."""

MIN_SIDE = 32
"""Photos whose shorter side is below this many pixels are skipped as too small."""

MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
"""Photos with more pixels than this are skipped (decompression-bomb guard; Pillow's own limit)."""

OS_JUNK = {
    ".ds_store": "macOS Finder metadata (.DS_Store)",
    "thumbs.db": "Windows thumbnail cache (Thumbs.db)",
    "ehthumbs.db": "Windows thumbnail cache (ehthumbs.db)",
    "desktop.ini": "Windows folder settings (desktop.ini)",
    ".directory": "KDE folder settings (.directory)",
    ".localized": "macOS folder name file (.localized)",
    "icon\r": "macOS custom folder icon",
}
JUNK_FOLDERS = {
    "__MACOSX": "macOS archive metadata",
    ".ipynb_checkpoints": "Jupyter checkpoints",
    "@eaDir": "Synology thumbnails",
    "$RECYCLE.BIN": "Windows recycle bin",
    ".git": "git metadata",
    ".Trash": "trash",
    ".Spotlight-V100": "macOS index",
}
UNSUPPORTED = {
    ".heic": "HEIC (iPhone) photo: Pillow cannot read it here; export or convert it to JPEG",
    ".heif": "HEIF photo: Pillow cannot read it here; convert it to JPEG",
    ".avif": "AVIF image: convert it to JPEG or PNG",
    ".svg": "SVG is a drawing, not a photo: export it to PNG",
    ".cr2": "camera RAW file: export it to JPEG",
    ".nef": "camera RAW file: export it to JPEG",
    ".arw": "camera RAW file: export it to JPEG",
    ".dng": "camera RAW file: export it to JPEG",
    ".raw": "camera RAW file: export it to JPEG",
    ".psd": "Photoshop file: export it to JPEG or PNG",
}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
EXIF_ORIENTATION = 0x0112


@dataclass
class FileCheck:
    """What :func:`check_image` found out about one file."""

    path: Path
    status: str = "ok"  # "ok" | "fixed" | "skipped"
    reasons: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None  # width, height as the photo will be seen (upright)
    format: str | None = None  # Pillow's format name, e.g. "JPEG"
    digest: str | None = None  # sha1 of the bytes (exact duplicates)
    fingerprint: int | None = None  # 64-bit difference hash (near duplicates) …
    thumbnail: np.ndarray | None = field(default=None, repr=False)  # … and 8×8 colours to confirm
    split: str = ""  # set by helpers.data.folders: "train" | "val" | "test"
    class_name: str = ""

    @property
    def usable(self) -> bool:
        """True when the photo reaches training (``ok`` or ``fixed``)."""
        return self.status != "skipped"

    def skip(self, reason: str) -> FileCheck:
        self.status = "skipped"
        self.reasons.append(reason)
        return self

    def fix(self, reason: str) -> FileCheck:
        if self.status == "ok":
            self.status = "fixed"
        self.reasons.append(reason)
        return self


def junk_reason(name: str) -> str | None:
    """Why a file name is operating-system junk or hidden (and so never a photo), else None."""
    lower = name.lower()
    if lower in OS_JUNK:
        return f"OS metadata file: {OS_JUNK[lower]}"
    if name.startswith("._"):
        return "macOS resource fork ('._' file), not the photo itself"
    if name.startswith("."):
        return "hidden file (name starts with '.')"
    if name.startswith("~$") or lower.endswith((".tmp", ".part", ".crdownload")):
        return "temporary or unfinished download file"
    return None


def not_a_file_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file (a FIFO, socket, device, folder, dangling link), else None.

    Asked with ``stat`` only, so nothing is ever opened: reading a FIFO would wait forever.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a link to a file that does not exist: nothing to read" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return f"{kind}, not a photo file: not opened"


WORKBOOK_MARKERS = {
    "run.json": "the workbook's output folder (holds run.json)",
    "notebooks.json": "the notebook runner's output folder (holds notebooks.json)",
}
"""Files that mark a folder as written by the workbook, not a folder of photos."""


def workbook_folder_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is one of the workbook's own folders (a run's ``--out``, the activation cache), else None.

    Such folders may sit inside a photo folder (``--out DIR/runs``); they hold no photos, so
    listing photos skips them, and the data's digest (``helpers.run.runs``) leaves them out.
    """
    folder = Path(folder)
    for marker, why in WORKBOOK_MARKERS.items():
        if (folder / marker).is_file():
            return f"{why}, not photos"
    try:
        if _cache_folder(folder) or any(_cache_folder(p) for p in folder.iterdir() if p.is_dir()):
            return "the workbook's activation cache (python -m helpers cache --list), not photos"
    except OSError:
        return None
    return None


def _cache_folder(folder: Path) -> bool:
    """One folder of the activation cache: ``<cut>-<size>px-<key>/`` holding a ``meta.json``."""
    return bool(re.search(r"-\d+px-[0-9a-f]{24}$", folder.name)) and (folder / "meta.json").is_file()


MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _magic_format(data: bytes) -> str | None:
    """The image format a file's first bytes claim, if any (WebP is RIFF....WEBP)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for magic, fmt in MAGIC.items() if data.startswith(magic)), None)


def _sniff(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML/XML page saved with an image extension (a failed download?)"
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith(b"pk\x03\x04"):
        return "a zip archive"
    try:
        data[:512].decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "unknown binary data"


_JPEG_SEGMENTS_WITHOUT_LENGTH = {0x01, 0xD8, 0xD9} | set(range(0xD0, 0xD8))


def jpeg_stream_problem(data: bytes) -> str | None:
    """What is wrong with a JPEG's marker structure (as libjpeg would complain), or None.

    Pillow decodes past "corrupt data" warnings that TensorFlow's decoder treats as
    errors, so the entropy-coded data is walked here: every 0xFF byte in it must be
    stuffing (FF 00), a restart marker or a real marker, and the stream must end with EOI.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    ff = np.flatnonzero(buffer[:-1] == 0xFF)
    nxt = buffer[ff + 1]
    keep = (nxt != 0x00) & (nxt != 0xFF) & ~((nxt >= 0xD0) & (nxt <= 0xD7))
    candidates = ff[keep]
    position, scanning = 2, False  # after SOI; inside entropy-coded data after SOS
    for at in candidates:
        if at < position:
            continue  # inside a segment we already skipped
        marker = int(buffer[at + 1])
        if marker == 0xD9:
            return None  # EOI: a complete stream
        if marker in _JPEG_SEGMENTS_WITHOUT_LENGTH:
            position = at + 2
            continue
        start_of_frame = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if marker < 0xC0 or marker == 0xC8 or (scanning and start_of_frame):
            return f"corrupt data: unexpected marker FF {marker:02X} at offset {at}"
        if at + 4 > len(buffer):
            break
        length = int(buffer[at + 2]) << 8 | int(buffer[at + 3])
        if length < 2 or (scanning and at + 2 + length > len(buffer)):
            return f"corrupt data: a bad segment length at offset {at}"
        position = at + 2 + length
        scanning = scanning or marker == 0xDA
    return "truncated: the data ends before the end-of-image marker"


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened photo as upright 8-bit RGB: the fixes the data report announces, in one place.

    EXIF orientation is applied; transparency is flattened onto white; 16-bit pixels are
    scaled to 8 bits (÷257, not clipped); grayscale, palette and CMYK become RGB; for an
    animated image the current (first) frame is used.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" and array.max(initial=0) <= 65535 else max(array.max(initial=0), 1.0)
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def fingerprint(image: Image.Image) -> int:
    """A 64-bit difference hash of an RGB image: near-identical photos get nearly equal bits."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def check_image(path: str | os.PathLike, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> FileCheck:
    """Decide whether one file is a usable photo, needs a fix on loading, or must be skipped.

    Reads the file once (never writes it), checks the header (size, bomb guard), then
    decodes it at reduced resolution (JPEG draft mode) so truncated or corrupt data is
    caught; :func:`to_rgb` is run on the result, so anything reported usable really loads.
    """
    path = Path(path)
    check = FileCheck(path)
    junk = junk_reason(path.name)
    if junk:
        return check.skip(junk)
    odd = not_a_file_reason(path)
    if odd:
        return check.skip(odd)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        return check.skip(UNSUPPORTED.get(ext) or f"not an image file type ({ext or 'no extension'})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return check.skip(f"cannot read the file ({exc.strerror or exc}); check its permissions")
    if not data:
        return check.skip("empty file (0 bytes): the download or copy failed; fetch it again")
    check.digest = hashlib.sha1(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return check.skip(f"huge image, refused as a decompression bomb ({exc})")
        except Exception as exc:  # Pillow raises many types on bad headers
            claimed = _magic_format(data)
            if claimed:
                kind = "truncated" if "truncat" in str(exc).lower() else "corrupt"
                return check.skip(f"{kind} {claimed} file: the header cannot be read ({type(exc).__name__}: {exc})")
            if isinstance(exc, UnidentifiedImageError):
                return check.skip(f"not an image: the file is {_sniff(data)}")
            return check.skip(f"corrupt image header ({type(exc).__name__}: {exc})")
        with image:
            return _check_open_image(check, image, data, min_side, max_pixels)


def _check_open_image(check: FileCheck, image: Image.Image, data: bytes, min_side: int, max_pixels: int) -> FileCheck:
    check.format = image.format
    width, height = image.size
    if width * height > max_pixels:
        return check.skip(
            f"huge image: {width}×{height} = {width * height / 1e6:.0f} megapixels is above "
            f"the limit of {max_pixels / 1e6:.0f} megapixels (decompression-bomb guard); resize it"
        )
    try:
        orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block: the pixels may still be fine
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    check.size = (width, height)
    if min(width, height) < min_side:
        return check.skip(f"too small: {width}×{height} px, below the minimum side of {min_side} px")
    mode, info = image.mode, dict(image.info)
    try:
        image.draft(None, (64, 64))
        image.load()
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > 1:
            image.seek(0)
            image.load()
        rgb = to_rgb(image)
    except Exception as exc:
        kind = "truncated" if "truncat" in str(exc).lower() else "corrupt"
        return check.skip(f"{kind} {image.format or 'image'} data, cannot be decoded ({type(exc).__name__}: {exc})")
    if image.format in ("JPEG", "MPO"):
        problem = jpeg_stream_problem(data)
        if problem:
            kind = problem.split(":")[0].split()[0]
            return check.skip(f"{kind} JPEG data, cannot be decoded reliably ({problem})")
    check.fingerprint = fingerprint(rgb)
    check.thumbnail = np.asarray(rgb.resize((8, 8), Image.Resampling.BOX), dtype=np.uint8)
    return _note_fixes(check, mode, info, data, orientation, frames)


def _note_fixes(check: FileCheck, mode: str, info: dict, data: bytes, orientation: int, frames: int) -> FileCheck:
    """Say what :func:`to_rgb` changes on loading (the photo stays usable): rotation, frames, bits, alpha, colours."""
    if 2 <= orientation <= 8:
        check.fix(f"EXIF orientation {orientation}: turned upright on loading")
    if frames > 1:
        check.fix(f"{check.format} with {frames} frames (animated or multi-picture): only the first frame is used")
    if mode in SIXTEEN_BIT_MODES or (check.format == "PNG" and len(data) > 24 and data[24] == 16):
        check.fix("16-bit image: scaled to 8 bits per channel")
    if mode in ("RGBA", "LA", "PA") or "transparency" in info:
        check.fix("transparency (alpha): flattened onto a white background")
    if mode in GRAY_MODES:
        check.fix("grayscale: copied into three identical RGB channels")
    elif mode == "P":
        check.fix("palette (indexed) colours: converted to RGB")
    elif mode == "CMYK":
        check.fix("CMYK (print) colours: converted to RGB")
    elif mode not in ("RGB", "RGBA", "P"):
        check.fix(f"{mode} colours: converted to RGB")
    return check


def display_name(path: Path, root: Path | None = None) -> str:
    """A path for printing: relative to ``root``, with undecodable bytes shown as escapes."""
    try:
        shown = str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        shown = str(path)
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")
