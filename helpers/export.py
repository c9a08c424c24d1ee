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

Without TensorFlow installed (``requirements-jax.txt``), only the ``.keras`` file and the
labels are written; :func:`export_all` records why SavedModel and TFLite were skipped
(``Exported.skipped``), and :func:`check_exports` reports them as skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import (
    backbones,  # noqa: F401  (registers the custom preprocessing layer for loading)
    files,
)

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


@dataclass
class Exported:
    """Where :func:`export_all` put each format."""

    keras_file: Path
    saved_model: Path | None
    tflite: Path | None
    labels: Path
    skipped: dict[str, str] = field(default_factory=dict)  # format -> why it was not written

    def sizes(self) -> dict[str, int]:
        """Bytes on disk of each format written."""

        def size(p: Path) -> int:
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size

        found = {
            "keras": self.keras_file,
            "saved_model": self.saved_model,
            "tflite": self.tflite,
            "labels": self.labels,
        }
        return {name: size(p) for name, p in found.items() if p is not None}


def export_all(model: keras.Model, class_names: list[str], out_dir: str | os.PathLike) -> Exported:
    """``out_dir/model.keras``, ``out_dir/saved_model/``, ``out_dir/model.tflite``, ``out_dir/labels.txt``."""
    out = Path(out_dir)
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ValueError(f"the model has {n_out} outputs but {len(class_names)} class names were given")
    keras_file = save_keras(model, out / "model.keras", class_names)
    reason = tensorflow_missing()
    if reason:
        return Exported(keras_file, None, None, out / LABELS_FILE, {"saved_model": reason, "tflite": reason})
    saved = export_saved_model(model, out / "saved_model")
    tflite = export_tflite(saved, out / "model.tflite")
    return Exported(keras_file, saved, tflite, out / LABELS_FILE)


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


def check_exports(exported: Exported, images: np.ndarray, model: keras.Model | None = None) -> dict[str, dict]:
    """Reload every exported format and compare its predictions with the Keras model's.

    The reference is ``model`` if given, else the ``.keras`` file reloaded in safe mode.
    Returns ``{"keras_reloaded"|"saved_model"|"tflite": {"max_abs_diff", "top1_agreement"}}``
    (``{"skipped": reason}`` for a format that was not exported).
    """
    x = np.asarray(images, np.float32)
    reloaded = load_model(exported.keras_file)
    reference = model if model is not None else reloaded
    ref = np.asarray(reference.predict(x, verbose=0))
    checks = {"keras_reloaded": agreement(ref, np.asarray(reloaded.predict(x, verbose=0)))}
    for name, predictor, where in (
        ("saved_model", SavedModelPredictor, exported.saved_model),
        ("tflite", TFLitePredictor, exported.tflite),
    ):
        if where is None:
            checks[name] = {"skipped": exported.skipped.get(name, "not exported")}
        else:
            checks[name] = agreement(ref, predictor(where).predict(x))
    return checks
