"""The README's two commands, asked of the package index for every platform and Python it names.

``tools/resolve_requirements.py`` runs pip's resolver (``--dry-run``, nothing installed, no wheel
downloaded) as a learner's pip on each machine would. These tests run it, show that it can fail
(TensorFlow's old CPU-only line on Apple silicon), and check that the README's table says what
the check's data says. They skip, saying why, where the index cannot be reached or pip is too old.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("resolve_requirements", ROOT / "tools" / "resolve_requirements.py")
rr = importlib.util.module_from_spec(_spec)
sys.modules["resolve_requirements"] = rr
_spec.loader.exec_module(rr)

PLATFORM = {p.name: p for p in rr.PLATFORMS}


def _index_ready() -> tuple[str, str | None]:
    reason = rr.pip_problem()
    if reason:
        pytest.skip(reason)
    index_url, cafile = rr.index_settings()
    reason = rr.check_index(index_url, cafile)
    if reason:
        pytest.skip(f"{reason}: the resolve check needs the package index")
    return index_url, cafile


@pytest.fixture(scope="module")
def proxy():
    index_url, cafile = _index_ready()
    with rr.IndexProxy(index_url, cafile, cache_dir=rr.METADATA_CACHE) as p:
        yield p


def readme_table() -> dict[str, dict[str, str]]:
    """The README's platform table: {platform: {column header: cell}}."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- platforms -->", 1)[1].split("<!-- /platforms -->", 1)[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines() if line.startswith("|")
    ]
    header, body = rows[0], [r for r in rows[2:]]
    return {r[0]: dict(zip(header, r)) for r in body}


def test_requirement_lines_leave_out_the_workbook_itself(tmp_path):
    reqs = tmp_path / "r.txt"
    reqs.write_text('# note\nkeras>=3.5  # why\n-e .\n\ntorch==2.13.0; sys_platform != "darwin"\n')
    assert rr.requirement_lines(reqs) == ["keras>=3.5", 'torch==2.13.0; sys_platform != "darwin"']


def test_linux_tags_name_every_glibc_level():
    tags = PLATFORM["Linux x86-64"].tags
    assert tags[0] == "manylinux_2_31_x86_64" and "manylinux_2_17_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(tags)
    assert all("x86_64" in t for t in tags)


def test_readme_table_says_what_the_check_checks():
    """One row per platform, each file's Python range as ``UNAVAILABLE`` leaves it, a GPU column."""
    table = readme_table()
    assert set(table) == set(PLATFORM), "README's platform table and tools/resolve_requirements.py PLATFORMS differ"
    columns = {f: next(h for h in next(iter(table.values())) if f"`{f}`" in h) for f in rr.FILES}
    for name, row in table.items():
        for file, column in columns.items():
            expected = rr.python_range(file, PLATFORM[name])
            assert row[column].startswith(expected), f"README: {name} / {file} should start with {expected!r}"
        gpu = next((cell for header, cell in row.items() if header.startswith("GPU")), "")
        assert gpu, f"README: no GPU line for {name}"
    readme = (ROOT / "README.md").read_text()
    span = f"{rr.PYTHONS[0]}–{rr.PYTHONS[-1]}"
    assert f"Python {span}" in readme, f"README's install section should name Python {span}"


@pytest.mark.parametrize("platform", ["Windows amd64", "macOS arm64"])
def test_markers_are_those_of_the_target_machine(proxy, platform, tmp_path):
    """pip alone would read ``sys_platform`` of this Linux machine; the check reads the target's."""
    reqs = tmp_path / "markers.txt"
    reqs.write_text('six; sys_platform == "win32"\nidna; sys_platform == "darwin"\n')
    target = PLATFORM[platform]
    r = rr.resolve(reqs, target, "3.12", proxy.target(target, "3.12"), tmp_path)
    assert r.ok, r.error
    assert r.environment["sys_platform"] == target.markers["sys_platform"]
    assert set(r.installs) == ({"six"} if platform.startswith("Windows") else {"idna"})


def test_the_check_fails_for_tensorflow_cpu_on_apple_silicon(proxy, tmp_path):
    """The requirement the README had before: tensorflow-cpu has no wheel for macOS arm64."""
    old = tmp_path / "requirements-old.txt"
    old.write_text("tensorflow-cpu>=2.16,<2.22\n")
    mac = PLATFORM["macOS arm64"]
    r = rr.resolve(old, mac, "3.12", proxy.target(mac, "3.12"), tmp_path)
    assert not r.ok
    assert "tensorflow-cpu" in r.error and "No matching distribution" in r.error
    linux = PLATFORM["Linux x86-64"]
    assert rr.resolve(old, linux, "3.12", proxy.target(linux, "3.12"), tmp_path).ok


def _matrix() -> tuple[tuple[str, ...], str]:
    """All Pythons with WORKBOOK_RESOLVE_ALL=1; by default the oldest and newest, every platform and file."""
    if os.environ.get("WORKBOOK_RESOLVE_ALL") == "1":
        return rr.PYTHONS, "every Python"
    return (rr.PYTHONS[0], rr.PYTHONS[-1]), "oldest and newest Python (WORKBOOK_RESOLVE_ALL=1 for all)"


@pytest.mark.slow
def test_every_requirements_file_resolves_on_every_platform(capsys):
    """Each file x platform x Python resolves, except those ``UNAVAILABLE`` lists, which must still fail."""
    _index_ready()
    pythons, which = _matrix()
    lines = []
    try:
        results, totals = rr.run_all(
            pythons=pythons, jobs=4, timeout=480, cache_dir=rr.METADATA_CACHE, log=lines.append
        )
    except ConnectionError as e:
        pytest.skip(str(e))
    with capsys.disabled():
        print(f"\nresolve check, {which}: {len(results)} resolves in {totals['seconds']:.0f} s")
    assert len(results) == len(rr.FILES) * len(rr.PLATFORMS) * len(pythons)
    bad = rr.problems(results)
    assert not bad, "\n".join(bad + ["", *sorted(lines)])
    for r in results:
        if r.ok and r.file == "requirements.txt":
            wanted = "tensorflow-cpu" if r.platform in ("Linux x86-64", "Windows amd64") else "tensorflow"
            assert wanted in r.installs, f"{r.platform} / {r.python}: {sorted(r.installs)}"
            assert re.match(r"3\.", r.installs["keras"]), r.installs["keras"]
