"""Writing results safely: every file the workbook writes appears whole or not at all."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The temporary name keeps ``target``'s suffix, so writers that look at the extension
    (``model.save("x.keras")``) still work. On error the temporary file is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix="".join(target.suffixes) or ".tmp", dir=target.parent
        )
    except OSError as exc:
        exc.filename = str(target)
        raise
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a result file gets the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            _fsync(tmp_path)  # the bytes reach the disk before the name does (a crash leaves old or new)
        os.replace(tmp_path, target)
    except OSError as exc:  # name the file being written, not our temporary one (or none: write() names none)
        if exc.filename is None or os.fspath(exc.filename) == str(tmp_path):
            exc.filename = str(target)
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


class OutputError(OSError):
    """An output location that cannot take what will be written; the message says what to do."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def describe_os_error(exc: OSError, what: str = "") -> str:
    """One line for an ``OSError``: the path, what went wrong, and what to do about it."""
    if isinstance(exc, OutputError):
        return str(exc)
    path = exc.filename if exc.filename is not None else what
    where = f"{os.fsdecode(path)}: " if path else ""
    if exc.errno is None:
        return f"{where}{exc}"
    advice = {
        errno.ENOSPC: "the disk is full: free some space or choose another folder",
        errno.EDQUOT: "the disk quota is used up: free some space or choose another folder",
        errno.EROFS: "the file system is read-only: choose a folder you can write to",
        errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
        errno.EPERM: "operation not permitted: choose a folder you can write to",
        errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
        errno.EISDIR: "a folder stands where a file is needed: choose another path",
        errno.ENOENT: "no such file or folder: check the path",
        errno.EEXIST: "it already exists: choose another path",
    }.get(exc.errno, exc.strerror or str(exc))
    return f"{where}{advice}"


def check_output_dir(folder: str | os.PathLike, need_bytes: int = 0, what: str = "output folder") -> Path:
    """Make sure ``folder`` can take ``need_bytes`` of new files, before any expensive work starts.

    Creates the folder if needed, writes and removes a probe file (read-only or full file
    systems, permissions), and compares the free space with ``need_bytes`` (plus a margin).
    Raises :class:`OutputError` with one line naming the folder and what to do.
    """
    folder = Path(folder).expanduser()
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise OutputError(errno.ENOTDIR, f"{what} {folder}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK):  # access(2) reports a read-only file system even to root
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        raise OutputError(
            errno.EROFS if read_only else errno.EACCES,
            f"{what} {folder} cannot be written: "
            + (
                "the file system is read-only: choose a folder you can write to"
                if read_only
                else "permission denied: choose a folder you can write to, or fix its permissions"
            ),
        )
    free = shutil.disk_usage(existing).free
    if need_bytes and free < need_bytes + (1 << 20):  # checked before anything is created
        raise OutputError(
            errno.ENOSPC,
            f"{what} {folder} has {human_size(free)} free but about "
            f"{human_size(need_bytes)} will be written: free some space or choose another folder",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            exc.errno or errno.EIO,
            f"{what} {folder} cannot be written: {describe_os_error(exc, str(folder)).split(': ', 1)[-1]}",
        ) from exc
    return folder


def check_model_file(path: str | os.PathLike) -> Path:
    """The path of a ``.keras`` file to load, or a one-line refusal saying what to pass (no Keras needed).

    :func:`helpers.ship.export.load_model` checks with it, and the command line before Keras starts
    (:mod:`helpers.tools.cli_checks`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} does not exist; train one with "
            f"`python -m helpers train --out DIR` (it writes DIR/model.keras)"
        )
    if path.suffix != ".keras":
        raise ValueError(
            f"{path} is not a .keras file; pass the model.keras written by "
            f"`python -m helpers train`, or `model.save(path)` as notebook 08 does"
        )
    return path


def human_size(n_bytes: float) -> str:
    """``1536`` → ``"1.5 KB"``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1024 or unit == "TB":
            return f"{int(n_bytes)} B" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TB"


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
