"""Interrupted runs, stale state, damaged caches and hostile inputs: nothing half-written is ever read back.

Everything here is real: the command line runs in subprocesses and is killed with SIGKILL
or SIGINT, cache entries are damaged on disk, read-only and full file systems are real
tmpfs mounts (root only; elsewhere a chmod-ed folder stands in for read-only and the
disk-full tests skip, saying so), and the hostile photos are real PNG files.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, make_photo, make_tiny_photos, sigint_as_in_a_terminal
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SIZE = 48
BACKBONE = "mobilenet_v2_0.35"
CLASSES = sorted(COLOURS)


def env(**extra: str) -> dict:
    out = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    out.pop("WORKBOOK_CACHE", None)
    return out


def cli(*args, timeout: int = 300, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "helpers", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**extra),
        timeout=timeout,
        cwd=ROOT,
    )


def in_process(*args) -> subprocess.CompletedProcess:
    """``main(args)`` of the command line in this process: for set-up runs and side checks whose process is not
    what the test is about (no second TensorFlow start-up); stdout and stderr are captured as a subprocess's are."""
    import contextlib
    import io

    from helpers.tools.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(["python -m helpers", *map(str, args)], code, out.getvalue(), err.getvalue())


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "helpers", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
        preexec_fn=sigint_as_in_a_terminal,  # a Ctrl-C test must not depend on how the tests were started
    )


def errors(result) -> list[str]:
    """stderr without TensorFlow's start-up chatter and progress bars."""
    return [
        line
        for line in result.stderr.splitlines()
        if line.strip()
        and not re.match(
            r"(WARNING: All log messages|I0000|To enable the following|"
            r"bottleneck:|\s*$)",
            line,
        )
    ]


def train_args(photos: Path, out: Path, weights: Path, cache: Path, epochs: int = 3, *extra) -> list:
    return [
        "train",
        "--data",
        photos,
        "--backbone",
        BACKBONE,
        "--weights",
        weights,
        "--image-size",
        SIZE,
        "--epochs",
        epochs,
        "--cache-dir",
        cache,
        "--out",
        out,
        *extra,
    ]


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_no_partial_files(folder: Path) -> None:
    hidden = [p for p in folder.rglob(".*") if p.is_file()]
    assert not hidden, f"temporary (half-written) files left: {hidden}"


# --------------------------------------------------------------------------- tmpfs (real file systems)


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (``mount(size, ro)``); unmounted afterwards. Root only."""
    mounted = []

    def mount(size: str = "1m", readonly: bool = False) -> Path:
        if not _can_mount():
            pytest.skip("needs root and mount(8) for a real small/read-only tmpfs")
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"mount -t tmpfs failed here ({done.stderr.decode().strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


# --------------------------------------------------------------------------- damaged cache entries


@pytest.fixture(scope="module")
def lively_bottom(random_backbone_weights):
    import keras

    from helpers.model import lesson
    from helpers.run import train

    keras.utils.set_random_seed(0)
    model = train.build_classifier(CLASSES, BACKBONE, str(random_backbone_weights), SIZE)
    return lesson.split_at(model, "pool")[0]


def _damage(path: Path, how: str, shape, dtype) -> None:
    from helpers.store import cache

    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    elif how == "wrong shape (plain .npy)":
        np.save(path, np.zeros((7, 3), dtype), allow_pickle=False)
    elif how == "wrong shape (with checksum)":
        path.write_bytes(cache.entry_bytes(np.zeros((7, 3), dtype)))
    elif how == "NaN (with checksum)":
        path.write_bytes(cache.entry_bytes(np.full(shape, np.nan, dtype)))
    elif how == "one flipped byte":
        data = bytearray(path.read_bytes())
        data[200] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "random bytes",
        "wrong shape (plain .npy)",
        "wrong shape (with checksum)",
        "NaN (with checksum)",
        "one flipped byte",
    ],
)
def test_a_damaged_cache_entry_is_named_recomputed_and_the_run_goes_on(
    lively_bottom, tiny_photos, tmp_path, capsys, how
):
    from helpers.store import cache

    paths = sorted((tiny_photos / "train").rglob("*.jpg"))[:6]
    store = cache.BottleneckCache(tmp_path / "cache", progress=False)
    clean = store.activations(lively_bottom, paths)
    assert np.isfinite(clean).all() and np.abs(clean).mean() > 1e-3  # real numbers to compare
    victim = store.folder_for(lively_bottom) / f"{cache.file_digest(paths[2])}.npy"
    _damage(victim, how, clean.shape[1:], clean.dtype)
    capsys.readouterr()
    again, stats = store.fetch(lively_bottom, paths)
    np.testing.assert_array_equal(again, clean)
    assert (stats.bad, stats.computed, stats.hits) == (1, 1, 5)
    named = [line for line in capsys.readouterr().err.splitlines() if victim.name in line]
    assert len(named) == 1 and "recomputing" in named[0] and str(paths[2]) in named[0]
    stats = store.fetch(lively_bottom, paths)[1]  # the entry was rewritten whole
    assert (stats.bad, stats.hits) == (0, 6)


def test_two_processes_filling_one_cache_folder_both_succeed(random_backbone_weights, tiny_photos, tmp_path):
    script = tmp_path / "fill.py"
    script.write_text(f"""
