"""Writing results safely: every file the workbook writes appears whole or not at all."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The temporary name keeps ``target``'s suffix, so writers that look at the extension
    (``model.save("x.keras")``) still work. On error the temporary file is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix="".join(target.suffixes) or ".tmp",
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def staging_dir(target: str | os.PathLike, label: str = "staging") -> Iterator[Path]:
    """Yield a new empty folder beside ``target`` to build a folder in; the caller renames it.

    Whatever is still there on exit (an error, or a caller that chose not to rename) is
    removed, so a half-built folder never lingers and ``target`` is only ever whole.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{label}-", dir=target.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_json(target: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(target)


def save_model(model, target: str | os.PathLike) -> Path:
    """``model.save(target)``, atomically (a crash never leaves half a ``.keras`` file)."""
    with atomic_path(target) as tmp:
        tmp.unlink()  # Keras refuses to overwrite silently in some versions
        model.save(tmp)
    return Path(target)


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
