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


def test_the_torch_venv_has_no_tensorflow(torch_python):
    result = run_torch(
        torch_python,
        "-c",
        "import importlib.util, keras, helpers, sys; "
        "print(keras.backend.backend(), importlib.util.find_spec('tensorflow') is None, "
        "'tensorflow' in sys.modules, helpers.__file__)",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    backend, no_tf, tf_loaded, where = result.stdout.split()
    assert (backend, no_tf, tf_loaded) == ("torch", "True", "False")
    assert Path(where).resolve().is_relative_to(ROOT), f"helpers came from {where}, not this checkout"


def test_grad_cam_really_runs_under_torch_autograd(torch_python):
    from test_explain import grad_cam_script

    result = run_torch(
        torch_python, "-c", grad_cam_script("torch"), timeout=600
    )  # cwd: tests and helpers of this checkout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "grad-cam ok" in result.stdout


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