import sys, numpy as np
from pathlib import Path
from helpers.store import cache
from helpers.model import lesson
from helpers.run import train
import keras
keras.utils.set_random_seed(0)
model = train.build_classifier({CLASSES!r}, {BACKBONE!r}, {str(random_backbone_weights)!r}, {SIZE})
paths = sorted(Path({str(tiny_photos)!r}).rglob("*.jpg"))
out = cache.BottleneckCache(sys.argv[1], progress=False).activations(
    lesson.split_at(model, "pool")[0], paths, augment_copies=1, batch_size=2)
np.save(sys.argv[2], out)
""")
    shared = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(shared), str(tmp_path / f"out{i}.npy")],
            env=env(),
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    a, b = np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy")
    np.testing.assert_array_equal(a, b)
    assert a.shape[0] == 2 * 36 and np.isfinite(a).all()
    assert "damaged" not in err  # neither process ever saw half an entry


def test_kill_9_while_the_cache_is_written_then_a_rerun_equals_an_uninterrupted_run(
    random_backbone_weights, lively_bottom, tiny_photos, tmp_path, monkeypatch
):
    from helpers.store import cache, passes

    script = tmp_path / "fill.py"
    script.write_text(f"""
import sys
from pathlib import Path
from helpers.store import cache
from helpers.model import lesson
from helpers.run import train
import keras
keras.utils.set_random_seed(0)
model = train.build_classifier({CLASSES!r}, {BACKBONE!r}, {str(random_backbone_weights)!r}, {SIZE})
paths = sorted(Path({str(tiny_photos)!r}).rglob("*.jpg"))
cache.BottleneckCache(sys.argv[1], progress=False).activations(lesson.split_at(model, "pool")[0],
                                                                paths, augment_copies=2, batch_size=1)
""")
    shared = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(shared)], env=env(), cwd=ROOT, stderr=subprocess.DEVNULL)
    target = random.Random().randint(3, 60)  # a random point of the 108 writes
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shared.rglob("*.npy"))) < target and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # 36 photos: 36 entries at the checkpoint, 36 continued from them to pool, then 72 augmented views
    written = collections.Counter(p.parent.name.split("-")[0] for p in shared.rglob("*.npy"))
    assert 0 < sum(written.values()) < 144, f"killed after {written}: not in the middle"
    paths = sorted(tiny_photos.rglob("*.jpg"))
    store = cache.BottleneckCache(shared, progress=False)
    checkpoint = store.checkpoint_for(lively_bottom).name
    monkeypatch.setenv(passes.LOG_ENV, str(tmp_path / "passes.jsonl"))
    resumed, stats = store.fetch(lively_bottom, paths, augment_copies=2)
    assert stats.hits >= written["pool"] - 1 and stats.bad == 0
    computed = {e["kind"]: e["computed"] for e in passes.summarise(tmp_path / "passes.jsonl")}
    assert computed.get(f"frozen, up to {checkpoint}", 0) <= len(paths) - written[checkpoint] + 1, computed
    fresh = cache.BottleneckCache(tmp_path / "fresh", progress=False).activations(
        lively_bottom, paths, augment_copies=2
    )
    np.testing.assert_array_equal(resumed, fresh)


# --------------------------------------------------------------------------- interrupted and stale runs


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory, random_backbone_weights):
    """Generated photos, calibrated random weights and one activation cache shared by this module's runs."""
    root = tmp_path_factory.mktemp("faults")
    return make_tiny_photos(root / "photos"), random_backbone_weights, root / "cache"


