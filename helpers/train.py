"""Training in two phases: the head with the base frozen, then fine-tuning the top blocks.

Notebook 03 trains the head; notebook 04 fine-tunes. Both use Keras ``fit`` with
callbacks: the best epoch is checkpointed (``best.weights.h5``) and an interrupted run
resumes from ``backup/`` (``keras.callbacks.BackupAndRestore``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import data as data_mod
from . import files, surgery
from .backbones import get_spec

HEAD_LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-5


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so that a CPU run repeats exactly."""
    keras.utils.set_random_seed(seed)


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam + sparse categorical cross-entropy + accuracy: the workbook's one recipe."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model


def callbacks_for(out_dir: str | os.PathLike | None, live_plot: bool = False) -> list[keras.callbacks.Callback]:
    """Checkpoint the best epoch and back up every epoch so an interrupted run can resume."""
    cbs: list[keras.callbacks.Callback] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cbs.append(keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), monitor="val_accuracy",
                                                   save_best_only=True, save_weights_only=True))
        cbs.append(keras.callbacks.BackupAndRestore(str(out / "backup")))
    if live_plot:
        from .curves import LivePlot

        cbs.append(LivePlot())
    return cbs


@dataclass
class PhaseResult:
    """What one phase of training did: its history, time and best validation accuracy."""

    history: dict[str, list[float]]
    seconds: float
    val_accuracy: float
    epochs: int
    trainable_weights: int
    extra: dict = field(default_factory=dict)


def fit(model: keras.Model, x, y, validation_data=None, epochs: int = 5, batch_size: int = 32,
        learning_rate: float = HEAD_LEARNING_RATE, out_dir: str | os.PathLike | None = None,
        live_plot: bool = False, verbose: int = 0) -> PhaseResult:
    """Compile and ``fit`` ``model``; restore the best epoch's weights if checkpointing."""
    compile_model(model, learning_rate)
    cbs = callbacks_for(out_dir, live_plot)
    start = time.perf_counter()
    history = model.fit(x, y, validation_data=validation_data, epochs=epochs, batch_size=batch_size,
                        callbacks=cbs, verbose=verbose, shuffle=True)
    seconds = time.perf_counter() - start
    best = Path(out_dir) / "best.weights.h5" if out_dir is not None else None
    if best is not None and best.exists():
        model.load_weights(best)
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    val_acc = max(hist.get("val_accuracy", [float("nan")]))
    return PhaseResult(hist, seconds, val_acc, len(hist.get("loss", [])),
                       surgery.trainable_report(model).trainable_weights)


def train_head(model: keras.Model, x, y, validation_data=None, epochs: int = 10, **kwargs) -> PhaseResult:
    """Phase 1: freeze the whole base and train only the new head."""
    surgery.freeze(model, fine_tune_from=None)
    kwargs.setdefault("learning_rate", HEAD_LEARNING_RATE)
    return fit(model, x, y, validation_data, epochs=epochs, **kwargs)


def fine_tune(model: keras.Model, fine_tune_from: str, x, y, validation_data=None, epochs: int = 5,
              **kwargs) -> PhaseResult:
    """Phase 2: unfreeze block ``fine_tune_from`` and above; train at a low learning rate."""
    surgery.freeze(model, fine_tune_from=fine_tune_from)
    kwargs.setdefault("learning_rate", FINE_TUNE_LEARNING_RATE)
    return fit(model, x, y, validation_data, epochs=epochs, **kwargs)


def load_arrays(folder: data_mod.ImageFolder, image_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode every split of ``folder`` into (pixels, labels) arrays at ``image_size``."""
    out = {}
    for name in data_mod.SPLIT_NAMES:
        split = getattr(folder, name)
        if split is not None and len(split):
            out[name] = (data_mod.load_images(split.paths, image_size), np.asarray(split.labels, np.int32))
    return out


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, backbone: str = "inception_v3",
                     weights: str | None = "imagenet", per_class: int | None = None,
                     image_size: int | None = None, epochs: int = 10, fine_tune_from: str | None = None,
                     fine_tune_epochs: int = 5, seed: int = 0, batch_size: int = 32,
                     verbose: int = 0) -> dict:
    """The whole recipe behind ``python -m helpers train``: returns and writes the metrics.

    Writes ``out/model.keras`` and ``out/metrics.json`` (atomically).
    """
    set_seed(seed)
    out = Path(out)
    size = image_size or get_spec(backbone).default_size
    folder = data_mod.load_folder(data, per_class=per_class, seed=seed)
    arrays = load_arrays(folder, size)
    (x, y), val = arrays["train"], arrays.get("val")
    model = surgery.build_classifier(folder.class_names, backbone, weights, size)
    head = train_head(model, x, y, val, epochs=epochs, batch_size=batch_size,
                      out_dir=out / "checkpoints" / "head", verbose=verbose)
    phases = {"head": head}
    if fine_tune_from:
        phases["fine_tune"] = fine_tune(model, fine_tune_from, x, y, val, epochs=fine_tune_epochs,
                                        batch_size=batch_size, out_dir=out / "checkpoints" / "fine_tune",
                                        verbose=verbose)
    surgery.freeze(model, fine_tune_from=None)
    val_accuracy = float(model.evaluate(*val, verbose=0, return_dict=True)["accuracy"]) if val else float("nan")
    metrics = {
        "backbone": backbone, "weights": str(weights), "image_size": size, "per_class": per_class,
        "seed": seed, "class_names": folder.class_names, "n_train": len(folder.train),
        "n_val": len(folder.val), "val_accuracy": val_accuracy,
        "train_seconds": sum(p.seconds for p in phases.values()),
        "phases": {name: {"seconds": p.seconds, "epochs": p.epochs, "best_val_accuracy": p.val_accuracy,
                          "trainable_weights": p.trainable_weights, "history": p.history}
                   for name, p in phases.items()},
        "fine_tune_from": fine_tune_from, "keras_version": keras.__version__,
    }
    files.save_model(model, out / "model.keras")
    files.write_json(out / "metrics.json", metrics)
    return metrics
