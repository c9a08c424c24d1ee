"""Ask the package index whether every requirements file installs on every platform the README names.

For each platform and Python in ``PLATFORMS`` x ``PYTHONS`` and each file in ``FILES`` this runs
pip's resolver as a learner's pip on that machine would, without installing anything::

    pip install --dry-run --ignore-installed --target TMP --only-binary=:all: --report OUT.json \\
        --implementation cp --python-version 3.X --platform TAG --platform TAG ... -r FILE

Three things make that honest:

* pip takes exact platform tags, so ``--platform`` names every tag such a machine accepts
  (every manylinux glibc level up to the one named, every macOS release back to 11 / 10.9).
* pip evaluates environment markers (``; sys_platform == "darwin"``) for the machine it runs
  on, whatever ``--platform`` says; the subprocess therefore runs pip with its marker environment
  replaced by the target's (``--pip-shim``). The report's ``environment`` shows what was used.
* Only the index is asked: this machine's pip configuration (local wheel folders, extra indexes,
  constraints) is left out; the index URL, certificate and proxy settings are kept.

pip reads a wheel's metadata from the ``.metadata`` file beside it (PEP 658) where the index
advertises one, and otherwise downloads the whole wheel -- hundreds of MB per TensorFlow or
PyTorch wheel and resolve (the index this project's machines reach advertises none, and serves
the file for some wheels only). The resolver therefore talks to the index through a small proxy on
127.0.0.1 that:

* fetches each project page once per run and shows each target only the wheels its pip accepts
  (the tags pip computes from the same options; sdists are left out as ``--only-binary`` does):
  pip then parses a few links per project instead of thousands;
* announces a ``.metadata`` file for every wheel and serves the index's own, or, where the index
  has none, the wheel's ``*.dist-info/METADATA`` read with HTTP byte ranges (its zip directory and
  that one member), kept on disk by URL (a wheel's URL names its content's hash);
* refuses to serve a wheel: pip 25.3 and newer download none under ``--dry-run --report``.

Run it: ``python tools/resolve_requirements.py [--jobs N] [--only FILE] [--platform NAME]
[--python 3.X] [--json OUT]``; exit status 1 names each combination whose outcome is not the
expected one (``UNAVAILABLE`` lists those that must fail), 2 when the index or pip cannot be used.
``tests/test_requirements.py`` runs it and checks the README's table against ``PLATFORMS``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
FILES = ("requirements.txt", "requirements-jax.txt", "requirements-torch.txt")
# the packages whose versions the check prints for each resolve
BACKENDS = ("tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "keras")
# a wheel's metadata never changes (its URL names its content's hash), so it is kept between runs
METADATA_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-workbook" / "wheel-metadata"
)
# what the test command installs beside requirements.txt; resolved with it, as the README's command does
DEV_FILE = "requirements-dev.txt"


def _manylinux(arch: str, glibc_max: int) -> tuple[str, ...]:
    """Every manylinux tag a glibc ``2.glibc_max`` machine accepts, newest first (PEP 600 + legacy names)."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_max, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += [f"manylinux_2_{minor}_{arch}" for minor in (12, 5)] + [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return (*tags, f"linux_{arch}")


@dataclass(frozen=True)
class Platform:
    """One kind of learner's machine: the wheel tags its pip accepts and its marker environment."""

    name: str  # as the README's table names it
    tags: tuple[str, ...]  # pip expands a macosx_X_Y tag to every older release itself
    markers: dict = field(hash=False)