@pytest.fixture(scope="module")
def whole_run(run_setup, tmp_path_factory) -> Path:
    """One uninterrupted ``train`` run (3 epochs): the result the other runs must equal."""
    photos, weights, cache_dir = run_setup
    out = tmp_path_factory.mktemp("whole") / "run"
    result = in_process(*train_args(photos, out, weights, cache_dir))  # set-up: the killed runs are subprocesses
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_kill_9_at_random_points_of_training_then_a_rerun_equals_an_uninterrupted_run(run_setup, whole_run, tmp_path):
    photos, weights, cache_dir = run_setup
    out = tmp_path / "killed"
    delays = [round(random.uniform(2.0, 8.0), 1) for _ in range(2)]
    for delay in delays:
        proc = start_cli(*train_args(photos, out, weights, cache_dir))
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    rerun = cli(*train_args(photos, out, weights, cache_dir))
    assert rerun.returncode == 0, f"killed at {delays} s: " + rerun.stderr[-2000:]
    a, b = metrics(whole_run), metrics(out)
    assert a["val_accuracy"] == b["val_accuracy"], delays
    np.testing.assert_allclose(
        a["phases"]["head"]["history"]["loss"], b["phases"]["head"]["history"]["loss"], rtol=1e-5
    )
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert_no_partial_files(out)


def test_a_truncated_checkpoint_from_a_killed_run_never_breaks_the_next_run(run_setup, whole_run, tmp_path):
    """What a kill during a checkpoint write leaves (Keras writes .h5 files in place): the next run must work."""
    photos, weights, cache_dir = run_setup
    out = tmp_path / "run"
    shutil.copytree(whole_run, out)
    expected = metrics(out)
    for h5 in out.rglob("*.h5"):
        h5.write_bytes(h5.read_bytes()[:100])
    stale = out / "checkpoints" / "head" / "backup"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    again = cli(*train_args(photos, out, weights, cache_dir))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stdout
    assert metrics(out)["val_accuracy"] == expected["val_accuracy"]


def test_a_folder_holding_another_run_is_refused_then_fresh_replaces_it(run_setup, whole_run, tmp_path):
    photos, weights, cache_dir = run_setup
    out = tmp_path / "run"
    shutil.copytree(whole_run, out)
    (out / "notes.txt").write_text("mine")  # a user's file in the output folder
    before = (out / "model.keras").read_bytes()
    refused = cli(*train_args(photos, out, weights, cache_dir, 2))
    assert refused.returncode == 2
    [line] = errors(refused)
    assert "holds another run" in line and "epochs 3 → 2" in line and "--fresh" in line and "--out" in line
    assert (out / "model.keras").read_bytes() == before  # nothing touched
    fresh = cli(*train_args(photos, out, weights, cache_dir, 0, "--fresh"))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "cleared the earlier run" in fresh.stdout and "--epochs 0: no head training" in fresh.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["epochs"] == 0 and record["status"] == "complete"
    assert "head" not in metrics(out)["phases"]  # no head phase ran
    assert (out / "notes.txt").read_text() == "mine"


