"""The same workbook on JAX with no TensorFlow installed: notebooks 02–04 and 08 quick, and train → predict.

These run in a subprocess with the project's ``.venv-jax`` (``pip install -r requirements-jax.txt``:
``jax[cpu]``, no TensorFlow) and ``KERAS_BACKEND=jax``; they skip, saying why, where that venv
does not exist or the real photos and weights (``WORKBOOK_DATA``, ``WORKBOOK_WEIGHTS_DIR``) are
not set. The TensorFlow runs of the same notebooks are tests/test_notebooks.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import nbformat
import pytest
from conftest import backend_python, run_under

ROOT = Path(__file__).resolve().parent.parent
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jax_python() -> Path:
    return backend_python(".venv-jax", "requirements-jax.txt")


run_jax = functools.partial(run_under, "jax")


def test_the_jax_venv_has_no_tensorflow(jax_python):
    result = run_jax(
        jax_python,
        "-c",
        "import importlib.util, keras, helpers, sys; "
        "print(keras.backend.backend(), importlib.util.find_spec('tensorflow') is None, "
        "'tensorflow' in sys.modules)",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["jax", "True", "False"]


JAX_NOTEBOOKS = ("02", "03", "04", "08")
#: On top of quick mode, for the backend runs only: one draw where quick mode repeats a comparison over two
#: (04's head-vs-fine-tune tables: each path still runs, under JAX each repeat is another compile). The
#: TensorFlow workbook run keeps quick mode.
SMALLER = ("-p", "SEEDS", "[0]")


def test_notebooks_run_quick_under_jax(jax_python, shared_photos, shared_weights_dir, tmp_path):
    """One runner call: the lesson notebooks 02–04 and the export notebook 08, quick (one draw), under JAX.

    00, 01, 05, 06 and 07 also run under JAX (quick and full mode, checked by hand: see the README); they stay
    out of CI to keep the tests within 10 minutes (about 125 s more for 00, 01, 06 and 07; 05 was 61 s of this
    test from an empty JAX compilation cache, measured 2026-12-06).
    """
    out = tmp_path / "runs"
    result = run_jax(
        jax_python,
        "-m",
        "helpers",
        "notebooks",
        "--quick",
        "--only",
        *JAX_NOTEBOOKS,
        "--out",
        str(out),
        *SMALLER,
        env={"WORKBOOK_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for stem in ("02_pop_and_add_head", "03_train_the_head", "04_fine_tune", "08_export_and_predict"):
        assert (out / f"{stem}.ipynb").is_file(), stem
    summary = json.loads((out / "notebooks.json").read_text())
    ran = {run["name"]: run for run in summary["notebooks"]}
    assert summary["complete"] and all(run["ok"] for run in ran.values()), summary["notebooks"]
    assert sorted(stem[:2] for stem in ran) == sorted(JAX_NOTEBOOKS)
    # notebook 08: the .keras file checked, SavedModel and TFLite skipped with the reason
    said = nbformat.read(str(out / "08_export_and_predict.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in said.cells if c.cell_type == "code" for o in c.outputs)
    assert "SavedModel skipped: TensorFlow is not installed" in text and "TFLite skipped:" in text
    agreed = next(line for line in text.splitlines() if line.startswith("agree with Keras:"))
    assert "keras_reloaded" in agreed
    if (ROOT / ".venv" / "bin" / "python").is_file():  # the TensorFlow venv reads the JAX-written .keras file
        assert "other_backend" in agreed and "under tensorflow" in text, text[-2000:]


def test_ten_photos_per_class_reach_97_percent_under_jax(jax_python, shared_photos, shared_weights_dir, tmp_path):
    """tests/test_train.py's promise under JAX: `train` at 224 px with 10 photos per class, then `predict`."""
    from conftest import check_train_then_predict

    metrics = check_train_then_predict(
        lambda *args, **kw: run_jax(jax_python, *args, **kw),
        shared_photos, shared_weights_dir, tmp_path, per_class=10, size=None, least=0.97,
    )  # fmt: skip
    assert metrics["n_train"] == 30 and metrics["n_val"] + metrics["n_test"] == 180
    print(f"JAX: test accuracy {metrics['test_accuracy']:.1%} on {metrics['n_test']} photos")
