"""Fetch a photo archive by URL, safely: resume, retries, a sha256 check, and an extraction that cannot escape.

``data/README.md`` shows the one call (:func:`download_and_extract`). What it promises:

- **progress and resume**: a tqdm bar; bytes arrive in ``NAME.part`` and an interrupted
  download continues where it stopped (HTTP ``Range``), both on retry and on the next run;
- **retries**: dropped connections and server errors (5xx) are retried with back-off;
  client errors (404, 403) are not, they will not fix themselves;
- **no endless downloads**: each read waits at most ``timeout`` seconds, a transfer slower than
  ``min_speed`` bytes/s over ``stall_seconds`` is a stall (retried once, then one error line:
  about 2 minutes with the defaults), and ``deadline`` (off by default) bounds the whole
  download, retries included;
- **keyed by address**: :func:`download_and_extract` keeps its archive under a name made from
  the URL (and checksum), so two URLs that end in the same file name never share an archive;
- **damaged archives**: a truncated or corrupt archive is named in one line
  (:class:`DamagedArchiveError`); :func:`download_and_extract` deletes the one it downloaded;
- **integrity**: with ``sha256=…`` a wrong file is deleted and reported, never used;
- **atomic**: the archive only gets its final name once complete and verified, and an
  extraction appears whole (temporary folder + rename) or not at all;
- **safe extraction**: members with absolute paths, ``..``, links or device files are
  refused before anything is written (and tar extraction also runs with
  ``filter="data"``); existing files are never overwritten.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import lzma
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from helpers import files


class DownloadError(RuntimeError):
    """The file could not be fetched (after retries); the message says what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected ones (corrupt, or changed on the server)."""


class UnsafeArchiveError(RuntimeError):
    """An archive tried to write outside its folder, create links, or overwrite files."""


class DamagedArchiveError(UnsafeArchiveError):
    """The archive cannot be read to its end (truncated, corrupt, or not an archive at all)."""


#: What reading a truncated or corrupt zip / tar(.gz/.bz2/.xz) raises, besides tarfile.TarError.
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)

MIN_SPEED = 1024
"""Bytes per second: a download slower than this over :data:`STALL_SECONDS` has stalled."""
STALL_SECONDS = 60.0


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class _Incomplete(ConnectionError):
    """The server closed the connection before sending everything it announced."""


class _Stalled(TimeoutError):
    """Bytes still arrive, but too slowly to ever finish (a trickle): retried like a dropped connection."""


class _PastDeadline(TimeoutError):
    """The whole download took longer than its ``deadline``: not retried."""


@dataclass
class _Limits:
    timeout: float  # seconds one read (or the connection) may wait
    min_speed: float  # bytes/s over stall_seconds, else _Stalled
    stall_seconds: float
    deadline_at: float | None  # time.monotonic() by which everything must be done

    def read_timeout(self) -> float:
        if self.deadline_at is None:
            return self.timeout
        return max(0.01, min(self.timeout, self.deadline_at - time.monotonic()))

    def check_deadline(self, deadline: float | None) -> None:
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            raise _PastDeadline(f"it ran past its deadline of {deadline:g} s")


def _fetch(url: str, part: Path, limits: _Limits, progress: bool, chunk_size: int, deadline: float | None) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with an HTTP Range request)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=limits.read_timeout())
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
            # read1 returns what has arrived (read() would wait for a whole chunk, however slowly it trickles)
            mark_time, mark_bytes, got = time.monotonic(), 0, 0
            while True:
                limits.check_deadline(deadline)
                chunk = response.read1(chunk_size)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
                got += len(chunk)
                now = time.monotonic()
                if now - mark_time >= limits.stall_seconds:
                    speed = (got - mark_bytes) / (now - mark_time)
                    if speed < limits.min_speed:
                        f.flush()
                        raise _Stalled(
                            f"stalled: {got - mark_bytes} bytes in the last {now - mark_time:.0f} s, "
                            f"below {limits.min_speed:g} bytes/s"
                        )
                    mark_time, mark_bytes = now, got
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
    min_speed: float = MIN_SPEED,
    stall_seconds: float = STALL_SECONDS,
    deadline: float | None = None,
) -> Path:
    """Download ``url`` to the file ``target`` (resuming, retrying, verifying) and return its path.

    An existing ``target`` with the right checksum is reused; one with a different checksum
    is left alone and reported (it may be yours). ``sha256=None`` skips verification (an
    existing ``target`` is then taken as it is: :func:`download_and_extract` names its
    archives by URL for that reason).

    ``timeout`` bounds each read and the connection; fewer than ``min_speed`` bytes/s over
    ``stall_seconds`` is a stall, resumed once like a dropped connection, and a second stall ends
    the download (``min_speed=0``: no such rule); ``deadline`` (seconds, None: none) bounds the
    whole download, retries included.
    Every failure is a :class:`DownloadError` with a one-line message.
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
    limits = _Limits(timeout, min_speed, stall_seconds, None if deadline is None else time.monotonic() + deadline)
    stalls = 0
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, limits, progress, chunk_size, deadline)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}): check the address") from exc
            problem: Exception = exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            problem = exc
        past = isinstance(problem, _PastDeadline) or (
            limits.deadline_at is not None and time.monotonic() + backoff * 2**attempt >= limits.deadline_at
        )
        if past:
            kept = part.stat().st_size if part.exists() else 0
            why = "" if isinstance(problem, _PastDeadline) else f" ({problem})"
            raise DownloadError(
                f"could not download {url}: it ran past its deadline of {deadline:g} s{why}; "
                f"{kept} bytes are kept in {part}: run again to resume, or allow more time"
            ) from problem
        stalls += isinstance(problem, _Stalled)
        if attempt == retries or stalls == 2:  # a server that trickled twice is not retried a third time
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"could not download {url} after {attempt + 1} attempts ({problem}); "
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
                    t.extractall(staging, filter="data")
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


