"""Ship a model: save ``.keras``, export a SavedModel and a TFLite file with a labels file,
reload each one and check that it predicts what the Keras model predicts (notebook 08).

Loading a ``.keras`` file always uses Keras' *safe mode*: a ``.keras`` file can carry a
``Lambda`` layer whose Python code is stored as bytecode, and loading it would run that
code. Safe mode refuses such layers, so opening a model someone sent you cannot run
their code. Our models need no ``Lambda``: the preprocessing is an ordinary layer.

SavedModel and TFLite are TensorFlow formats, so this module (and notebook 08, which writes
``model.export(path)`` and ``tf.lite.TFLiteConverter.from_saved_model(path)`` in its cells)
talks to ``tensorflow`` directly. The checks (:func:`check_exports`: every format reloaded and
compared with the Keras model) are here.

Without TensorFlow installed (``requirements-jax.txt``, ``requirements-torch.txt``), the
``.keras`` file and the labels are written; :func:`export_all` records why SavedModel and TFLite
were skipped (``Exported.skipped``), and :func:`check_exports` reports them as skipped.

ONNX (:func:`export_onnx`, Keras' ``model.export(path, format="onnx")``) is written where Keras can
do it here: under PyTorch with ``onnx`` and ``onnxscript`` installed (``requirements-torch.txt``),
under TensorFlow with ``tf2onnx``, under JAX with ``jax2onnx``; ONNX Runtime checks it. Where any of
that is missing, :func:`onnx_missing` says why and the format is skipped, as above.

``check_exports(..., other_backend=True)`` also reloads the ``.keras`` file under *another* Keras
backend, in a subprocess of another virtual environment (:func:`other_backend_python`), and
compares: a ``.keras`` file written under PyTorch must predict the same under TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import (
    backbones,  # noqa: F401  (registers the custom preprocessing layer for loading)
    files,
)
from .settings import PROJECT_ROOT

LABELS_FILE = "labels.txt"


def tensorflow_missing() -> str | None:
    """Why SavedModel/TFLite cannot be written here (None when TensorFlow is installed)."""
    if importlib.util.find_spec("tensorflow") is not None:
        return None
    return (
        f"TensorFlow is not installed (Keras backend {keras.backend.backend()!r}): SavedModel and TFLite "
        "are TensorFlow formats; install tensorflow-cpu (requirements.txt) to export them"
    )


def _need_tensorflow(what: str) -> None:
    reason = tensorflow_missing()
    if reason:
        raise RuntimeError(f"{what} skipped: {reason}")


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model in safe mode (no stored Python code is ever executed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} does not exist; train one with "
            f"`python -m helpers train --out DIR` (it writes DIR/model.keras)"
        )
    if path.suffix != ".keras":
        raise ValueError(
            f"{path} is not a .keras file; pass the model.keras written by "
            f"`python -m helpers train` or helpers.export.save_keras"
        )
    return keras.models.load_model(path, safe_mode=True, compile=False)


def write_labels(class_names: list[str], target: str | os.PathLike) -> Path:
    """Write the class names, one per line in output order (the TFLite convention)."""
    with files.atomic_path(target) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in class_names))
    return Path(target)


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a labels file written by :func:`write_labels`."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def class_names_for(model_path: str | os.PathLike) -> list[str] | None:
    """The class names stored beside a model: ``labels.txt`` or ``metrics.json`` (from ``train``)."""
    folder = Path(model_path).parent
    if (folder / LABELS_FILE).is_file():
        return read_labels(folder / LABELS_FILE)
    metrics = folder / "metrics.json"
    if metrics.is_file():
        names = json.loads(metrics.read_text()).get("class_names")
        if names:
            return list(names)
    return None


def save_keras(model: keras.Model, target: str | os.PathLike, class_names: list[str] | None = None) -> Path:
    """Save ``model`` as a ``.keras`` file (atomically), with ``labels.txt`` beside it."""
    path = files.save_model(model, target)
    if class_names is not None:
        write_labels(class_names, Path(target).parent / LABELS_FILE)
    return path


def export_saved_model(model: keras.Model, target: str | os.PathLike) -> Path:
    """Export ``model`` as a TensorFlow SavedModel folder (serving endpoint ``serve``).

    The folder is written beside ``target`` under a temporary name and renamed into
    place, so a crash never leaves half an export; an old export is replaced whole.
    """
    _need_tensorflow("SavedModel export")
    target = Path(target)
    with files.staging_dir(target, "export") as tmp:
        shutil.rmtree(tmp)  # model.export wants to create the folder itself
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def export_tflite(saved_model_dir: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Convert a SavedModel to a float32 TFLite file (no quantisation), atomically."""
    _need_tensorflow("TFLite export")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    flatbuffer = converter.convert()
    with files.atomic_path(target) as tmp:
        tmp.write_bytes(flatbuffer)
    return Path(target)