PLATFORMS = (
    Platform(
        "Linux x86-64",
        _manylinux("x86_64", 31),  # glibc 2.31: Ubuntu 20.04, Debian 11 and newer
        {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    ),
    Platform(
        "Linux arm64",
        _manylinux("aarch64", 31),
        {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    ),
    Platform(
        "macOS arm64",
        ("macosx_14_0_arm64",),  # macOS 14 back to 11, and universal2
        {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    ),
    Platform(
        "macOS x86-64",
        ("macosx_14_0_x86_64",),  # macOS 14 back to 10.4, intel/universal
        {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64"},
    ),
    Platform(
        "Windows amd64",
        ("win_amd64",),
        {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
    ),
)

# Combinations the index has no wheels for, with the reason; the check expects them to FAIL, so
# the README's claims stay true in both directions (and a new release that fixes one is noticed).
UNAVAILABLE: dict[tuple[str, str, str], str] = {
    (
        "requirements.txt",
        "macOS x86-64",
        "3.13",
    ): "TensorFlow's last release for Intel Macs, 2.16.2, stops at Python 3.12",
    **{
        (
            "requirements-torch.txt",
            "macOS x86-64",
            py,
        ): "PyTorch's last release for Intel Macs is 2.2.2; the file pins 2.13.0"
        for py in PYTHONS
    },
}


def marker_environment(platform: Platform, python: str) -> dict:
    """The values pip's environment markers see on ``platform`` with CPython ``python``."""
    return {
        **platform.markers,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "platform_python_implementation": "CPython",
    }


def requirement_lines(path: Path) -> list[str]:
    """The file's requirement lines, without ``-e .`` (the workbook itself is not on the index)."""
    kept = []
    for line in path.read_text().splitlines():
        stripped = re.sub(r"(^|\s)#.*", "", line).strip()  # pip's comments: '#' at the start or after a space
        if stripped.startswith(("-e", "--editable")) or stripped in (".", ""):
            continue
        kept.append(stripped)
    return kept


# --------------------------------------------------------------------------- the index proxy

_ANCHOR_TEXT = re.compile(r"(<a\s[^>]*>)([^<]*)</a>", re.IGNORECASE)
_HREF = re.compile(r'href="([^"]+)"', re.IGNORECASE)


_TAIL = 256 * 1024  # the first byte range asked of a wheel: its end, where the zip directory is


class _RangeFile(io.RawIOBase):
    """A read-only, seekable file over byte ranges of a remote one (enough for ``zipfile``)."""

    def __init__(self, size: int, pieces: dict[int, bytes], fetch):
        self.size, self.pieces, self.fetch, self.pos = size, dict(pieces), fetch, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        for start, piece in self.pieces.items():
            if start <= self.pos and end <= start + len(piece):
                out = piece[self.pos - start : end - start]
                break
        else:
            fetch_end = min(self.size, max(end, self.pos + 64 * 1024))
            piece = self.fetch(self.pos, fetch_end)
            self.pieces[self.pos] = piece
            out = piece[: end - self.pos]
        self.pos += len(out)
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class IndexProxy:
    """A loopback view of one simple index: pages and ``.metadata`` files kept for the run, metadata announced.

    Page links are rewritten to ``/f/<scheme>/<host>/<path>`` on this proxy, so pip fetches the
    ``.metadata`` files through it (and they are fetched from the index once per run).
    """

    def __init__(self, index_url: str, cafile: str | None = None, timeout: float = 60, cache_dir: Path | None = None):
        import ssl

        self.cache_dir = cache_dir
        self.targets: dict[str, frozenset[str]] = {}

        self.index_url = index_url.rstrip("/") + "/"
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
        self.cache: dict[str, tuple[int, bytes, str]] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()
        self.fetches = 0
        self.bytes = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                status, body, ctype = proxy.get(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> IndexProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fetch(self, url: str) -> tuple[int, bytes, str]:
        request = urllib.request.Request(url, headers={"Accept": "text/html", "User-Agent": "resolve-requirements"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as r:
                body = r.read()
                with self.lock:
                    self.fetches += 1
                    self.bytes += len(body)
                return r.status, body, r.headers.get("Content-Type", "application/octet-stream")
        except urllib.error.HTTPError as e:
            return e.code, f"{e.code} from {url}".encode(), "text/plain"
        except (urllib.error.URLError, OSError) as e:
            return 502, f"index unreachable: {url}: {e}".encode(), "text/plain"

    def _anchors(self, page_url: str, html: str) -> list[tuple[frozenset[str], str]]:
        """The page's wheel links as (the wheel's tags, ``<a>`` tag pointing at this proxy, metadata announced)."""
        from pip._vendor.packaging.utils import InvalidWheelFilename, parse_wheel_filename

        anchors = []
        for match in _ANCHOR_TEXT.finditer(html):
            tag, name = match.group(1), match.group(2).strip()
            href = _HREF.search(tag)
            if not href or not name.endswith(".whl"):
                continue  # only wheels: the check passes --only-binary=:all:, as pip would skip the rest
            url = urllib.parse.urljoin(page_url, href.group(1).replace("&amp;", "&"))
            parts = urllib.parse.urlsplit(url)
            local = f"{self.url}/f/{parts.scheme}/{parts.netloc}{parts.path}" + (
                f"#{parts.fragment}" if parts.fragment else ""
            )
            tag = tag.replace(href.group(0), f'href="{local}"')
            if "metadata=" not in tag:
                tag = tag[:-1].rstrip("/").rstrip() + ' data-dist-info-metadata="true" data-core-metadata="true">'
            try:
                tags = frozenset(str(t) for t in parse_wheel_filename(name)[3])
            except InvalidWheelFilename:
                continue  # pip skips these too
            anchors.append((tags, f"{tag}{name}</a><br/>"))
        return anchors

    def target(self, platform: Platform, python: str) -> str:
        """The index URL for pip on ``platform`` with ``python``: pages list only wheels that machine accepts.

        The accepted tags are the ones pip itself computes from the same ``--platform`` and
        ``--python-version`` options, so only links it would skip are left out; pages shrink from
        up to thousands of links (numpy) to a few and pip parses them in a fraction of the time.
        """
        from pip._internal.utils.compatibility_tags import get_supported

        key = f"{PLATFORMS.index(platform)}-{python}" if platform in PLATFORMS else f"{platform.name}-{python}"
        key = re.sub(r"[^A-Za-z0-9.-]", "_", key)
        supported = get_supported(version=python.replace(".", ""), platforms=list(platform.tags), impl="cp")
        self.targets[key] = frozenset(str(t) for t in supported)
        return f"{self.url}/t/{key}/simple/"

    def _page(self, key: str, anchors: list[tuple[frozenset[str], str]]) -> bytes:
        accepted = self.targets[key]
        kept = [anchor for tags, anchor in anchors if tags & accepted]
        return ("<!DOCTYPE html>\n<html><body>\n" + "\n".join(kept) + "\n</body></html>\n").encode()

    def _range(self, url: str, spec: str) -> tuple[bytes, int]:
        """Bytes ``spec`` (``start-end`` or ``-suffix``) of ``url``, and the file's whole size."""
        request = urllib.request.Request(url, headers={"Range": f"bytes={spec}", "User-Agent": "resolve-requirements"})
        with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as r:
            body = r.read()
            if r.status != 206:
                raise OSError(f"{url}: the index does not serve byte ranges (HTTP {r.status})")
            size = int(r.headers["Content-Range"].rsplit("/", 1)[1])
        with self.lock:
            self.fetches += 1
            self.bytes += len(body)
        return body, size

    def _metadata_from_wheel(self, wheel_url: str) -> bytes:
        """The wheel's ``*.dist-info/METADATA``, read with byte ranges: its zip directory, then that member."""
        tail, size = self._range(wheel_url, f"-{_TAIL}")
        remote = _RangeFile(size, {size - len(tail): tail}, lambda a, b: self._range(wheel_url, f"{a}-{b - 1}")[0])
        with zipfile.ZipFile(remote) as wheel:
            names = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise OSError(f"{wheel_url}: no single .dist-info/METADATA in the wheel")
            return wheel.read(names[0])

    def _metadata(self, url: str) -> tuple[int, bytes, str]:
        """The index's ``.metadata`` file where it has one, else the wheel's own, kept on disk by URL."""
        cached = self.cache_dir / urllib.parse.urlsplit(url).path.lstrip("/") if self.cache_dir else None
        if cached and cached.is_file():
            return 200, cached.read_bytes(), "application/octet-stream"
        status, body, ctype = self._fetch(url)
        if status == 404:
            try:
                status, body, ctype = (
                    200,
                    self._metadata_from_wheel(url[: -len(".metadata")]),
                    "application/octet-stream",
                )
            except (OSError, zipfile.BadZipFile, urllib.error.URLError) as e:
                return 502, f"no metadata for {url}: {e}".encode(), "text/plain"
        if status == 200 and cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(body)
            partial.replace(cached)  # whole or not at all, however many runs share the folder
        return status, body, ctype

    def get(self, path: str) -> tuple[int, bytes, str]:
        if path.startswith("/t/"):
            key, _, rest = path[3:].partition("/")
            if key not in self.targets or not rest.startswith("simple/"):
                return 404, b"no such target", "text/plain"
            upstream = self.index_url + rest[len("simple/") :]
        elif path.startswith("/f/"):
            scheme, rest = path[3:].split("/", 1)
            upstream = f"{scheme}://{rest}"
            if not upstream.endswith(".metadata"):
                return 403, b"the resolve check downloads no wheels", "text/plain"
        else:
            return 404, b"not here", "text/plain"
        with self.lock:
            lock = self.locks.setdefault(upstream, threading.Lock())
        with lock:  # one fetch per URL, however many resolvers ask at once
            if upstream not in self.cache:
                page = path.startswith("/t/")
                status, body, ctype = (self._fetch if page else self._metadata)(upstream)
                if status == 200 and page:
                    body = self._anchors(upstream, body.decode("utf-8", "replace"))
                if status not in (200, 404):
                    return status, body, ctype
                self.cache[upstream] = (status, body, "text/html" if page else ctype)
            status, body, ctype = self.cache[upstream]
        if status == 200 and path.startswith("/t/"):
            body = self._page(key, body)
        return status, body, ctype


def index_settings(python: str = sys.executable) -> tuple[str, str | None]:
    """The index URL and CA bundle this machine's pip is set to use (``pip config list``)."""
    index, cert = os.environ.get("PIP_INDEX_URL"), os.environ.get("PIP_CERT")
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(".index-url") and not index:
            index = value
        if key.endswith(".cert") and not cert:
            cert = value
    return index or "https://pypi.org/simple/", cert


PIP_MIN = (25, 3)  # older pips download every wheel at the end of --dry-run, metadata or not


def pip_problem() -> str | None:
    """None when this Python's pip can run the check, else one line saying what to do."""
    try:
        from pip import __version__
    except ImportError:
        return f"pip is not installed for {sys.executable}"
    found = tuple(int(x) for x in re.findall(r"\d+", __version__)[:2])
    if found < PIP_MIN:
        need = ".".join(map(str, PIP_MIN))
        return (
            f"pip {__version__} downloads every wheel under --dry-run; pip>={need} does not: pip install 'pip>={need}'"
        )
    return None


def python_range(file: str, platform: Platform, pythons=PYTHONS) -> str:
    """The Pythons ``file`` resolves for on ``platform``, as the README's table writes them: 3.10–3.13, or none."""
    ok = [py for py in pythons if (file, platform.name, py) not in UNAVAILABLE]
    if not ok:
        return "none"
    if ok != [py for py in pythons if pythons.index(ok[0]) <= pythons.index(py) <= pythons.index(ok[-1])]:
        return ", ".join(ok)
    return ok[0] if len(ok) == 1 else f"{ok[0]}–{ok[-1]}"


def check_index(index_url: str, cafile: str | None, timeout: float = 15) -> str | None:
    """None when the index answers, else one line saying why not."""
    import ssl

    context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    url = index_url.rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=timeout, context=context
        ):
            return None
    except (urllib.error.URLError, OSError) as e:
        return f"package index {index_url} unreachable ({e})"


# --------------------------------------------------------------------------- resolving


@dataclass
class Result:
    file: str
    platform: str
    python: str
    ok: bool
    seconds: float
    installs: dict[str, str]  # name -> version
    error: str = ""
    environment: dict = field(default_factory=dict)


def _pip_env() -> dict:
    """This process's environment without the pip settings that point past the index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf: no local wheel folders, extra indexes or constraints
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def resolve(
    file: str | Path, platform: Platform, python: str, index_url: str, workdir: Path, timeout: float = 600
) -> Result:
    """Run pip's resolver for one file on one platform and Python; nothing is downloaded or installed."""
    tag = f"{Path(file).stem}-{platform.name.replace(' ', '_')}-{python}"
    reqs = workdir / f"{tag}.txt"
    lines = requirement_lines(ROOT / file)  # an absolute path stays itself
    if file == FILES[0]:
        lines += requirement_lines(ROOT / DEV_FILE)
    reqs.write_text("\n".join(lines) + "\n")
    report = workdir / f"{tag}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--pip-shim",
        json.dumps(marker_environment(platform, python)),
        "install",
        "--dry-run",
        "--ignore-installed",
        "--target",
        str(workdir / "target"),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        *[arg for t in platform.tags for arg in ("--platform", t)],
        "--index-url",
        index_url,
        "--no-cache-dir",
        "--report",
        str(report),
        "--quiet",
        "-r",
        str(reqs),
    ]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_pip_env())
    except subprocess.TimeoutExpired:
        return Result(
            file, platform.name, python, False, time.perf_counter() - start, {}, f"no answer in {timeout:.0f} s"
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not report.is_file():
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or proc.stderr.splitlines()[
            -3:
        ]
        return Result(file, platform.name, python, False, seconds, {}, " | ".join(errors))
    data = json.loads(report.read_text())
    installs = {
        re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"] for i in data["install"]
    }
    return Result(file, platform.name, python, True, seconds, installs, environment=data.get("environment", {}))


def run_all(
    files=FILES,
    platforms=PLATFORMS,
    pythons=PYTHONS,
    jobs: int = 4,
    timeout: float = 600,
    cache_dir: Path | None = None,
    log=print,
) -> tuple[list[Result], dict]:
    """Resolve every combination through one proxy; returns the results and totals."""
    index_url, cafile = index_settings()
    reason = pip_problem() or check_index(index_url, cafile)
    if reason:
        raise ConnectionError(reason)
    start = time.perf_counter()
    results = []
    with (
        IndexProxy(index_url, cafile, cache_dir=cache_dir) as proxy,
        tempfile.TemporaryDirectory(prefix="resolve-") as tmp,
    ):
        combos = [(f, p, py) for f in files for p in platforms for py in pythons]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(resolve, f, p, py, proxy.target(p, py), Path(tmp), timeout) for f, p, py in combos]
            for future in concurrent.futures.as_completed(futures):
                r = future.result()
                results.append(r)
                expected = (r.file, r.platform, r.python) not in UNAVAILABLE
                mark = "ok  " if r.ok else "FAIL"
                if not expected:
                    mark = "fail (expected)" if not r.ok else "RESOLVES (listed as unavailable)"
                key = {
                    "requirements.txt": "tensorflow",
                    "requirements-jax.txt": "jax",
                    "requirements-torch.txt": "torch",
                }
                name = key.get(r.file, "")
                what = f"{name} {r.installs.get(name) or r.installs.get(name + '-cpu', '')}" if r.ok else r.error
                log(f"{mark} {r.file:24} {r.platform:14} {r.python:5} {r.seconds:6.1f} s  {what}")
        totals = {"seconds": time.perf_counter() - start, "fetches": proxy.fetches, "bytes": proxy.bytes}
    order = {
        (f, p.name, py): i
        for i, (f, p, py) in enumerate((f, p, py) for f in files for p in platforms for py in pythons)
    }
    results.sort(key=lambda r: order[(r.file, r.platform, r.python)])
    return results, totals


def problems(results: list[Result]) -> list[str]:
    """One line per combination whose outcome is not what ``UNAVAILABLE`` says."""
    out = []
    for r in results:
        key = (r.file, r.platform, r.python)
        if key in UNAVAILABLE and r.ok:
            out.append(f"{r.file} on {r.platform} / Python {r.python} now resolves: remove it from UNAVAILABLE")
        elif key not in UNAVAILABLE and not r.ok:
            out.append(f"{r.file} on {r.platform} / Python {r.python} does not resolve: {r.error}")
    return out


def _pip_shim(environment: dict, args: list[str]) -> int:
    """Run pip with its environment markers evaluated for ``environment`` instead of this machine."""
    from pip._vendor.packaging import markers

    machine_environment = markers.default_environment

    def target_environment():
        values = machine_environment()
        values.update(environment)
        return values

    markers.default_environment = target_environment
    probe = markers.Marker(f'sys_platform == "{environment["sys_platform"]}"')
    assert probe.evaluate(), "the marker environment could not be replaced"
    from pip._internal.cli.main import main

    return main(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pip-shim"]:
        return _pip_shim(json.loads(argv[1]), argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--jobs", type=int, default=4, help="resolvers at once (default 4; mostly waiting on the network)"
    )
    parser.add_argument("--only", action="append", choices=FILES, help="this file only (repeatable)")
    parser.add_argument("--platform", action="append", choices=[p.name for p in PLATFORMS])
    parser.add_argument("--python", action="append", choices=PYTHONS)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one resolve")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=METADATA_CACHE,
        help=f"wheel metadata kept between runs (default {METADATA_CACHE}); --cache-dir '' keeps none",
    )
    args = parser.parse_args(argv)
    platforms = [p for p in PLATFORMS if not args.platform or p.name in args.platform]
    try:
        results, totals = run_all(
            args.only or FILES, platforms, args.python or PYTHONS, args.jobs, args.timeout, args.cache_dir or None
        )
    except ConnectionError as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 2
    bad = problems(results)
    print(
        f"{len(results)} resolves in {totals['seconds']:.0f} s with {args.jobs} at once, "
        f"{totals['fetches']} fetches from the index ({totals['bytes'] / 1e6:.1f} MB)"
    )
    if args.json:
        args.json.write_text(json.dumps({"totals": totals, "results": [r.__dict__ for r in results]}, indent=1))
    for line in bad:
        print(line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