def test_ctrl_c_is_one_line_and_exit_130_with_nothing_half_written(run_setup, tmp_path):
    photos, weights, cache_dir = run_setup
    out = tmp_path / "run"
    # long enough to be interrupted for sure: no early stop (the run must still be training when Ctrl-C comes)
    proc = start_cli(*train_args(photos, out, weights, cache_dir, 3000, "--patience", "100000"))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "run.json").exists():
        time.sleep(0.05)
    time.sleep(random.uniform(1.0, 4.0))
    assert proc.poll() is None, "the run ended before Ctrl-C: nothing was interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and len(errors(result)) <= 2, errors(result)
    assert "interrupted" in stderr
    assert not (out / "model.keras").exists()
    assert_no_partial_files(out)
    assert_no_partial_files(cache_dir) if cache_dir.exists() else None
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_a_second_train_into_a_live_run_is_refused_and_kill_9_leaves_no_stale_lock(run_setup, tmp_path):
    """Issue 17 (8): a running run holds the folder; a second one, resuming or --fresh, is refused naming its pid."""
    photos, weights, cache_dir = run_setup
    out = tmp_path / "run"
    first = start_cli(*train_args(photos, out, weights, cache_dir, 3000, "--patience", "100000"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "run.json").exists():
            time.sleep(0.05)
        record = json.loads((out / "run.json").read_text())
        for extra in ((), ("--fresh",)):
            second = cli(*train_args(photos, out, weights, cache_dir, 3000, "--patience", "100000", *extra))
            assert first.poll() is None, "the first run ended early: nothing was tested"
            assert second.returncode == 2, second.stderr[-2000:]
            [line] = errors(second)
            assert f"pid {first.pid}" in line and "in use by a running train" in line, line
            assert "--fresh would clear a live run" in line if extra else "resuming" not in second.stdout
            assert json.loads((out / "run.json").read_text()) == record  # the live run's record untouched
    finally:
        first.kill()
        first.communicate()
    assert (out / ".run.lock").exists()  # what kill -9 leaves: a file, but no lock
    again = cli(*train_args(photos, out, weights, cache_dir, 0, "--fresh"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cleared the earlier run" in again.stdout
    assert_no_partial_files(out)  # the lock file goes with the run that held it


def test_the_run_lock_is_one_per_folder_and_released(tmp_path):
    from helpers.run import runs

    with runs.lock(tmp_path / "run") as path:
        assert f"pid {os.getpid()}" in path.read_text()
        with pytest.raises(runs.RunLocked, match=f"in use by a running train \\(pid {os.getpid()} since"):
            with runs.lock(tmp_path / "run"):
                pass
        with runs.lock(tmp_path / "other"):  # another folder: its own lock
            pass
    assert not path.exists()
    with runs.lock(tmp_path / "run"):  # free again
        pass


# --------------------------------------------------------------------------- output locations


def test_an_out_that_is_a_file_read_only_or_full_is_refused_before_any_work(run_setup, tmp_path, tmpfs):
    photos, weights, cache_dir = run_setup
    a_file = tmp_path / "taken.txt"
    a_file.write_text("user data")
    full = tmpfs("1m")
    (full / "filler").write_bytes(b"\0" * 900_000)
    readonly = tmpfs("1m", readonly=True)
    for out, words in ((a_file, "is a file, not a folder"), (readonly / "run", "read-only"), (full, "free but about")):
        result = cli(*train_args(photos, out, weights, cache_dir))
        assert result.returncode != 0
        [line] = errors(result)
        assert str(out) in line and words in line, line
        assert "computing" not in result.stdout  # refused before the forward pass
    assert a_file.read_text() == "user data"


def test_the_disk_filling_up_during_a_run_is_one_line_and_leaves_nothing_half_written(run_setup, tmp_path, tmpfs):
    photos, weights, _ = run_setup
    small = tmpfs("40k")  # the activations (36 × 2.5 KB + headers) do not fit
    out = tmp_path / "run"
    result = cli(*train_args(photos, out, weights, small))
    assert result.returncode == 1
    [line] = errors(result)
    assert str(small) in line and "disk is full" in line, line
    assert_no_partial_files(small)
    assert not (out / "model.keras").exists()


def test_evaluate_into_a_read_only_folder_is_refused_before_the_forward_pass(tiny_trained_run, tmpfs):
    readonly = tmpfs("1m", readonly=True)
    result = cli(
        "evaluate",
        "--model",
        tiny_trained_run / "model.keras",
        "--data",
        tiny_trained_run / "photos",
        "--out",
        readonly,
    )
    assert result.returncode == 1
    [line] = errors(result)
    assert str(readonly) in line and "read-only" in line and "accuracy" not in result.stdout


def test_a_corrupt_model_file_is_named_as_not_a_keras_archive(tmp_path, tiny_photos):
    model = tmp_path / "model.keras"
    model.write_bytes(np.random.default_rng(1).bytes(5000))
    for args in (
        ("predict", "--model", model, next(tiny_photos.rglob("*.jpg"))),
        ("evaluate", "--model", model, "--data", tiny_photos),
    ):
        result = cli(*args)
        assert result.returncode == 2
        [line] = errors(result)
        assert f"{model} exists but is not a valid .keras archive" in line


# --------------------------------------------------------------------------- hostile photos


def test_a_decompression_bomb_is_named_and_the_good_photo_is_still_classified(tiny_trained_run, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000), 1).save(bomb)  # 196 megapixels in ~50 KB
    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000), 1).save(big)  # over the limit, under PIL's own error threshold
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"junk" * 10)
    good = sorted((tiny_trained_run / "photos" / "val" / "tiger").glob("*.jpg"))[0]
    result = cli(
        "predict", "--model", tiny_trained_run / "model.keras", bomb, good, big, corrupt, tmp_path / "missing.jpg"
    )
    assert result.returncode == 1
    assert re.search(rf"^{re.escape(str(good))}: (bear|lion|tiger) \d\.\d{{3}}", result.stdout, re.M)
    lines = errors(result)
    assert len(lines) == 4, lines  # one line per bad photo, nothing else (no traceback, no PIL warning)
    assert any(str(bomb) in line and "too large" in line for line in lines)
    assert any(str(big) in line and "too large" in line and "megapixels" in line for line in lines)
    assert any(str(corrupt) in line for line in lines) and any("missing.jpg: no such file" in line for line in lines)