#: What Keras' ONNX export needs under each backend (``keras.src.export.onnx``).
ONNX_EXPORTERS = {"torch": ("onnx", "onnxscript"), "tensorflow": ("tf2onnx",), "jax": ("jax2onnx",)}


def onnx_missing() -> str | None:
    """Why an ONNX file cannot be written here (None when Keras can export one on this backend)."""
    name = keras.backend.backend()
    needed = ONNX_EXPORTERS.get(name)
    if needed is None:
        return f"Keras exports ONNX under TensorFlow, JAX or PyTorch, not {name!r}"
    absent = [module for module in needed if importlib.util.find_spec(module) is None]
    if absent:
        hint = " (requirements-torch.txt installs them)" if name == "torch" else ""
        return f"Keras' ONNX export under {name!r} needs {' and '.join(absent)}, not installed here{hint}"
    return None


def onnxruntime_missing() -> str | None:
    """Why an ONNX file cannot be checked here (None when ONNX Runtime is installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "ONNX Runtime is not installed (pip install onnxruntime) to run the ONNX file"
    return None


def export_onnx(model: keras.Model, target: str | os.PathLike) -> Path:
    """Export ``model`` as an ONNX file (``model.export(path, format="onnx")``), atomically.

    The input keeps a free batch dimension (raw 0–255 pixels, like the Keras model); under
    PyTorch Keras traces the model with TorchScript for that. A model that was never called
    is called once on a blank image first (Keras exports only called models).
    """
    reason = onnx_missing()
    if reason:
        raise RuntimeError(f"ONNX export skipped: {reason}")
    if not getattr(model, "_called", True):
        model(np.zeros((1, *model.input_shape[1:]), "float32"), training=False)
    with files.atomic_path(target) as tmp, warnings.catch_warnings():
        # the tracer's notes on Python-side shape checks ("might cause the trace to be incorrect"):
        # they concern input shapes, and the exported graph is checked against Keras afterwards
        warnings.simplefilter("ignore")
        model.export(str(tmp), format="onnx", verbose=False)
    return Path(target)


class ONNXPredictor:
    """An ONNX file run by ONNX Runtime on the CPU: ``predict(images) -> probabilities``."""

    def __init__(self, path: str | os.PathLike):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: np.asarray(images, np.float32)})[0])


@dataclass
class Exported:
    """Where :func:`export_all` put each format."""

    keras_file: Path
    saved_model: Path | None
    tflite: Path | None
    labels: Path
    skipped: dict[str, str] = field(default_factory=dict)  # format -> why it was not written
    onnx: Path | None = None

    def sizes(self) -> dict[str, int]:
        """Bytes on disk of each format written."""

        def size(p: Path) -> int:
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size

        found = {
            "keras": self.keras_file,
            "saved_model": self.saved_model,
            "tflite": self.tflite,
            "onnx": self.onnx,
            "labels": self.labels,
        }
        return {name: size(p) for name, p in found.items() if p is not None}


def export_all(model: keras.Model, class_names: list[str], out_dir: str | os.PathLike) -> Exported:
    """``out_dir/model.keras``, ``out_dir/saved_model/``, ``out_dir/model.tflite``, ``out_dir/labels.txt``,
    and ``out_dir/model.onnx`` where :func:`onnx_missing` allows (formats that cannot be written
    here are recorded in ``Exported.skipped`` with the reason)."""
    out = Path(out_dir)
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ValueError(f"the model has {n_out} outputs but {len(class_names)} class names were given")
    keras_file = save_keras(model, out / "model.keras", class_names)
    skipped: dict[str, str] = {}
    saved = tflite = onnx = None
    reason = tensorflow_missing()
    if reason:
        skipped.update(saved_model=reason, tflite=reason)
    else:
        saved = export_saved_model(model, out / "saved_model")
        tflite = export_tflite(saved, out / "model.tflite")
    reason = onnx_missing()
    if reason:
        skipped["onnx"] = reason
    else:
        onnx = export_onnx(model, out / "model.onnx")
    return Exported(keras_file, saved, tflite, out / LABELS_FILE, skipped, onnx)


class SavedModelPredictor:
    """A reloaded SavedModel, called like a Keras model: ``predict(images) -> probabilities``."""

    def __init__(self, folder: str | os.PathLike):
        import tensorflow as tf

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
        import warnings

        import tensorflow as tf

        from . import quiet_native_stderr

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
    (``{"skipped": reason}`` for a format that was not exported, or that cannot be run here).
    With ``other_backend``, also ``"keras_other_backend"``: the ``.keras`` file reloaded under
    another Keras backend (:func:`predict_in_other_backend`; its entry names the backend).
    """
    x = np.asarray(images, np.float32)
    reloaded = load_model(exported.keras_file)
    reference = model if model is not None else reloaded
    ref = np.asarray(reference.predict(x, verbose=0))
    checks = {"keras_reloaded": agreement(ref, np.asarray(reloaded.predict(x, verbose=0)))}
    for name, predictor, where in (
        ("saved_model", SavedModelPredictor, exported.saved_model),
        ("tflite", TFLitePredictor, exported.tflite),
        ("onnx", ONNXPredictor, exported.onnx),
    ):
        if where is None:
            checks[name] = {"skipped": exported.skipped.get(name, "not exported")}
        elif name == "onnx" and onnxruntime_missing():
            checks[name] = {"skipped": onnxruntime_missing()}
        else:
            checks[name] = agreement(ref, predictor(where).predict(x))
    if other_backend:
        try:
            backend, probabilities = predict_in_other_backend(exported.keras_file, x)
        except OtherBackendUnavailable as exc:
            checks["keras_other_backend"] = {"skipped": str(exc)}
        else:
            checks["keras_other_backend"] = {"backend": backend, **agreement(ref, probabilities)}
    return checks


