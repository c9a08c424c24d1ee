"""Ship a model: save ``.keras``, export a SavedModel, a TFLite and an ONNX file with a labels
file, reload each one and check that it predicts what the Keras model predicts (notebook 08).

Loading a ``.keras`` file always uses Keras' *safe mode*: a ``.keras`` file can carry a
``Lambda`` layer whose Python code is stored as bytecode, and loading it would run that
code. Safe mode refuses such layers, so opening a model someone sent you cannot run
their code. Our models need no ``Lambda``: the preprocessing is a standard Keras layer (``preprocessing_for``).

SavedModel and TFLite are TensorFlow formats, so this module (and notebook 08, which writes
``model.export(path)`` and ``tf.lite.TFLiteConverter.from_saved_model(path)`` in its cells)
talks to ``tensorflow`` directly. The checks (:func:`check_exports`: every format reloaded and
compared with the Keras model) are here.

Without TensorFlow installed (``requirements-jax.txt``), SavedModel and TFLite are not
written; :func:`export_all` records why (``Exported.skipped``), and :func:`check_exports`
reports them as skipped. ONNX is written where Keras can export it on this backend
(:func:`onnx_missing`: JAX needs ``jax2onnx``, TensorFlow ``tf2onnx``, PyTorch ``onnx``) and
checked with ``onnxruntime`` where that is installed.

A ``.keras`` file is backend-neutral: :func:`check_other_backend` reloads it under another
Keras backend, in a subprocess with one of the project's other virtual environments
(``.venv`` is TensorFlow, ``.venv-jax`` JAX, ``.venv-torch`` PyTorch), and compares its
predictions; it says why it skipped where no other backend is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from helpers import files

LABELS_FILE = "labels.txt"


def tensorflow_missing() -> str | None:
    """Why SavedModel/TFLite cannot be written here (None when TensorFlow is installed)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        return None
    return (
        f"TensorFlow is not installed (Keras backend {keras.backend.backend()!r}): SavedModel and TFLite "
        "are TensorFlow formats; install tensorflow-cpu (requirements.txt) to export them"
    )


#: The package Keras' ``model.export(path, format="onnx")`` converts through, per backend.
ONNX_CONVERTERS = {"jax": "jax2onnx", "tensorflow": "tf2onnx", "torch": "onnx"}


def onnx_missing(model: keras.Model | None = None) -> str | None:
    """Why ``model.export(path, format="onnx")`` cannot run here (None when it can).

    Keras converts a JAX model with ``jax2onnx`` (Keras 3.12 and later; older Keras went
    through ``jax2tf`` and ``tf2onnx``, i.e. TensorFlow), a TensorFlow model with ``tf2onnx``,
    and a PyTorch model with ``torch.onnx`` (which needs ``onnx``). The model must compute in
    float32 (no mixed precision).
    """
    import importlib.util

    backend = keras.backend.backend()
    converter = ONNX_CONVERTERS.get(backend)
    if converter is None:
        return f"Keras cannot export ONNX from the {backend!r} backend"
    if backend == "jax":
        try:
            from keras.src.export import onnx as keras_onnx

            direct = hasattr(keras_onnx, "_export_onnx_jax")
        except ImportError:
            direct = False
        if not direct:
            return (
                f"Keras {keras.__version__} exports ONNX under JAX through jax2tf and tf2onnx, which need "
                "TensorFlow; Keras 3.12 or later converts with jax2onnx instead"
            )
    if importlib.util.find_spec(converter) is None:
        return f"{converter} is not installed (Keras' ONNX converter for {backend}); pip install {converter}"
    if model is not None and model.dtype_policy.name != "float32":
        return f"the model computes in {model.dtype_policy.name}; Keras exports ONNX from float32 models only"
    return None


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
            f"`python -m helpers train` or helpers.ship.export.save_keras"
        )
    from helpers.model import lesson  # noqa: F401  registers the lesson's layers (TimesPrior: helpers train's ImageNet prior)

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


def export_onnx(model: keras.Model, target: str | os.PathLike) -> Path:
    """Export ``model`` as an ONNX file (``model.export(path, format="onnx")``), atomically.

    Keras traces a model for ONNX only once it has been called on a tensor (``predict`` and
    ``fit`` do not count under JAX), so it is called once on zeros first.
    """
    reason = onnx_missing(model)
    if reason:
        raise RuntimeError(f"ONNX export skipped: {reason}")
    shape = tuple(1 if d is None else int(d) for d in model.input_shape)
    model(np.zeros(shape, "float32"), training=False)
    with files.atomic_path(target) as tmp, warnings.catch_warnings():
        # PyTorch's tracer warns about every Python int it meets in Keras' layers (TracerWarning)
        # and about constant folding: lines a learner cannot act on. The export is checked instead.
        warnings.filterwarnings("ignore", module=r"(torch|keras)\.")
        model.export(str(tmp), format="onnx", verbose=False)
    return Path(target)


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
    """``out_dir/model.keras``, ``saved_model/``, ``model.tflite``, ``model.onnx`` and ``labels.txt``.

    A format that cannot be written here is skipped, with the reason in ``Exported.skipped``.
    """
    out = Path(out_dir)
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ValueError(f"the model has {n_out} outputs but {len(class_names)} class names were given")
    keras_file = save_keras(model, out / "model.keras", class_names)
    exported = Exported(keras_file, None, None, out / LABELS_FILE)
    reason = tensorflow_missing()
    if reason:
        exported.skipped.update(saved_model=reason, tflite=reason)
    else:
        exported.saved_model = export_saved_model(model, out / "saved_model")
        exported.tflite = export_tflite(exported.saved_model, out / "model.tflite")
    reason = onnx_missing(model)
    if reason:
        exported.skipped["onnx"] = reason
    else:
        exported.onnx = export_onnx(model, out / "model.onnx")
    return exported


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

        from helpers import quiet_native_stderr

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
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: np.asarray(images, np.float32)})[0])


def onnxruntime_missing() -> str | None:
    """Why an ONNX file cannot be checked here (None when ``onnxruntime`` is installed)."""
    import importlib.util

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
    import importlib.util
    import sys

    from helpers.settings import PROJECT_ROOT

    current = keras.backend.backend()
    others = [b for b in BACKEND_VENVS if b != current]
    for name in others:
        if importlib.util.find_spec(BACKEND_PACKAGES[name]) is not None:
            return sys.executable, name
    for name in others:
        python = PROJECT_ROOT / BACKEND_VENVS[name] / "bin" / "python"
        if python.is_file():
            return str(python), name
    wanted = ", ".join(f"{BACKEND_VENVS[b]}/ ({b})" for b in others)
    return (
        f"no other Keras backend installed: this Python has only {current}, and the project has none of {wanted} "
        "(README: requirements.txt, requirements-jax.txt, requirements-torch.txt)"
    )


def predict_in_other_backend(
    keras_file: str | os.PathLike, images: np.ndarray, python: str, backend: str, timeout: float = 600
) -> np.ndarray:
    """Load ``keras_file`` (safe mode) with ``python`` under ``KERAS_BACKEND=backend`` and predict ``images``."""
    import subprocess
    import tempfile

    from helpers.settings import PROJECT_ROOT

    with tempfile.TemporaryDirectory(prefix="other-backend-") as tmp:
        x_file, y_file = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(x_file, np.asarray(images, np.float32))
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
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
            raise RuntimeError(f"{python} (KERAS_BACKEND={backend}) could not load {keras_file}: {last}")
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
