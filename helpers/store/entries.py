"""The activation store's file format: one checked ``.npy`` entry per photo, written atomically.

One entry = one photo's activations: a standard ``.npy`` file (no pickle) followed by a
20-byte trailer, ``ENTRY_TRAILER`` + a 16-byte BLAKE2b digest of everything before it.
``np.load`` ignores the trailer; :func:`read_entry` checks it, and the shape, dtype,
length and finiteness, so a truncated, overwritten, foreign or NaN entry is never used.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from pathlib import Path

import numpy as np

from helpers import files

FORMAT_VERSION = 2  # 2: entries carry a checksum trailer
ENTRY_TRAILER = b"WBK2"
_TRAILER_LEN = len(ENTRY_TRAILER) + 16
TEMP_MAX_AGE = 3600.0
"""Temporary files older than this (seconds) are leftovers of a killed writer and are removed."""


class BadEntry(ValueError):
    """A cache entry that cannot be used; the message says what is wrong with it."""


def entry_bytes(array: np.ndarray) -> bytes:
    """The bytes of one cache entry: ``.npy`` data + trailer with its checksum."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    body = buffer.getvalue()
    return body + ENTRY_TRAILER + hashlib.blake2b(body, digest_size=16).digest()


def write_entry(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one entry atomically: readers see the old file, no file, or the whole new one."""
    with files.atomic_path(path) as tmp:
        tmp.write_bytes(entry_bytes(array))
    return Path(path)


def read_entry(path: str | os.PathLike, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """One entry, checked: raises :class:`BadEntry` (why) or ``FileNotFoundError`` (absent)."""
    data = Path(path).read_bytes()
    body, trailer = data[:-_TRAILER_LEN], data[-_TRAILER_LEN:]
    if len(data) < _TRAILER_LEN or not trailer.startswith(ENTRY_TRAILER):
        raise BadEntry(
            f"incomplete or foreign file ({len(data)} bytes, no checksum trailer): "
            "truncated by an interrupted write, or not written by the workbook"
        )
    if hashlib.blake2b(body, digest_size=16).digest() != trailer[len(ENTRY_TRAILER) :]:
        raise BadEntry("checksum mismatch: the file was changed or damaged after it was written")
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        stored_shape, fortran, stored_dtype = _read_header(stream, version)
    except Exception as exc:  # a bad magic string or header
        raise BadEntry(f"not a .npy array ({exc})") from None
    if tuple(stored_shape) != tuple(shape):
        raise BadEntry(f"holds an array of shape {tuple(stored_shape)}, expected {tuple(shape)}")
    if stored_dtype != np.dtype(dtype):
        raise BadEntry(f"holds {stored_dtype} values, expected {np.dtype(dtype).name}")
    count = math.prod(shape)
    if len(body) - stream.tell() != count * stored_dtype.itemsize:
        raise BadEntry(f"holds {len(body) - stream.tell()} bytes of data, expected {count * stored_dtype.itemsize}")
    array = np.frombuffer(body, stored_dtype, count, offset=stream.tell()).reshape(shape, order="F" if fortran else "C")
    if not np.isfinite(array).all():
        raise BadEntry(f"holds {int((~np.isfinite(array)).sum())} NaN or infinite values")
    return array


def _read_header(stream, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy version {version}")


def remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files a killed writer left (old ones only: a live writer's are young)."""
    if not folder.is_dir():
        return
    now = time.time()
    for p in folder.glob(".*"):
        try:
            if p.is_file() and now - p.stat().st_mtime > TEMP_MAX_AGE:
                p.unlink()
        except OSError:
            pass
