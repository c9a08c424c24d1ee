"""Shared fixtures: tiny generated photo folders, and the real material from ../shared.

Real weights and photos are reached only through ``WORKBOOK_WEIGHTS_DIR`` and
``WORKBOOK_DATA`` (set by ``.ci/run``); tests that need them skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    import fcntl  # POSIX: the workers lock a shared file while one of them makes it (made_once)
except ImportError:  # elsewhere each worker makes its own copy
    fcntl = None

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


#: The longest test files, longest first (seconds per file on 3 workers, 2 cores, 2026-12-06, a fresh clone:
#: notebooks 249, backends 168 + about 30, bad_inputs 147, faults 128, requirements 95, train 92, cache 86,
#: compare 79, few_shot 63, torch 57, device 56, export 32, backbones 32, runner 31, browser 25, lesson 25).
#: ``--dist loadfile`` hands whole files to the workers in collection order (with ``--no-loadscope-reorder``; xdist
#: otherwise orders them by their number of tests), so these start first and no worker is left running a long file
#: alone at the end.
LONGEST_FIRST = (
    "test_notebooks.py",
    "test_backends.py",
    "test_bad_inputs.py",
    "test_faults.py",
    "test_requirements.py",
    "test_train.py",
    "test_cache.py",
    "test_compare.py",
    "test_few_shot.py",
    "test_torch.py",
    "test_device.py",
    "test_export.py",
    "test_backbones.py",
    "test_runner.py",
    "test_browser.py",
    "test_lesson.py",
)


#: Set to a folder to keep the tests' caches between runs (faster, but no longer what a fresh machine sees).
TEST_CACHE_ENV = "WORKBOOK_TEST_CACHE"
_made_cache: list[str] = []


def pytest_configure(config) -> None:
    """The tests' caches live in a folder of their own, never in the user's ``~/.cache``: the activation store's
    default folder, JAX's compiled programs, the resolve check's wheel metadata, matplotlib's font list all
    follow ``$XDG_CACHE_HOME``. A new folder per test session (what a fresh CI machine has), removed at the end,
    or ``$WORKBOOK_TEST_CACHE``. The xdist workers and every subprocess inherit it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # set by the controller, before it started the workers
    folder = os.environ.get(TEST_CACHE_ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="workbook-tests-cache-")
        _made_cache.append(folder)
    os.environ["XDG_CACHE_HOME"] = folder


def pytest_unconfigure(config) -> None:
    for folder in _made_cache:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default, as in a terminal's
    foreground job. Tests started as a background job of a non-interactive shell (``cmd &``) inherit SIGINT
    ignored, and a Python that starts with SIGINT ignored never sees a Ctrl-C: the test would then measure the
    shell that started it, not the workbook."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env_dir(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(scope="session")
def shared_weights_dir() -> Path:
    """The folder of genuine ImageNet weight files (``$WORKBOOK_WEIGHTS_DIR``)."""
    found = _env_dir("WORKBOOK_WEIGHTS_DIR")
    if found is None or not (found / MOBILENET_V2_FILE).is_file():
        pytest.skip(
            "real ImageNet weights not available: set WORKBOOK_WEIGHTS_DIR to a folder "
            f"holding {MOBILENET_V2_FILE} (CI uses ../shared/weights)"
        )
    return found


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """The real Lion/Tiger/Bear photo folder (``$WORKBOOK_DATA``)."""
    found = _env_dir("WORKBOOK_DATA")
    if found is None:
        pytest.skip(
            "real photos not available: set WORKBOOK_DATA to a Lion/Tiger/Bear folder "
            "(CI uses ../shared/data/lion-tiger-bear)"
        )
    return found


