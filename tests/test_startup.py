"""Starting the command line and the kernels: Ctrl-C while Keras imports, and choosing the backend.

Issue 17 (11, 12). Real subprocesses: ``python -m helpers`` interrupted with SIGINT during its
first second (while Keras and TensorFlow import), and the JAX venv (``.venv-jax``, no TensorFlow)
started without ``KERAS_BACKEND``: the command line, ``helpers.start()`` (what a notebook's
first cell does) and the notebook runner's kernels. The JAX tests skip, saying how to make the venv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import backend_python, sigint_as_in_a_terminal

import helpers

ROOT = Path(__file__).resolve().parent.parent
BACKEND_LINE = "KERAS_BACKEND is not set and TensorFlow is not installed: using jax"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_while_keras_imports_is_one_line_and_exit_130(tmp_path, delay):
    """``cache --list`` starts Keras before anything else (the commands of ``cli_model`` import it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "cache", "--list", "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=sigint_as_in_a_terminal,
    )
    time.sleep(delay)
    assert proc.poll() is None, "the command ended before Ctrl-C"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and len(lines(stderr)) == 1, stderr[-3000:]
    assert "interrupted" in stderr
    assert stdout == "" and not (tmp_path / "cache").exists()  # it never got to the work


@pytest.mark.parametrize(
    "args, code, said",
    [
        (["--help"], 0, "usage: python -m helpers"),
        (["train", "--image-size", "abc", "--out", "RUN"], 2, "argument --image-size: invalid int value: 'abc'"),
        (["predict"], 2, "the following arguments are required: --model, images"),
        (["no-such-command"], 2, "invalid choice: 'no-such-command'"),
        # train's refusals come before it starts Keras, and the photo checks never need it
        (
            ["train", "--data", "PHOTOS", "--backbone", "mobilenet_v2", "--image-size", "16", "--out", "RUN"],
            2,
            "error: --image-size 16: mobilenet_v2 takes photos of at least 32 px; pass 32 or more",
        ),
        (["train", "--data", "RUN", "--out", "RUN"], 2, "error: photo folder"),
        (["train", "--data", "PHOTOS", "--seed", "-1", "--out", "RUN"], 2, "error: --seed must be at least 0, got -1"),
        (["train", "--data", "PHOTOS", "--fine-tune-epochs", "-1", "--out", "RUN"], 2, "--fine-tune-epochs must be"),
        (["check-data", "PHOTOS"], 0, "valid photos: 36"),
        (["sync-lesson", "--check"], 0, "matches the notebooks' #@save cells"),  # its --check is not a refusal
        # so do the refusals of the commands that need Keras (helpers.tools.cli_checks)
        (["evaluate", "--model", "RUN", "--data", "PHOTOS"], 2, "run does not exist; train one with"),
        (["predict", "--model", "PHOTOS", "PHOTOS"], 2, "pass a model.keras file"),
        (["predict", "--model", "RUN", "PHOTOS"], 2, "run does not exist; train one with"),
        (["predict", "--model", str(ROOT / "README.md"), "PHOTOS"], 2, "README.md is not a .keras file"),
        (["predict", "--top", "0", "--model", "RUN", "PHOTOS"], 2, "error: --top must be at least 1, got 0"),
        (["bench", "--data", "PHOTOS", "--backbone", "inception_v3", "--image-size", "70"], 2, "at least 75 px"),
        (["gpu-check", "--allow-cpu", "--image-size", "50"], 2, "--image-size 50: inception_v3 takes photos"),
        (["gpu-check", "--allow-cpu", "--batch-size", "0"], 2, "error: --batch-size must be at least 1, got 0"),
        (["bench", "--data", "PHOTOS", "--epochs", "a,b"], 2, "error: --epochs takes whole numbers of at least 1"),
    ],
)
def test_help_a_mistyped_argument_and_a_refusal_are_answered_before_keras_imports(
    tiny_photos, tmp_path, args, code, said
):
    """No Keras, TensorFlow, JAX or PyTorch is imported (``-X importtime`` lists imports): argparse answers
    first, ``train`` checks its settings and photos before it starts Keras, ``check-data`` never does, and
    ``evaluate``, ``predict``, ``bench`` and ``gpu-check`` refuse before it starts."""
    args = [str(tmp_path / "run") if a == "RUN" else str(tiny_photos) if a == "PHOTOS" else a for a in args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "helpers", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == code, result.stderr[-3000:]
    assert said in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    listing = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in listing}
    assert {"helpers.tools.cli", "numpy"} <= imported, "the import listing is complete (it names numpy)"
    heavy = {name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch")}
    assert not heavy, sorted(heavy)[:10]
    assert not (tmp_path / "run").exists()


# --- choosing the backend: the decision (which modules are installed is given) --------------


def choose(installed: set[str], environ: dict | None = None) -> tuple[str, dict, list[str]]:
    environ = {"KERAS_HOME": "/nonexistent-keras-home", **(environ or {})}
    said: list[str] = []
    backend = helpers.choose_backend(installed=installed.__contains__, environ=environ, say=said.append)
    return backend, environ, said


def test_tensorflow_stays_the_default_and_nothing_is_said():
    backend, environ, said = choose({"tensorflow", "jax", "torch"})
    assert backend == "tensorflow" and "KERAS_BACKEND" not in environ and said == []


@pytest.mark.parametrize("only", ["jax", "torch"])
def test_without_tensorflow_the_one_other_backend_is_used_and_said(only):
    backend, environ, said = choose({only})
    assert backend == only and environ["KERAS_BACKEND"] == only
    assert said == [f"KERAS_BACKEND is not set and TensorFlow is not installed: using {only}, "
                    "the one Keras backend installed (set KERAS_BACKEND to choose)"]  # fmt: skip


def test_an_ambiguous_or_missing_backend_is_one_line_saying_what_to_do():
    with pytest.raises(helpers.BackendUnavailable, match="set KERAS_BACKEND=jax or KERAS_BACKEND=torch"):
        choose({"jax", "torch"})
    with pytest.raises(helpers.BackendUnavailable, match="no Keras backend is installed.*requirements-jax.txt"):
        choose(set())
    with pytest.raises(helpers.BackendUnavailable, match="KERAS_BACKEND is torch, but torch is not installed"):
        choose({"jax"}, {"KERAS_BACKEND": "torch"})


def test_keras_json_naming_a_backend_is_respected_but_its_own_tensorflow_default_is_not(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert choose({"jax", "torch"}, {"KERAS_HOME": str(tmp_path)})[0] == "torch"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))  # what Keras writes by itself
    assert choose({"jax"}, {"KERAS_HOME": str(tmp_path)})[:2] == (
        "jax",
        {"KERAS_HOME": str(tmp_path), "KERAS_BACKEND": "jax"},
    )


