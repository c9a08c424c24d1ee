"""Downloading and extracting archives, end to end against a real HTTP server on 127.0.0.1.

The server (``http.server`` in a thread) understands ``Range`` requests and can misbehave
on purpose: drop the connection halfway, answer 503 a few times, 404, trickle a byte at a
time, or serve a truncated archive.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers.data.archives import DamagedArchiveError, UnsafeArchiveError, extract, sha256_of
from helpers.data.download import (
    ChecksumError,
    DownloadError,
    Limits,
    archive_name,
    download,
    download_and_extract,
)


class Loopback:
    """A tiny file server: ``files[name] = bytes``; ``drop[name] = n`` cuts the next n transfers in half."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop: dict[str, int] = {}
        self.fail: dict[str, int] = {}  # answer 503 this many times first
        self.trickle: dict[str, float] = {}  # send one byte every this many seconds (for at most trickle_for s)
        self.trickle_for = 20.0
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if server.fail.get(name, 0) > 0:
                    server.fail[name] -= 1
                    self.send_error(503, "busy")
                    return
                if name not in server.files:
                    self.send_error(404, "not here")
                    return
                body, start = server.files[name], 0
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
                    start = int(ranged[6:-1])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                if name in server.trickle:  # a server that never quite stops, bounded so a test cannot hang
                    until = time.monotonic() + server.trickle_for
                    try:
                        for byte in rest:
                            if time.monotonic() > until:
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(server.trickle[name])
                    except OSError:  # the client gave up: that is the point
                        pass
                    self.close_connection = True
                    return
                if server.drop.get(name, 0) > 0:
                    server.drop[name] -= 1
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the connection drops halfway
                    return
                self.wfile.write(rest)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Loopback()
    yield s
    s.close()


