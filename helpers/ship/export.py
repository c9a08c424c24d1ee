"""Ship a model: save ``.keras``, export a SavedModel, a TFLite and an ONNX file with a labels
file, reload each one and check that it predicts what the Keras model predicts (notebook 08).

Loading a ``.keras`` file always uses Keras' *safe mode*: a ``.keras`` file can carry a
``Lambda`` layer whose Python code is stored as bytecode, and loading it would run that
code. Safe mode refuses such layers, so opening a model someone sent you cannot run
their code. Our models need no ``Lambda``: the preprocessing is a standard Keras layer (``preprocessing_for``).

SavedModel and TFLite are TensorFlow formats, so this module (and notebook 08, which writes
``model.export(path)`` and ``tf.lite.TFLiteConverter.from_saved_model(path)`` in its cells)
talks to ``tensorflow`` directly. The checks (``check_exports``: every format reloaded and
compared with the Keras model) are in :mod:`helpers.ship.checks`.

Without TensorFlow installed (``requirements-jax.txt``), SavedModel and TFLite are not
written; notebook 08 records why (``Exported.skipped``), and ``checks.check_exports``
reports them as skipped. ONNX is written where Keras can export it on this backend
(:func:`onnx_missing`: JAX needs ``jax2onnx``, TensorFlow ``tf2onnx``, PyTorch ``onnx``) and
checked with ``onnxruntime`` where that is installed.

A ``.keras`` file is backend-neutral: ``checks.check_other_backend`` reloads it under another
Keras backend, in a subprocess with one of the project's other virtual environments
(``.venv`` is TensorFlow, ``.venv-jax`` JAX, ``.venv-torch`` PyTorch), and compares its
predictions; it says why it skipped where no other backend is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from helpers import files
from helpers.model import lesson  # noqa: F401 - registers the lesson's layers (TimesPrior) for load_model

LABELS_FILE = "labels.txt"


def tensorflow_missing() -> str | None:
    """Why SavedModel/TFLite cannot be written here (None when TensorFlow is installed)."""
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
    backend = keras.backend.backend()
    converter = ONNX_CONVERTERS.get(backend)
    if converter is None:
        return f"Keras cannot export ONNX from the {backend!r} backend"
    if backend == "jax" and _keras_version() < (3, 12):  # Keras' own release notes: jax2onnx from 3.12 on
        return (
            f"Keras {keras.__version__} exports ONNX under JAX through jax2tf and tf2onnx, which need "
            "TensorFlow; Keras 3.12 or later converts with jax2onnx instead"
        )
    if importlib.util.find_spec(converter) is None:
        return f"{converter} is not installed (Keras' ONNX converter for {backend}); pip install {converter}"
    if model is not None and model.dtype_policy.name != "float32":
        return f"the model computes in {model.dtype_policy.name}; Keras exports ONNX from float32 models only"
    return None


def release(version: str) -> tuple[int, ...]:
    """``"3.15.1"`` → ``(3, 15, 1)``: the numbers of a version (at most three), to compare."""
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def _keras_version() -> tuple[int, ...]:
    """Keras' version as (major, minor): what it can export is known by release, not by its private modules."""
    return release(keras.__version__)[:2]


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model in safe mode (no stored Python code is ever executed)."""
    return keras.models.load_model(files.check_model_file(path), safe_mode=True, compile=False)


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
    """Where notebook 08 put each format (``skipped``: a format not written here, and why)."""

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
