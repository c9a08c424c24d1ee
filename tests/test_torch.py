"""The same workbook on PyTorch with no TensorFlow installed: train → predict, notebooks 02–04 quick,
Grad-CAM by torch autograd.

These run in a subprocess with the project's ``.venv-torch`` (``pip install -r
requirements-torch.txt``: the CPU build of torch, no TensorFlow), or the Python named by
``$WORKBOOK_TORCH_PYTHON``, and ``KERAS_BACKEND=torch``; they skip, saying why, where neither
exists or the real photos and weights (``WORKBOOK_DATA``, ``WORKBOOK_WEIGHTS_DIR``) are not set.
The JAX runs are tests/test_backends.py, the TensorFlow ones tests/test_notebooks.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from conftest import backend_python, run_under

ROOT = Path(__file__).resolve().parent.parent
TORCH_PYTHON_ENV = "WORKBOOK_TORCH_PYTHON"
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def torch_python() -> Path:
    return backend_python(".venv-torch", "requirements-torch.txt", TORCH_PYTHON_ENV)


run_torch = functools.partial(run_under, "torch")


@pytest.fixture(scope="module")
def torch_checks(torch_python):
    """One interpreter start for two checks: what ``import keras, helpers`` loads (a line printed first), then
    Grad-CAM by torch autograd (test_explain's script). Returns the CompletedProcess."""
    from test_explain import grad_cam_script

    loaded = (
        "import importlib.util, keras, helpers, sys\n"
        "print('LOADED', keras.backend.backend(), importlib.util.find_spec('tensorflow') is None, "
        "'tensorflow' in sys.modules, helpers.__file__, flush=True)\n"
    )
    return run_torch(torch_python, "-c", loaded + grad_cam_script("torch"), timeout=600)  # cwd: this checkout


def test_the_torch_venv_has_no_tensorflow(torch_checks):
    line = next((x for x in torch_checks.stdout.splitlines() if x.startswith("LOADED ")), None)
    assert line is not None, torch_checks.stderr[-2000:]
    backend, no_tf, tf_loaded, where = line.split()[1:]
    assert (backend, no_tf, tf_loaded) == ("torch", "True", "False")
    assert Path(where).resolve().is_relative_to(ROOT), f"helpers came from {where}, not this checkout"


def test_grad_cam_really_runs_under_torch_autograd(torch_checks):
    assert torch_checks.returncode == 0, torch_checks.stderr[-3000:]
    assert "grad-cam ok" in torch_checks.stdout


def test_notebooks_02_to_04_run_quick_under_torch(torch_python, shared_photos, shared_weights_dir, tmp_path):
    out = tmp_path / "runs"
    result = run_torch(
        torch_python,
        "-m",
        "helpers",
        "notebooks",
        "--quick",
        "--only",
        "02",
        "03",
        "04",
        "--out",
        str(out),
        "-p",  # one draw for 04's head-vs-fine-tune tables where quick mode has two (each path still runs)
        "SEEDS",
        "[0]",
        env={"WORKBOOK_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    summary = json.loads((out / "notebooks.json").read_text())
    assert [(n["name"], n["ok"]) for n in summary["notebooks"]] == [
        ("02_pop_and_add_head", True),
        ("03_train_the_head", True),
        ("04_fine_tune", True),
    ]
    print({n["name"]: n["seconds"] for n in summary["notebooks"]})


def test_cli_train_then_predict_under_torch(torch_python, shared_photos, shared_weights_dir, tmp_path):
    from conftest import check_train_then_predict

    check_train_then_predict(
        lambda *args, **kw: run_torch(torch_python, *args, **kw), shared_photos, shared_weights_dir, tmp_path
    )
