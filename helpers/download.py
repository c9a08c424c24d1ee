"""Fetch a photo archive by URL, safely: resume, retries, a sha256 check, and an extraction that cannot escape.

``data/README.md`` shows the one call (:func:`download_and_extract`). What it promises:

- **progress and resume**: a tqdm bar; bytes arrive in ``NAME.part`` and an interrupted
  download continues where it stopped (HTTP ``Range``), both on retry and on the next run;
- **retries**: dropped connections and server errors (5xx) are retried with back-off;
  client errors (404, 403) are not, they will not fix themselves;
- **integrity**: with ``sha256=…`` a wrong file is deleted and reported, never used;
- **atomic**: the archive only gets its final name once complete and verified, and an
  extraction appears whole (temporary folder + rename) or not at all;
- **safe extraction**: members with absolute paths, ``..``, links or device files are
  refused before anything is written (and tar extraction also runs with
  ``filter="data"``); existing files are never overwritten.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from . import files


class DownloadError(RuntimeError):
    """The file could not be fetched (after retries); the message says what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected ones (corrupt, or changed on the server)."""


class UnsafeArchiveError(RuntimeError):
    """An archive tried to write outside its folder, create links, or overwrite files."""


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class _Incomplete(ConnectionError):
    """The server closed the connection before sending everything it announced."""


def _fetch(url: str, part: Path, timeout: float, progress: bool, chunk_size: int) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with an HTTP Range request)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is complete
            content_range = exc.headers.get("Content-Range", "")
            if content_range.endswith(f"/{have}"):
                return
            part.unlink()  # a stale part file larger than the real file
        raise
    with response:
        resumed = (
            have and response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        )
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _Incomplete(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(
    url: str,
    target: str | os.PathLike,
    sha256: str | None = None,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download ``url`` to the file ``target`` (resuming, retrying, verifying) and return its path.

    An existing ``target`` with the right checksum is reused; one with a different checksum
    is left alone and reported (it may be yours). ``sha256=None`` skips verification.
    """
    target = Path(target).expanduser()
    expected = sha256.lower() if sha256 else None
    if target.exists():
        if expected is None or sha256_of(target) == expected:
            return target
        raise ChecksumError(
            f"{target} already exists but its sha256 is not {expected}; it was left "
            "untouched: delete or move it, or choose another target, then run again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress, chunk_size)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}): check the address") from exc
            problem: Exception = exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            problem = exc
        if attempt == retries:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"could not download {url} after {retries + 1} attempts ({problem}); "
                f"{kept} bytes are kept in {part}: run again to resume, or check your "
                "connection / proxy"
            ) from problem
        time.sleep(backoff * 2**attempt)
    if expected is not None:
        actual = sha256_of(part)
        if actual != expected:
            part.unlink()
            raise ChecksumError(
                f"{url}: the download's sha256 is {actual}, expected {expected}; the file "
                "was deleted (corrupt transfer or changed on the server): run again, or "
                "check the checksum you were given"
            )
    os.replace(part, target)
    return target


@dataclass
class _Member:
    name: str
    kind: str  # "file" | "dir" | "link" | "special"
    size: int


def _members(archive: Path) -> tuple[str, list[_Member]]:
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
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive ({exc})") from exc


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
    none would replace an existing file with different content.
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
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter="data")
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


def download_and_extract(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    archive_dir: str | os.PathLike | None = None,
    **download_kwargs,
) -> Path:
    """Download an archive (see :func:`download`) and extract it safely into ``dest`` (see :func:`extract`).

    The archive is kept in ``archive_dir`` (default: beside ``dest``) so a second call
    reuses it instead of downloading again.
    """
    dest = Path(dest).expanduser()
    name = Path(urllib.request.urlparse(url).path).name or "download"
    archive = Path(archive_dir or dest.parent) / name
    return extract(download(url, archive, sha256=sha256, **download_kwargs), dest)
