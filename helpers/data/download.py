"""Fetch a photo archive by URL, safely: resume, retries, a sha256 check, and an extraction that cannot escape.

``data/README.md`` shows the one call (:func:`download_and_extract`). What it promises:

- **progress and resume**: a tqdm bar; bytes arrive in ``NAME.part`` and an interrupted
  download continues where it stopped (HTTP ``Range``), both on retry and on the next run;
- **retries**: dropped connections and server errors (5xx) are retried with back-off;
  client errors (404, 403) are not, they will not fix themselves;
- **no endless downloads**: each read waits at most ``Limits.timeout`` seconds, a transfer slower than
  ``min_speed`` bytes/s over ``stall_seconds`` is a stall (retried once, then one error line:
  about 2 minutes with the defaults), and ``deadline`` (off by default) bounds the whole
  download, retries included;
- **keyed by address**: :func:`download_and_extract` keeps its archive under a name made from
  the URL (and checksum), so two URLs that end in the same file name never share an archive;
- **damaged archives**: a truncated or corrupt archive is named in one line
  (:class:`helpers.data.archives.DamagedArchiveError`); :func:`download_and_extract` deletes the one
  it downloaded;
- **integrity**: with ``sha256=…`` a wrong file is deleted and reported, never used;
- **atomic**: the archive only gets its final name once complete and verified;
- **safe extraction**: :mod:`helpers.data.archives` (nothing outside the folder, no links, no overwrites).

How long and how hard a download tries is one frozen :class:`Limits`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from helpers.data.archives import DamagedArchiveError, extract, sha256_of


class DownloadError(RuntimeError):
    """The file could not be fetched (after retries); the message says what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected ones (corrupt, or changed on the server)."""


MIN_SPEED = 1024
"""Bytes per second: a download slower than this over :data:`STALL_SECONDS` has stalled."""
STALL_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    """How long and how hard :func:`download` tries.

    ``timeout`` bounds each read and the connection; fewer than ``min_speed`` bytes/s over
    ``stall_seconds`` is a stall, resumed once like a dropped connection, and a second stall ends
    the download (``min_speed=0``: no such rule); ``deadline`` (seconds, None: none) bounds the
    whole download, retries included. Failures are retried ``retries`` times, waiting
    ``backoff × 2**attempt`` seconds between attempts.
    """

    retries: int = 4
    timeout: float = 30.0
    backoff: float = 1.0
    min_speed: float = MIN_SPEED
    stall_seconds: float = STALL_SECONDS
    deadline: float | None = None
    chunk_size: int = 1 << 16


class _Incomplete(ConnectionError):
    """The server closed the connection before sending everything it announced."""


class _Stalled(TimeoutError):
    """Bytes still arrive, but too slowly to ever finish (a trickle): retried like a dropped connection."""


class _PastDeadline(TimeoutError):
    """The whole download took longer than its ``deadline``: not retried."""


@dataclass(frozen=True)
class _Clock:
    """One download's :class:`Limits` and the moment its deadline falls (``time.monotonic()``), if any."""

    limits: Limits
    deadline_at: float | None

    @classmethod
    def start(cls, limits: Limits) -> _Clock:
        return cls(limits, None if limits.deadline is None else time.monotonic() + limits.deadline)

    def read_timeout(self) -> float:
        if self.deadline_at is None:
            return self.limits.timeout
        return max(0.01, min(self.limits.timeout, self.deadline_at - time.monotonic()))

    def check_deadline(self) -> None:
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            raise _PastDeadline(f"it ran past its deadline of {self.limits.deadline:g} s")


def _fetch(url: str, part: Path, clock: _Clock, progress: bool) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with an HTTP Range request)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=clock.read_timeout())
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
                clock.check_deadline()
                chunk = response.read1(clock.limits.chunk_size)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
                got += len(chunk)
                now = time.monotonic()
                if now - mark_time >= clock.limits.stall_seconds:
                    speed = (got - mark_bytes) / (now - mark_time)
                    if speed < clock.limits.min_speed:
                        f.flush()
                        raise _Stalled(
                            f"stalled: {got - mark_bytes} bytes in the last {now - mark_time:.0f} s, "
                            f"below {clock.limits.min_speed:g} bytes/s"
                        )
                    mark_time, mark_bytes = now, got
    if total is not None and part.stat().st_size < total:
        raise _Incomplete(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(
    url: str, target: str | os.PathLike, sha256: str | None = None, limits: Limits = Limits(), progress: bool = True
) -> Path:
    """Download ``url`` to the file ``target`` (resuming, retrying, verifying) and return its path.

    An existing ``target`` with the right checksum is reused; one with a different checksum
    is left alone and reported (it may be yours). ``sha256=None`` skips verification (an
    existing ``target`` is then taken as it is: :func:`download_and_extract` names its
    archives by URL for that reason). ``limits`` says how long and how hard to try (:class:`Limits`).
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
    _fetch_with_retries(url, part, _Clock.start(limits), progress)
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


def _fetch_with_retries(url: str, part: Path, clock: _Clock, progress: bool) -> None:
    """:func:`_fetch` until ``part`` is complete: server errors, dropped connections and one stall retried."""
    limits, stalls = clock.limits, 0
    for attempt in range(limits.retries + 1):
        try:
            _fetch(url, part, clock, progress)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}): check the address") from exc
            problem: Exception = exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            problem = exc
        wait = limits.backoff * 2**attempt
        kept = part.stat().st_size if part.exists() else 0
        if isinstance(problem, _PastDeadline) or (
            clock.deadline_at is not None and time.monotonic() + wait >= clock.deadline_at
        ):
            why = "" if isinstance(problem, _PastDeadline) else f" ({problem})"
            raise DownloadError(
                f"could not download {url}: it ran past its deadline of {limits.deadline:g} s{why}; "
                f"{kept} bytes are kept in {part}: run again to resume, or allow more time"
            ) from problem
        stalls += isinstance(problem, _Stalled)
        if attempt == limits.retries or stalls == 2:  # a server that trickled twice is not retried a third time
            raise DownloadError(
                f"could not download {url} after {attempt + 1} attempts ({problem}); "
                f"{kept} bytes are kept in {part}: run again to resume, or check your "
                "connection / proxy"
            ) from problem
        time.sleep(wait)


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
    limits: Limits = Limits(),
    progress: bool = True,
) -> Path:
    """Download an archive (see :func:`download`) and extract it safely into ``dest`` (see
    :func:`helpers.data.archives.extract`).

    The archive is kept in ``archive_dir`` (default: beside ``dest``) under :func:`archive_name`
    (keyed by the URL and checksum) so a second call with the same URL reuses it instead of
    downloading again. A damaged archive (truncated, corrupt) is deleted and reported in one
    line (:class:`DamagedArchiveError`); the next call downloads it anew.
    """
    dest = Path(dest).expanduser()
    archive = Path(archive_dir or dest.parent).expanduser() / archive_name(url, sha256)
    path = download(url, archive, sha256=sha256, limits=limits, progress=progress)
    try:
        return extract(path, dest)
    except DamagedArchiveError as exc:
        path.unlink(missing_ok=True)
        raise DamagedArchiveError(
            f"{url}: the downloaded archive is damaged or truncated ({str(exc.__cause__ or exc)[:200]}); "
            f"{path} was deleted: run again to download it anew"
        ) from exc