def archive_name(url: str, sha256: str | None = None) -> str:
    """The file name :func:`download_and_extract` keeps ``url``'s archive under: keyed by URL and checksum.

    ``https://host/a/photos.tar.gz`` → ``photos-<12 hex digits>.tar.gz``: the URL's own file name
    for the reader, a digest of the whole URL (and ``sha256``) so that ``/a/photos.tar.gz`` and
    ``/b/photos.tar.gz`` are never taken for one another.
    """
    name = Path(urllib.request.urlparse(url).path).name or "download"
    key = hashlib.sha256(f"{url}\n{(sha256 or '').lower()}".encode()).hexdigest()[:12]
    lower = name.lower()
    cut = lower.find(".tar.") if ".tar." in lower else len(name) - len(Path(name).suffix)
    return f"{name[:cut]}-{key}{name[cut:]}"


def download_and_extract(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    archive_dir: str | os.PathLike | None = None,
    **download_kwargs,
) -> Path:
    """Download an archive (see :func:`download`) and extract it safely into ``dest`` (see :func:`extract`).

    The archive is kept in ``archive_dir`` (default: beside ``dest``) under :func:`archive_name`
    (keyed by the URL and checksum) so a second call with the same URL reuses it instead of
    downloading again. A damaged archive (truncated, corrupt) is deleted and reported in one
    line (:class:`DamagedArchiveError`); the next call downloads it anew.
    """
    dest = Path(dest).expanduser()
    archive = Path(archive_dir or dest.parent).expanduser() / archive_name(url, sha256)
    path = download(url, archive, sha256=sha256, **download_kwargs)
    try:
        return extract(path, dest)
    except DamagedArchiveError as exc:
        path.unlink(missing_ok=True)
        raise DamagedArchiveError(
            f"{url}: the downloaded archive is damaged or truncated ({str(exc.__cause__ or exc)[:200]}); "
            f"{path} was deleted: run again to download it anew"
        ) from exc