def test_an_oversized_photo_is_refused_from_its_header_without_decoding(tmp_path):
    import resource

    from helpers.data import folders as data

    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000), 1).save(big)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    with pytest.raises(data.PhotoError, match=r"big.png: too large .*12000×12000"):
        data.load_image(big, 48)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 50, f"memory peak grew by {grown_mb:.0f} MB: the picture was decoded"


# --------------------------------------------------------------------------- silent surprises in the data


def _surprising_photos(root: Path) -> Path:
    for split, n in (("train", 8), ("val", 3)):
        for c, name in enumerate(("bear", "lion", "tiger")):
            for i in range(n):
                make_photo(
                    root / split / name / f"{name}_{i}.jpg", COLOURS[name], seed=1000 * (split == "val") + 100 * c + i
                )
    make_photo(root / "train" / "okapi" / "okapi_0.jpg", (90, 60, 90), seed=7)  # 1 photo, train only
    os.symlink("..", root / "train" / "lion" / "loop")  # lion/loop/bear/* would be labelled lion
    return root


def test_train_prints_what_check_data_knows_before_working(run_setup, tmp_path):
    _, weights, cache_dir = run_setup
    photos = _surprising_photos(tmp_path / "photos")
    result = in_process(*train_args(photos, tmp_path / "run", weights, cache_dir, 1))
    assert result.returncode == 0, result.stderr[-2000:]
    text = "\n".join(errors(result))
    assert "class 'okapi' has only 1 training photo" in text
    assert "val/ has no folder for: okapi" in text
    assert "loop" in text and "not followed" in text
    assert text.index("okapi") < result.stderr.index("bottleneck")  # before the work
    assert metrics(tmp_path / "run")["n_train"] == 8 * 3 + 1  # the loop did not add other classes' photos


