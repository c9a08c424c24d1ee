"""Unpack a zip or tar archive safely: nothing written outside its folder, no links, no overwrites, whole or not at all.

What :func:`extract` promises (``helpers.data.download.download_and_extract`` fetches, then calls it):

- **damaged archives**: a truncated or corrupt archive is named in one line (:class:`DamagedArchiveError`);
- **atomic**: an extraction appears whole (temporary folder + rename) or not at all;
- **safe extraction**: members with absolute paths, ``..``, links or device files are
  refused before anything is written (and tar extraction also runs with
  ``filter="data"``); existing files are never overwritten.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from helpers import files


class UnsafeArchiveError(RuntimeError):
    """An archive tried to write outside its folder, create links, or overwrite files."""


class DamagedArchiveError(UnsafeArchiveError):
    """The archive cannot be read to its end (truncated, corrupt, or not an archive at all)."""


#: What reading a truncated or corrupt zip / tar(.gz/.bz2/.xz) raises, besides tarfile.TarError.
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Member:
    name: str
    kind: str  # "file" | "dir" | "link" | "special"
    size: int


def _members(archive: Path) -> tuple[str, list[_Member]]:
    try:
        return _read_members(archive)
    except DamagedArchiveError:
        raise
    except _DAMAGE as exc:
        raise DamagedArchiveError(f"{archive} is damaged or truncated ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _read_members(archive: Path) -> tuple[str, list[_Member]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            out = []
            for info in z.infolist():
                file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored none
                kind = (
                    "link"
                    if file_type == stat.S_IFLNK
                    else "dir"
                    if info.is_dir()
                    else "special"
                    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR)
                    else "file"
                )
                out.append(_Member(info.filename, kind, info.file_size))
            return "zip", out
    try:
        with tarfile.open(archive) as t:
            return "tar", [
                _Member(
                    m.name,
                    "link" if m.issym() or m.islnk() else "dir" if m.isdir() else "file" if m.isfile() else "special",
                    m.size,
                )
                for m in t.getmembers()
            ]
    except tarfile.ReadError as exc:
        if str(exc).startswith("file could not be opened successfully"):  # no format recognised at all
            raise DamagedArchiveError(f"{archive} is neither a zip nor a tar archive ({exc})") from exc
        raise


def _unsafe(member: _Member) -> str | None:
    name = member.name.replace("\\", "/")
    if member.kind == "link":
        return "a link (links could point outside the folder)"
    if member.kind == "special":
        return "a device, FIFO or other special file"
    if not name.strip("/") or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' path that climbs out of the folder"
    return None


def extract(archive: str | os.PathLike, dest: str | os.PathLike, max_bytes: int = 20 * 1024**3) -> Path:
    """Extract a zip or tar archive into ``dest`` safely and atomically; return ``dest``.

    Refuses (before writing anything) absolute or ``..`` member paths, links, special
    files and archives over ``max_bytes`` uncompressed. Extraction happens in a hidden
    temporary folder beside ``dest``; if ``dest`` exists, files are added to it only when
    none would replace an existing file with different content. A truncated or corrupt
    archive raises :class:`DamagedArchiveError` (one line) and leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest).expanduser()
    kind, members = _members(archive)
    refused = [f"{m.name!r} is {why}" for m in members if (why := _unsafe(m))]
    if refused:
        raise UnsafeArchiveError(
            f"{archive} was NOT extracted: {len(refused)} unsafe member(s): "
            + "; ".join(refused[:5])
            + (" …" if len(refused) > 5 else "")
        )
    total = sum(m.size for m in members)
    if total > max_bytes:
        raise UnsafeArchiveError(
            f"{archive} would unpack to {total / 1e9:.1f} GB, above the limit of "
            f"{max_bytes / 1e9:.1f} GB (zip-bomb guard); pass max_bytes to allow it"
        )
    with files.staging_dir(dest, "extracting") as staging:
        try:
            if kind == "zip":
                with zipfile.ZipFile(archive) as z:
                    z.extractall(staging)
            else:
                with tarfile.open(archive) as t:
                    # tarfile's "data" filter came in 3.10.12 and 3.11.4; before, the checks above stand alone
                    t.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        except _DAMAGE as exc:  # e.g. a zip member whose CRC does not match
            raise DamagedArchiveError(f"{archive} is damaged or truncated ({_describe(exc)})") from exc
        if not dest.exists():
            os.rename(staging, dest)
            return dest
        _merge(staging, dest)
        return dest


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and sha256_of(a) == sha256_of(b)


def _stays_inside(target: Path, root: Path) -> bool:
    """True when ``target``'s nearest existing folder really lies inside ``root`` (no symlink out)."""
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    return folder.resolve().is_relative_to(root)


def _merge(staging: Path, dest: Path) -> None:
    """Move the staged files into an existing ``dest``; refuse if any existing file would change."""
    root = dest.resolve()
    new = sorted(p for p in staging.rglob("*") if p.is_file())
    conflicts, escapes = [], []
    for src in new:
        target = dest / src.relative_to(staging)
        if not _stays_inside(target, root):
            escapes.append(str(target))
        elif target.is_symlink() or (target.exists() and (not target.is_file() or not _same_bytes(src, target))):
            conflicts.append(str(target))
    if escapes or conflicts:
        listed = (conflicts + escapes)[:5]
        raise UnsafeArchiveError(
            f"extracting into {dest} would overwrite {len(conflicts)} existing file(s) or "
            f"write through {len(escapes)} link(s) leading out of it ({', '.join(listed)}); "
            "nothing was changed: extract into a new folder instead"
        )
    for src in new:
        target = dest / src.relative_to(staging)
        if target.exists():
            continue  # identical file already there
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)  # fails instead of replacing if the name appeared meanwhile
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(src, target)