def make_photo(path: Path, colour: tuple[int, int, int], size: int = 48, seed: int = 0) -> Path:
    """Write a small, noisy JPEG of one dominant colour: easy to learn, real to decode."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


COLOURS = {"bear": (120, 70, 30), "lion": (220, 180, 60), "tiger": (40, 120, 220)}


def make_tiny_photos(root: Path) -> Path:
    """``root/{train,val}/{bear,lion,tiger}/`` with 8 + 4 generated JPEGs per class (the same ones every time)."""
    for split, n in (("train", 8), ("val", 4)):
        for c, (name, colour) in enumerate(COLOURS.items()):
            for i in range(n):
                make_photo(root / split / name / f"{name}_{i}.jpg", colour, seed=1000 * (split == "val") + 100 * c + i)
    return root


@pytest.fixture
def tiny_photos(tmp_path: Path) -> Path:
    """``tmp/photos/{train,val}/{bear,lion,tiger}/`` with 8 + 4 generated JPEGs per class."""
    return make_tiny_photos(tmp_path / "photos")


def made_once(tmp_path_factory, name: str, make) -> Path:
    """The folder ``name``, filled by ``make(folder)`` once per test session for every pytest-xdist worker.

    Each worker has its own base folder; the shared one is their parent. The first worker to get there holds an
    exclusive lock while ``make`` runs and marks the folder done; the others wait on the lock, then reuse it. A
    ``make`` that failed left no mark, so the next one starts again. Without ``fcntl``, each worker makes its own.
    """
    if fcntl is None:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(parents=True, exist_ok=True)
    done = folder.parent / f"{name}.done"
    with open(folder.parent / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.is_file():
                make(folder)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


@pytest.fixture(scope="session")
def random_backbone_weights(tmp_path_factory) -> Path:
    """A MobileNetV2-0.35 weights file: random, but with BatchNorm statistics set from a batch.

    ``weights=None`` leaves BatchNorm at mean 0 / variance 1, and 50 random layers shrink the
    features to ~1e-11, so every class gets probability 1/3 and ties hide bugs. Setting each
    BatchNorm's statistics from one batch (momentum 0, one training-mode call) keeps the
    features at a normal scale. Pass it as ``weights=PATH`` with ``mobilenet_v2_0.35``.
    Made once per test session and shared by the workers (read-only).
    """
    import keras

    name = "mobilenet_v2_0.35_calibrated.weights.h5"

    def make(folder: Path) -> None:
        keras.utils.set_random_seed(0)
        app = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(48, 48, 3))
        for layer in app.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0
        noise = np.random.default_rng(0).uniform(-1, 1, (32, 48, 48, 3)).astype("float32")
        app(noise, training=True)
        app.save_weights(folder / name)

    return made_once(tmp_path_factory, "weights", make) / name


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, random_backbone_weights) -> Path:
    """A small classifier trained once per test session by ``train_classifier`` on generated photos.

    Returns the run folder: ``model.keras``, ``metrics.json`` and ``photos/`` (the data it
    was trained on). Used by the evaluate, export and predict tests (notebooks 06 and 08).
    The workers share it: tests read it, and write only new files into it (evaluate's report).
    """
    from helpers.run.train import RunConfig, train_classifier

    def make(run: Path) -> None:
        make_tiny_photos(run / "photos")
        config = RunConfig(
            run / "photos", backbone="mobilenet_v2_0.35", weights=str(random_backbone_weights), image_size=48,
            epochs=30, seed=0,
        )  # fmt: skip
        train_classifier(config, run)

    return made_once(tmp_path_factory, "tiny_run", make)


@pytest.fixture(scope="session")
def quick_workbook(request, tmp_path_factory, shared_photos, shared_weights_dir) -> dict:
    """The notebooks this session's tests need, each executed ONCE in quick mode, by the runner.

    ``python -m helpers notebooks --quick`` (``run_notebooks``) runs them, in order, into one
    folder, as the main job does; every test that needs an executed notebook shares it.
    Which notebooks: those named by the ``path`` parameter of the selected tests that use
    this fixture (``-k 03`` runs notebook 03 alone); all of them if a selected test asks
    without a ``path``. Returns ``{"out": folder, "runs": {name: NotebookRun}, "summary":
    notebooks.json}``; with ``$WORKBOOK_ARTIFACTS`` set (CI), the executed notebooks,
    ``notebooks.json`` and ``passes.jsonl`` are also copied to ``$WORKBOOK_ARTIFACTS/notebooks/``.
    """
    import json

    from helpers.tools import notebooks

    wanted: set[str] = set()
    for item in request.session.items:
        if "quick_workbook" not in getattr(item, "fixturenames", ()):
            continue
        path = getattr(item, "callspec", None) and item.callspec.params.get("path")
        if path is None:
            wanted = {p.stem for p in notebooks.notebook_paths()}
            break
        wanted.add(Path(path).stem)
    out = tmp_path_factory.mktemp("quick_workbook")
    saved = os.environ.get("WORKBOOK_CACHE")
    os.environ["WORKBOOK_CACHE"] = str(out / "cache")  # from an empty activation store, as issue 9 counts
    try:
        selected = notebooks.notebook_paths(only=sorted(wanted) or None)
        runs = notebooks.run_notebooks(
            out,
            quick=True,
            # only what the selected notebooks declare: the runner refuses a name none of them has
            parameters={
                k: v
                for k, v in WORKBOOK_PARAMETERS.items()
                if any(k in notebooks.declared_parameters(p) for p in selected)
            },  # fmt: skip
            only=sorted(wanted) or None,
            log=print,
            timeout=QUICK_CELL_TIMEOUT_S,
        )
    finally:
        if saved is None:
            os.environ.pop("WORKBOOK_CACHE", None)
        else:
            os.environ["WORKBOOK_CACHE"] = saved
    if os.environ.get("WORKBOOK_ARTIFACTS"):  # CI keeps the executed notebooks and notebooks.json
        import shutil

        kept = Path(os.environ["WORKBOOK_ARTIFACTS"]) / "notebooks"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for name in [run.output.name for run in runs] + [notebooks.SUMMARY, notebooks.PASS_LOG]:
            if (out / name).is_file():
                shutil.copy2(out / name, kept / name)
    return {
        "out": out,
        "runs": {run.name: run for run in runs},
        "summary": json.loads((out / notebooks.SUMMARY).read_text()),
    }


#: On top of quick mode, for the TensorFlow workbook run: 08 does not reload its .keras file under
#: JAX here (a 15–50 s subprocess); the JAX run of 08 (tests/test_backends.py) reloads it under TensorFlow.
WORKBOOK_PARAMETERS = {"OTHER_BACKEND": False}
QUICK_CELL_TIMEOUT_S = 900  # one quick-mode cell; a hung cell fails its notebook, not the session


def backend_python(venv: str, requirements: str, env_var: str | None = None) -> Path:
    """The Python of another backend's venv (``venv`` in the project root, or ``$env_var``).

    Skips the test, saying how to make the venv, where there is none.
    """
    root = Path(__file__).resolve().parent.parent
    python = Path((env_var and os.environ.get(env_var)) or root / venv / "bin" / "python")
    if not python.is_file():
        how = f" (or set ${env_var} to a Python that has its backend and keras)" if env_var else ""
        pytest.skip(f"{python} does not exist: python3 -m venv {venv} && {venv}/bin/pip install -r {requirements}{how}")
    return python


def run_under(backend: str, python: Path, *args: str, env: dict | None = None, timeout: int = 1500):
    """``python *args`` with ``KERAS_BACKEND=backend``, in the project root, no ``PYTHONPATH``.

    For another backend's venv (``.venv-jax``, ``.venv-torch``): only what that venv has, and the
    ``helpers`` and ``tests`` of this checkout (the working directory). Returns the CompletedProcess.
    """
    import subprocess

    environ = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    environ.pop("PYTHONPATH", None)
    environ.update(env or {})
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([str(python), *args], cwd=root, env=environ, capture_output=True, text=True, timeout=timeout)


def check_train_then_predict(
    run, photos: Path, weights_dir: Path, tmp_path: Path, per_class: int = 5, size: int | None = 96, least: float = 0.5
) -> dict:
    """``helpers train`` (MobileNetV2, ``per_class`` photos per class at ``size`` px; None: 224) then ``predict``.

    ``run(*args, env=...)`` runs ``python -m helpers …`` in another backend's venv
    (tests/test_backends.py: JAX, tests/test_torch.py: PyTorch); the run must reach ``least``
    test accuracy and ``predict`` give three probabilities that add up to 1. Returns metrics.json.
    """
    import json
    import re

    out = tmp_path / "run"
    result = run(
        "-m", "helpers", "train", "--data", str(photos), "--backbone", "mobilenet_v2",
        "--weights", str(weights_dir / MOBILENET_V2_FILE), "--per-class", str(per_class),
        *(["--image-size", str(size), "--epochs", "10"] if size else []),
        "--out", str(out), env={"WORKBOOK_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == ["bear", "lion", "tiger"] and metrics["test_accuracy"] >= least, metrics
    tiger = sorted((photos / "val" / "tiger").glob("*.jpg"))[0]
    result = run("-m", "helpers", "predict", "--model", str(out / "model.keras"), str(tiger))
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith(str(tiger)))
    probabilities = [float(p) for p in re.findall(r"(?:bear|lion|tiger) (\d\.\d{3})", line)]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 0.01, line
    return metrics