# --- the JAX venv, no TensorFlow, no KERAS_BACKEND ------------------------------------------


@pytest.fixture(scope="module")
def jax_python() -> Path:
    return backend_python(".venv-jax", "requirements-jax.txt")


def run_without_backend(python: Path, *args: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    """``python *args`` with no KERAS_BACKEND, and Keras' own keras.json saying tensorflow (as Keras writes it)."""
    home = tmp_path / "keras-home"
    home.mkdir(exist_ok=True)
    (home / "keras.json").write_text(json.dumps({"backend": "tensorflow", "floatx": "float32"}))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return subprocess.run([str(python), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_the_jax_venv_without_keras_backend_runs_the_cli_on_jax_and_says_so(jax_python, tiny_photos, tmp_path):
    result = run_without_backend(jax_python, "-m", "helpers", "check-data", str(tiny_photos), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert lines(result.stderr) == [BACKEND_LINE + ", the one Keras backend installed (set KERAS_BACKEND to choose)"]
    assert "valid photos: 36" in result.stdout
    code = "import helpers; helpers.start(); import keras; print(keras.backend.backend())"  # a notebook's first cell
    result = run_without_backend(jax_python, "-c", code, tmp_path=tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["jax"], result.stderr[-3000:]
    assert BACKEND_LINE in result.stderr and "Traceback" not in result.stderr


def test_the_jax_venv_with_a_backend_it_lacks_is_one_line(jax_python, tmp_path):
    result = run_without_backend(
        jax_python, "-m", "helpers", "cache", "--list", tmp_path=tmp_path, KERAS_BACKEND="torch"
    )
    assert result.returncode == 1
    assert lines(result.stderr) == [
        f"error: KERAS_BACKEND is torch, but torch is not installed in {jax_python.parent.parent}: "
        "pip install -r requirements-torch.txt, or set KERAS_BACKEND=jax"
    ]


def test_the_notebook_runner_in_the_jax_venv_starts_its_kernels_on_jax(jax_python, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("VALUE = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(
                "import helpers\nhelpers.start()\nimport keras\nprint('backend', keras.backend.backend())"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(src / "00_backend.ipynb"))
    out = tmp_path / "out"
    result = run_without_backend(
        jax_python, "-m", "helpers", "notebooks", "--notebooks-dir", str(src), "--out", str(out), tmp_path=tmp_path
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert BACKEND_LINE in result.stderr
    executed = nbformat.read(str(out / "00_backend.ipynb"), as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert printed == "backend jax\n"  # the kernel inherited the choice, and said nothing itself
