"""The same workbook on PyTorch with no TensorFlow installed: train → predict, notebooks 02–04 quick,
Grad-CAM by torch autograd.

These run in a subprocess with the project's ``.venv-torch`` (``pip install -r
requirements-torch.txt``: the CPU build of torch, no TensorFlow), or the Python named by
``$WORKBOOK_TORCH_PYTHON``, and ``KERAS_BACKEND=torch``; they skip, saying why, where neither
exists or the real photos and weights (``WORKBOOK_DATA``, ``WORKBOOK_WEIGHTS_DIR``) are not set.
The JAX runs are tests/test_backends.py, the TensorFlow ones tests/test_notebooks.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH_PYTHON_ENV = "WORKBOOK_TORCH_PYTHON"
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def torch_python() -> Path:
    python = Path(os.environ.get(TORCH_PYTHON_ENV) or ROOT / ".venv-torch" / "bin" / "python")
    if not python.is_file():
        pytest.skip(
            f"{python} does not exist: python3 -m venv .venv-torch && .venv-torch/bin/pip install -r "
            f"requirements-torch.txt (or set ${TORCH_PYTHON_ENV} to a Python that has torch and keras)"
        )
    return python


def run_torch(python: Path, *args: str, env: dict | None = None, timeout: int = 1500) -> subprocess.CompletedProcess:
    environ = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    environ.pop("PYTHONPATH", None)  # only what the torch venv has, and the helpers of this checkout (cwd)
    environ.update(env or {})
    return subprocess.run([str(python), *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)


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


TORCH_GRAD_CAM = textwrap.dedent("""
    import keras, numpy as np
    assert keras.backend.backend() == "torch", keras.backend.backend()
    import torch
    from tests.test_explain import test_the_gradient_is_the_exact_one
    from helpers import cuts, explain, train
    test_the_gradient_is_the_exact_one()             # the red detector, by torch.autograd.grad
    keras.utils.set_random_seed(0)  # random weights: unseeded, a lower cut's map could come out all zero
    model = train.build_classifier(["a", "b", "c"], "mobilenet_v2_0.35", weights=None, image_size=32,
                                 normalize=False)  # score = W . mean(maps): an exact gradient to check
    assert not cuts.base_of(model).trainable  # frozen: its weights do not require grad under torch
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    maps, grads, chosen = explain.gradients(explain.grad_model(model), images, return_classes=True)
    w = keras.ops.convert_to_numpy(model.get_layer("predictions").kernel)
    h, wd = maps.shape[1:3]
    for i, c in enumerate(chosen):
        np.testing.assert_allclose(grads[i], np.broadcast_to(w[:, c] / (h * wd), grads[i].shape), rtol=1e-4, atol=1e-9)
    lower = cuts.cut_points(cuts.base_of(model))[-3]  # inside the frozen base: through the blocks above
    heat, _ = explain.grad_cam(model, images, layer_name=lower)
    assert heat.shape[0] == 2 and np.isfinite(heat).all() and heat.max() > 0
    print("torch", torch.__version__, "grad-cam ok")
""")


def test_grad_cam_really_runs_under_torch_autograd(torch_python):
    result = run_torch(torch_python, "-c", TORCH_GRAD_CAM, timeout=600)  # cwd: tests and helpers of this checkout
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