# --- the same .keras file under another Keras backend --------------------------------

OTHER_PYTHON_ENV = "WORKBOOK_OTHER_PYTHON"
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class OtherBackendUnavailable(RuntimeError):
    """No other virtual environment with another Keras backend was found (the message says where we looked)."""


def other_backend_python() -> Path | None:
    """A Python of another virtual environment of this project, to reload a ``.keras`` file in.

    ``$WORKBOOK_OTHER_PYTHON`` if set, else the first of ``.venv`` (TensorFlow), ``.venv-jax``
    and ``.venv-torch`` beside the notebooks that is not the running interpreter's.
    """
    if os.environ.get(OTHER_PYTHON_ENV):
        return Path(os.environ[OTHER_PYTHON_ENV])
    running = Path(sys.prefix).resolve()
    for venv in (".venv", ".venv-jax", ".venv-torch"):
        python = PROJECT_ROOT / venv / "bin" / "python"
        if python.is_file() and (PROJECT_ROOT / venv).resolve() != running:
            return python
    return None


# Runs in the other environment: picks a Keras backend other than ours that is installed
# there, loads the file in safe mode and writes the probabilities.
_OTHER_BACKEND_SCRIPT = """
import importlib.util, os, sys
keras_file, images, out, current = sys.argv[1:5]
modules = {modules!r}
chosen = [name for name, module in modules.items() if name != current and importlib.util.find_spec(module)]
if not chosen:
    print("installed Keras backends: " + ", ".join(n for n, m in modules.items() if importlib.util.find_spec(m)))
    sys.exit(3)
os.environ["KERAS_BACKEND"] = chosen[0]
import numpy as np
from helpers import export
model = export.load_model(keras_file)
np.save(out, np.asarray(model.predict(np.load(images), verbose=0), np.float32))
import keras
print(keras.backend.backend())
"""


def predict_in_other_backend(
    keras_file: str | os.PathLike, images: np.ndarray, python: str | os.PathLike | None = None, timeout: float = 900
) -> tuple[str, np.ndarray]:
    """``(backend, probabilities)``: the ``.keras`` file loaded (safe mode) and run under another backend.

    Runs ``python`` (default :func:`other_backend_python`) in a subprocess, which picks an
    installed Keras backend other than this one (TensorFlow first, then JAX, then PyTorch).
    Raises :class:`OtherBackendUnavailable`, saying why, when there is no such Python or backend.
    """
    python = Path(python) if python else other_backend_python()
    current = keras.backend.backend()
    if python is None or not python.is_file():
        raise OtherBackendUnavailable(
            f"no other virtual environment to load the .keras file in ({python or 'none'} found; looked for "
            f"${OTHER_PYTHON_ENV}, then .venv, .venv-jax, .venv-torch in {PROJECT_ROOT})"
        )
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", np.asarray(images, np.float32))
        script = _OTHER_BACKEND_SCRIPT.format(modules=BACKEND_MODULES)
        args = [str(Path(keras_file).resolve()), str(Path(tmp) / "images.npy"), str(Path(tmp) / "out.npy"), current]
        result = subprocess.run(
            [str(python), "-c", script, *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if result.returncode == 3:
            raise OtherBackendUnavailable(
                f"{python} has no Keras backend other than {current!r} ({result.stdout.strip()})"
            )
        if result.returncode != 0:
            raise RuntimeError(f"reloading {keras_file} with {python} failed:\n{result.stderr[-3000:]}")
        return result.stdout.strip().splitlines()[-1], np.load(Path(tmp) / "out.npy")