def payload(n: int = 300_000) -> bytes:
    return os.urandom(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_writes_the_file(server: Loopback, tmp_path: Path):
    data = payload()
    server.files["photos.bin"] = data
    path = download(server.url("photos.bin"), tmp_path / "photos.bin", sha256=sha(data), progress=False)
    assert path.read_bytes() == data and sha256_of(path) == sha(data)
    assert not (tmp_path / "photos.bin.part").exists()
    # a second call reuses the verified file: no new request
    download(server.url("photos.bin"), path, sha256=sha(data), progress=False)
    assert len(server.requests) == 1


def test_wrong_checksum_is_reported_and_nothing_is_kept(server: Loopback, tmp_path: Path):
    server.files["photos.bin"] = payload()
    with pytest.raises(ChecksumError, match="expected 0000"):
        download(server.url("photos.bin"), tmp_path / "photos.bin", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_dropped_connection_is_resumed_with_a_range_request(server: Loopback, tmp_path: Path):
    data = payload()
    server.files["photos.bin"] = data
    server.drop["photos.bin"] = 1
    path = download(
        server.url("photos.bin"), tmp_path / "photos.bin", sha256=sha(data), progress=False, limits=Limits(backoff=0)
    )
    assert path.read_bytes() == data
    assert server.requests[0][1] is None
    assert server.requests[1][1] == f"bytes={len(data) // 2}-"  # asked only for the rest


def test_an_interrupted_download_resumes_on_the_next_run(server: Loopback, tmp_path: Path):
    data = payload()
    server.files["photos.bin"] = data
    server.drop["photos.bin"] = 10
    with pytest.raises(DownloadError, match="run again to resume"):
        download(server.url("photos.bin"), tmp_path / "photos.bin", progress=False, limits=Limits(retries=1, backoff=0))
    part = tmp_path / "photos.bin.part"
    assert 0 < part.stat().st_size < len(data) and not (tmp_path / "photos.bin").exists()
    server.drop["photos.bin"] = 0
    download(server.url("photos.bin"), tmp_path / "photos.bin", sha256=sha(data), progress=False)
    assert (tmp_path / "photos.bin").read_bytes() == data and not part.exists()


def test_server_errors_are_retried_and_client_errors_are_not(server: Loopback, tmp_path: Path):
    data = payload(1000)
    server.files["photos.bin"] = data
    server.fail["photos.bin"] = 2
    download(server.url("photos.bin"), tmp_path / "photos.bin", progress=False, limits=Limits(retries=3, backoff=0))
    assert len(server.requests) == 3
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(
            server.url("missing.zip"), tmp_path / "missing.zip", progress=False, limits=Limits(retries=3, backoff=0)
        )
    assert len(server.requests) == 4  # one try only


def test_an_existing_file_with_other_content_is_never_overwritten(server: Loopback, tmp_path: Path):
    mine = tmp_path / "photos.bin"
    mine.write_bytes(b"my own file")
    server.files["photos.bin"] = payload(1000)
    with pytest.raises(ChecksumError, match="left untouched"):
        download(server.url("photos.bin"), mine, sha256=sha(server.files["photos.bin"]), progress=False)
    assert mine.read_bytes() == b"my own file"


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None, absolute: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


GOOD = {"photos/lion/a.jpg": b"lion", "photos/tiger/b.jpg": b"tiger"}


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_download_and_extract_end_to_end(server: Loopback, tmp_path: Path, fmt: str):
    data = tar_bytes(GOOD) if fmt == "tar.gz" else zip_bytes(GOOD)
    server.files[f"photos.{fmt}"] = data
    out = download_and_extract(
        server.url(f"photos.{fmt}"), tmp_path / "data" / "photos", sha256=sha(data), progress=False
    )
    assert (out / "photos" / "lion" / "a.jpg").read_bytes() == b"lion"
    kept = tmp_path / "data" / archive_name(server.url(f"photos.{fmt}"), sha(data))
    assert kept.name.startswith("photos-") and kept.exists()  # the archive is kept for next time, keyed by URL
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # no staging left


MALICIOUS = {
    "climbs out with ..": ("tar", {"photos/../../evil.txt": b"x"}, None),
    "absolute path": ("tar", {"/tmp/evil-absolute.txt": b"x"}, None),
    "symlink out": ("tar", {"photos/a.jpg": b"x"}, {"photos/link": "/etc"}),
    "symlink inside": ("tar", {"photos/a.jpg": b"x"}, {"photos/b.jpg": "a.jpg"}),
    "zip with ..": ("zip", {"../evil.txt": b"x"}, None),
    "zip absolute": ("zip", {"/evil.txt": b"x"}, None),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_archives_are_refused_before_writing_anything(tmp_path: Path, case: str):
    kind, members, links = MALICIOUS[case]
    archive = tmp_path / f"evil.{'tar.gz' if kind == 'tar' else 'zip'}"
    archive.write_bytes(tar_bytes(members, links) if kind == "tar" else zip_bytes(members))
    dest = tmp_path / "out" / "photos"
    with pytest.raises(UnsafeArchiveError, match="NOT extracted"):
        extract(archive, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_extraction_works_where_tarfile_has_no_data_filter(tmp_path: Path, monkeypatch):
    """Python 3.10.0-3.10.11 and 3.11.0-3.11.3: no tarfile.data_filter, and extractall() refuses filter=."""
    original = tarfile.TarFile.extractall

    def old_extractall(self, path=".", members=None, *, numeric_owner=False, **unknown):
        if unknown:
            raise TypeError(f"extractall() got an unexpected keyword argument {next(iter(unknown))!r}")
        return original(self, path, members, numeric_owner=numeric_owner)

    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    archive = tmp_path / "photos.tar.gz"
    archive.write_bytes(tar_bytes(GOOD))
    dest = extract(archive, tmp_path / "out")
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*.jpg")} == GOOD


def test_extraction_never_overwrites_existing_user_files(tmp_path: Path):
    dest = tmp_path / "photos"
    (dest / "photos" / "lion").mkdir(parents=True)
    mine = dest / "photos" / "lion" / "a.jpg"
    mine.write_bytes(b"my lion")
    archive = tmp_path / "photos.tar.gz"
    archive.write_bytes(tar_bytes(GOOD))
    with pytest.raises(UnsafeArchiveError, match="overwrite 1 existing"):
        extract(archive, dest)
    assert mine.read_bytes() == b"my lion" and not (dest / "photos" / "tiger").exists()  # nothing changed

    mine.write_bytes(b"lion")  # identical content: the rest is simply added
    extract(archive, dest)
    assert (dest / "photos" / "tiger" / "b.jpg").read_bytes() == b"tiger"


def test_extraction_does_not_write_through_a_symlinked_folder(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "photos"
    dest.mkdir()
    (dest / "photos").symlink_to(outside)
    archive = tmp_path / "photos.zip"
    archive.write_bytes(zip_bytes(GOOD))
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_zip_bomb_guard(tmp_path: Path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", bytes(5_000_000))
    with pytest.raises(UnsafeArchiveError, match="zip-bomb"):
        extract(archive, tmp_path / "out", max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_not_an_archive_is_a_clear_error(tmp_path: Path):
    junk = tmp_path / "page.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(UnsafeArchiveError, match="neither a zip nor a tar"):
        extract(junk, tmp_path / "out")


def test_a_symlink_stored_in_a_zip_is_refused(tmp_path: Path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as z:
        link = zipfile.ZipInfo("photos/passwd")
        link.external_attr = (0o120777) << 16  # S_IFLNK: how zip tools store a symlink
        z.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="a link"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- issue 17: the wrong archive, endless downloads, truncated archives --------------------


def test_same_file_name_at_two_urls_is_two_archives(server: Loopback, tmp_path: Path):
    """`/other/good.tar` after `/good.tar` (no checksum): each URL gets its own archive and its own photos."""
    first, second = {"photos/lion/a.jpg": b"first"}, {"photos/lion/a.jpg": b"second"}
    server.files["good.tar"] = tar_bytes(first)
    server.files["other/good.tar"] = tar_bytes(second)
    archives = tmp_path / "archives"
    a = download_and_extract(server.url("good.tar"), tmp_path / "a", archive_dir=archives, progress=False)
    b = download_and_extract(server.url("other/good.tar"), tmp_path / "b", archive_dir=archives, progress=False)
    assert (a / "photos" / "lion" / "a.jpg").read_bytes() == b"first"
    assert (b / "photos" / "lion" / "a.jpg").read_bytes() == b"second"
    assert [name for name, _ in server.requests] == ["good.tar", "other/good.tar"]
    assert len(list(archives.iterdir())) == 2
    # the same URL again reuses its own archive: no new request
    download_and_extract(server.url("other/good.tar"), tmp_path / "c", archive_dir=archives, progress=False)
    assert len(server.requests) == 2 and (tmp_path / "c" / "photos" / "lion" / "a.jpg").read_bytes() == b"second"


def test_archive_names_keep_the_file_name_and_key_by_url_and_checksum():
    a = archive_name("http://h/x/photos.tar.gz")
    assert a.startswith("photos-") and a.endswith(".tar.gz")
    assert archive_name("http://h/y/photos.tar.gz") != a
    assert archive_name("http://h/x/photos.tar.gz", "ab" * 32) != a
    assert archive_name("http://h/x/photos.zip").endswith(".zip")


def test_a_trickling_server_is_a_stall_in_one_line(server: Loopback, tmp_path: Path):
    """One byte at a time, each well inside the per-read timeout: the throughput rule ends it."""
    server.files["slow.bin"] = payload(5000)
    server.trickle["slow.bin"] = 0.2
    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download(
            server.url("slow.bin"), tmp_path / "slow.bin", progress=False,
            limits=Limits(retries=4, backoff=0, timeout=5, min_speed=100, stall_seconds=1),
        )  # fmt: skip
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "\n" not in message and "stalled" in message and "100 bytes/s" in message and "2 attempts" in message
    assert len(server.requests) == 2 and server.requests[1][1] is not None  # resumed once, then given up


def test_the_overall_deadline_ends_a_download_that_is_merely_slow(server: Loopback, tmp_path: Path):
    server.files["slow.bin"] = payload(5000)
    server.trickle["slow.bin"] = 0.05  # 20 bytes/s: above min_speed, so only the deadline stops it
    start = time.monotonic()
    with pytest.raises(DownloadError, match="deadline of 1.5 s") as caught:
        download(
            server.url("slow.bin"), tmp_path / "slow.bin", progress=False,
            limits=Limits(retries=3, backoff=0, timeout=5, min_speed=1, stall_seconds=1, deadline=1.5),
        )  # fmt: skip
    assert time.monotonic() - start < 5 and "\n" not in str(caught.value)
    assert (tmp_path / "slow.bin.part").stat().st_size > 0  # kept for a later resume


def test_a_silent_server_times_out_per_read(server: Loopback, tmp_path: Path):
    server.files["silent.bin"] = payload(100)
    server.trickle["silent.bin"] = 30  # one byte, then nothing for 30 s
    start = time.monotonic()
    with pytest.raises(DownloadError, match="after 1 attempts"):
        download(
            server.url("silent.bin"), tmp_path / "silent.bin", progress=False, limits=Limits(retries=0, timeout=0.5)
        )
    assert time.monotonic() - start < 5


def test_defaults_bound_a_stalled_download():
    defaults = Limits()
    assert 0 < defaults.timeout <= 60 and defaults.min_speed > 0 and 0 < defaults.stall_seconds <= 120
    assert inspect.signature(download).parameters["limits"].default == defaults


def test_a_truncated_tar_gz_is_named_deleted_and_downloaded_anew(server: Loopback, tmp_path: Path):
    whole = tar_bytes({f"photos/lion/{i}.jpg": os.urandom(20_000) for i in range(5)})
    server.files["photos.tar.gz"] = whole[: len(whole) // 2]  # the server itself has a cut-off file
    archives = tmp_path / "archives"
    with pytest.raises(DamagedArchiveError) as caught:
        download_and_extract(server.url("photos.tar.gz"), tmp_path / "photos", archive_dir=archives, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "truncated" in message and "deleted" in message and "run again" in message
    assert list(archives.iterdir()) == [] and not (tmp_path / "photos").exists()  # nothing kept to be reused
    server.files["photos.tar.gz"] = whole  # fixed on the server: the next call downloads again
    out = download_and_extract(server.url("photos.tar.gz"), tmp_path / "photos", archive_dir=archives, progress=False)
    assert len(list((out / "photos" / "lion").iterdir())) == 5 and len(server.requests) == 2


def test_extract_names_a_truncated_archive_and_leaves_it(tmp_path: Path):
    whole = tar_bytes({"photos/a.jpg": os.urandom(50_000)})
    archive = tmp_path / "mine.tar.gz"
    archive.write_bytes(whole[:-100])
    with pytest.raises(DamagedArchiveError, match="damaged or truncated"):
        extract(archive, tmp_path / "out")
    assert archive.exists() and not (tmp_path / "out").exists()  # the user's own file is not touched