def test_check_data_never_ends_ok_while_listing_problems(tmp_path):
    from helpers.data.folders import check_data

    photos = _surprising_photos(tmp_path / "photos")
    shutil.copy(photos / "train" / "bear" / "bear_0.jpg", photos / "train" / "tiger" / "copy_of_bear.jpg")
    report = check_data(photos)
    text = report.format()
    assert "two labels" in text and report.warnings
    assert not text.splitlines()[-1].startswith("OK"), text.splitlines()[-1]
    assert "warning" in text.splitlines()[-1]
    counts = report.counts()
    assert counts["lion"]["train"] == 8  # not 8 + the 16 bear/tiger photos reached through the loop


def test_evaluate_scores_every_photo_of_a_folder_without_splits_and_warns_about_unknown_labels(
    tiny_trained_run, tmp_path
):
    model = tmp_path / "model" / "model.keras"  # no labels.txt or metrics.json beside it
    model.parent.mkdir()
    shutil.copy(tiny_trained_run / "model.keras", model)
    flat = tmp_path / "others"
    for c, name in enumerate(("giraffe", "okapi", "zebra")):
        for i in range(5):
            make_photo(flat / name / f"{name}_{i}.jpg", (60 * c, 200 - 50 * c, 90), seed=50 * c + i)
    result = in_process("evaluate", "--model", model, "--data", flat)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scored 15 photos" in result.stdout and "5 giraffe, 5 okapi, 5 zebra" in result.stdout
    assert "every photo" in result.stdout
    assert any(line.startswith("WARNING") and "ASSUMED" in line for line in errors(result)), result.stderr
    report = json.loads((model.parent / "evaluation.json").read_text())
    assert report["n"] == 15 and report["split"] == "all" and report["warnings"]


def test_the_cli_finds_photos_like_the_notebooks(tmp_path, monkeypatch, capsys):
    """No --data and no $WORKBOOK_DATA: the CIFAR-100 default (already built here), not a refusal."""
    from helpers.data import datasets
    from helpers.tools import cli as cli_mod

    monkeypatch.delenv("WORKBOOK_DATA", raising=False)
    monkeypatch.setenv("WORKBOOK_OPENIMAGES_URL", "http://127.0.0.1:9")  # Open Images unreachable: the fallback
    monkeypatch.setattr(datasets, "DATA_ROOT", tmp_path / "data")
    built = tmp_path / "data" / datasets.cifar_folder_name()
    for split in ("train", "val"):
        for c, name in enumerate(CLASSES):
            for i in range(3):
                make_photo(
                    built / split / name / f"{name}_{i}.jpg", COLOURS[name], seed=10 * c + i + 100 * (split == "val")
                )
    (built / "dataset.json").write_text("{}")
    assert cli_mod.main(["check-data"]) == 0
    assert str(built) in capsys.readouterr().out


def test_cli_defaults_are_not_duplicated_in_argparse():
    from helpers.tools.cli import build_parser

    parser = build_parser()
    for command in ("train", "bench", "check-data"):
        args = parser.parse_args([command] + (["--out", "x"] if command == "train" else []))
        given = {
            k: v
            for k, v in vars(args).items()
            if v not in (None, False) and k not in ("command", "func", "before_keras", "verbose", "out", "weights")
        }
        assert not given, f"{command} has literal defaults {given}: take them from the helper functions"


def test_cache_list_and_clear_touch_only_the_cache(lively_bottom, tiny_photos, tmp_path):
    from helpers.store import cache

    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("not the cache's")
    store = cache.BottleneckCache(root, progress=False)
    store.activations(lively_bottom, sorted(tiny_photos.rglob("*.jpg"))[:4])
    # the pooled features and, from the same pass, the checkpoint fine-tuning starts from
    assert store.total_bytes > 4 * 2560 and "2 folders, 8 entries" in store.describe()
    listed = in_process("cache", "--list", "--cache-dir", root)
    assert listed.returncode == 0 and "48 px" in listed.stdout
    assert "pool-48px" in listed.stdout and "block_15_add-48px" in listed.stdout
    cleared = in_process("cache", "--clear", "--cache-dir", root)
    assert cleared.returncode == 0 and "freed" in cleared.stdout
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
