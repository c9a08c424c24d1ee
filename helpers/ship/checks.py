"""Checking what was exported: every format reloaded, its predictions compared with the Keras model's (notebook 08).

:func:`check_exports` reloads the ``.keras`` file (safe mode), the SavedModel, the TFLite file and the ONNX
file and says how closely each agrees with the model (:func:`agreement`); with ``other_backend=True`` the
``.keras`` file is also reloaded under another Keras backend, in another Python (:func:`check_other_backend`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

from helpers import quiet_native_stderr, settings
from helpers.ship.export import Exported, load_model, release


class SavedModelPredictor:
    """A reloaded SavedModel, called like a Keras model: ``predict(images) -> probabilities``."""

    def __init__(self, folder: str | os.PathLike):
        import tensorflow as tf  # noqa: PLC0415 - optional backend: a SavedModel needs TensorFlow

        self._tf = tf
        self.artifact = tf.saved_model.load(str(folder))

    def predict(self, images: np.ndarray) -> np.ndarray:
        x = self._tf.convert_to_tensor(np.asarray(images, np.float32))
        try:  # a functional model exports ``serve(inputs)`` with its inputs as a list
            out = self.artifact.serve([x])
        except (TypeError, ValueError):
            out = self.artifact.serve(x)
        return np.asarray(out)


class TFLitePredictor:
    """A reloaded TFLite model run by the TFLite interpreter, one image at a time."""

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf  # noqa: PLC0415 - optional backend: TFLite needs TensorFlow

        with warnings.catch_warnings():  # "use ai_edge_litert": not installed here, tf.lite still works
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = tf.lite.Interpreter(model_path=str(path))
        with quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        rows = []
        for image in np.asarray(images, np.float32):
            self.interpreter.set_tensor(self._in["index"], image[None].astype(self._in["dtype"]))
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self._out["index"])[0].copy())
        return np.stack(rows)


class ONNXPredictor:
    """A reloaded ONNX model run by ONNX Runtime (``onnxruntime``), on the CPU."""

    def __init__(self, path: str | os.PathLike):
        import onnxruntime  # noqa: PLC0415 - optional: ONNX Runtime checks the ONNX file where it is installed

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: np.asarray(images, np.float32)})[0])


def onnxruntime_missing() -> str | None:
    """Why an ONNX file cannot be checked here (None when ``onnxruntime`` is installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed, so the ONNX file was written but not checked: pip install onnxruntime"
    return None


# --- the same .keras file under another Keras backend --------------------------------

#: The project's virtual environments and the Keras backend each one is for (README).
BACKEND_VENVS = {"tensorflow": ".venv", "jax": ".venv-jax", "torch": ".venv-torch"}
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

_PREDICT_IN_CHILD = """
import sys
import numpy as np
import keras
print("keras", keras.__version__, flush=True)
from helpers.ship import export
model = export.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0)))
print(keras.backend.backend())
"""


def find_other_backend() -> tuple[str, str] | str:
    """Another Keras backend to reload a ``.keras`` file with: ``(python, backend)``, or why there is none.

    First this interpreter, if it has another backend's package installed; then the
    project's other virtual environments (``BACKEND_VENVS``), where they exist.
    """
    current = keras.backend.backend()
    others = [b for b in BACKEND_VENVS if b != current]
    for name in others:
        if importlib.util.find_spec(BACKEND_PACKAGES[name]) is not None:
            return sys.executable, name
    for name in others:
        python = settings.PROJECT_ROOT / BACKEND_VENVS[name] / "bin" / "python"
        if python.is_file():
            return str(python), name
    wanted = ", ".join(f"{BACKEND_VENVS[b]}/ ({b})" for b in others)
    return (
        f"no other Keras backend installed: this Python has only {current}, and the project has none of {wanted} "
        "(README: requirements.txt, requirements-jax.txt, requirements-torch.txt)"
    )


def _versions_apart(keras_file: str | os.PathLike, loader: str | None) -> str:
    """When an older Keras (``loader``) reads a file a newer one wrote: a sentence saying so ('' otherwise)."""
    try:
        with zipfile.ZipFile(keras_file) as archive:
            writer = json.loads(archive.read("metadata.json")).get("keras_version")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return ""
    if not writer or not loader or release(loader) >= release(writer):
        return ""
    return (
        f" (written by Keras {writer}, read by Keras {loader}: a .keras file needs the Keras that wrote it or a "
        "newer one, so install the same Keras in both environments)"
    )


def predict_in_other_backend(
    keras_file: str | os.PathLike, images: np.ndarray, python: str, backend: str, timeout: float = 600
) -> np.ndarray:
    """Load ``keras_file`` (safe mode) with ``python`` under ``KERAS_BACKEND=backend`` and predict ``images``."""
    with tempfile.TemporaryDirectory(prefix="other-backend-") as tmp:
        x_file, y_file = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(x_file, np.asarray(images, np.float32))
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(settings.PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        run = subprocess.run(
            [python, "-c", _PREDICT_IN_CHILD, str(Path(keras_file).resolve()), str(x_file), str(y_file)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        said = run.stdout.split()
        if run.returncode != 0 or not y_file.is_file():
            last = (run.stderr.strip().splitlines() or ["no error message"])[-1]
            versions = _versions_apart(keras_file, said[1] if said[:1] == ["keras"] and len(said) > 1 else None)
            raise RuntimeError(f"{python} (KERAS_BACKEND={backend}) could not load {keras_file}{versions}: {last}")
        if not said or said[-1] != backend:
            raise RuntimeError(f"{python} ran Keras on {said[-1] if said else '?'!r}, not {backend!r}")
        return np.load(y_file)


def check_other_backend(keras_file: str | os.PathLike, images: np.ndarray, reference: np.ndarray) -> dict:
    """Reload ``keras_file`` under another backend and compare with ``reference`` probabilities.

    ``{"backend", "python", "max_abs_diff", "top1_agreement"}``, or ``{"skipped": reason}``.
    """
    found = find_other_backend()
    if isinstance(found, str):
        return {"skipped": found}
    python, backend = found
    numbers = agreement(reference, predict_in_other_backend(keras_file, images, python, backend))
    return {"backend": backend, "python": python, **numbers}


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How closely two sets of probabilities agree: max |difference| and top-1 agreement."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {other.shape}")
    return {
        "max_abs_diff": float(np.max(np.abs(reference - other))) if reference.size else 0.0,
        "top1_agreement": float(np.mean(reference.argmax(-1) == other.argmax(-1))) if len(reference) else 1.0,
    }


def check_exports(
    exported: Exported, images: np.ndarray, model: keras.Model | None = None, other_backend: bool = False
) -> dict[str, dict]:
    """Reload every exported format and compare its predictions with the Keras model's.

    The reference is ``model`` if given, else the ``.keras`` file reloaded in safe mode.
    Returns ``{"keras_reloaded"|"saved_model"|"tflite"|"onnx": {"max_abs_diff", "top1_agreement"}}``
    (``{"skipped": reason}`` for a format that was not exported or cannot be read here); with
    ``other_backend=True`` also ``"other_backend"`` (:func:`check_other_backend`).
    """
    x = np.asarray(images, np.float32)
    reloaded = load_model(exported.keras_file)
    reference = model if model is not None else reloaded
    ref = np.asarray(reference.predict(x, verbose=0))
    checks = {"keras_reloaded": agreement(ref, np.asarray(reloaded.predict(x, verbose=0)))}
    for name, predictor, where, cannot_read in (
        ("saved_model", SavedModelPredictor, exported.saved_model, None),
        ("tflite", TFLitePredictor, exported.tflite, None),
        ("onnx", ONNXPredictor, exported.onnx, onnxruntime_missing()),
    ):
        if where is None:
            checks[name] = {"skipped": exported.skipped.get(name, "not exported")}
        elif cannot_read:
            checks[name] = {"skipped": cannot_read}
        else:
            checks[name] = agreement(ref, predictor(where).predict(x))
    if other_backend:
        checks["other_backend"] = check_other_backend(exported.keras_file, x, ref)
    return checks
