"""Training in two phases: the head with the base frozen, then fine-tuning the top blocks.

Notebook 03 trains the head; notebook 04 fine-tunes; notebook 05 times both ways of doing it.
Both phases use Keras ``fit`` with callbacks: the best epoch is checkpointed
(``best.weights.h5``) and an interrupted run resumes from ``backup/``
(``keras.callbacks.BackupAndRestore``).

**The fast path (default, ``cache=True``).** While the layers below a cut point are frozen,
their output never changes, so we compute it once (:mod:`helpers.cache`) and ``fit`` only
the part above the cut on those stored activations: for head training the cut is the
pooled features (``head_pool``), for fine-tuning it is the block just below the first
unfrozen block. The top shares its layers with the full model, so the full model is what
gets trained. ``cache=False`` is the plain Keras-guide recipe (the frozen base runs inside
every training step) for comparison; both give the same model for the same data, up to the
float16 storage of the activations.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import cache as cache_mod
from . import data as data_mod
from . import device, files, surgery
from .backbones import get_spec

HEAD_LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-5
HEAD_EPOCHS = 30  # cheap on cached features; chosen so 10 photos/class reach >= 97% for every seed tried
FINE_TUNE_EPOCHS = 5


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so that a CPU run repeats exactly."""
    keras.utils.set_random_seed(seed)


def compile_model(model: keras.Model, learning_rate: float, steps_per_execution: int = 1) -> keras.Model:
    """Adam + sparse categorical cross-entropy + accuracy: the workbook's one recipe.

    XLA is used where :func:`helpers.device.jit_compile` says it helps (on a GPU).
    """
    with device.strategy_scope():
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=["accuracy"], steps_per_execution=steps_per_execution,
                      jit_compile=device.jit_compile())
        model.optimizer.build(model.trainable_variables)  # its slots live on every replica, too
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
    """What one phase of training did: its history, time and best validation accuracy.

    ``seconds`` is the whole cost of the phase; with the cache it includes computing the
    activations (``extra["activation_seconds"]``) as well as the ``fit`` itself.
    """

    history: dict[str, list[float]]
    seconds: float
    val_accuracy: float
    epochs: int
    trainable_weights: int
    extra: dict = field(default_factory=dict)


def _finish(model: keras.Model, trained: keras.Model, history, seconds: float, out_dir, extra=None) -> PhaseResult:
    best = Path(out_dir) / "best.weights.h5" if out_dir is not None else None
    if best is not None and best.exists():
        trained.load_weights(best)
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    val_acc = max(hist.get("val_accuracy", [float("nan")]))
    return PhaseResult(hist, seconds, val_acc, len(hist.get("loss", [])),
                       surgery.trainable_report(model).trainable_weights, extra or {})


def fit(model: keras.Model, x, y, validation_data=None, epochs: int = 5, batch_size: int = 32,
        learning_rate: float = HEAD_LEARNING_RATE, out_dir: str | os.PathLike | None = None,
        live_plot: bool = False, verbose: int = 0, callbacks: list | None = None) -> PhaseResult:
    """Compile and ``fit`` ``model`` on pixels (the plain recipe); restore the best epoch if checkpointing."""
    compile_model(model, learning_rate)
    cbs = callbacks_for(out_dir, live_plot) + list(callbacks or [])
    start = time.perf_counter()
    history = model.fit(x, y, validation_data=validation_data, epochs=epochs, batch_size=batch_size,
                        callbacks=cbs, verbose=verbose, shuffle=True)
    return _finish(model, model, history, time.perf_counter() - start, out_dir, {"cached": False})


def fit_top(model: keras.Model, cut: str, x: np.ndarray, y, validation_data=None, epochs: int = 5,
            batch_size: int = 32, learning_rate: float = HEAD_LEARNING_RATE,
            out_dir: str | os.PathLike | None = None, live_plot: bool = False, verbose: int = 0,
            seed: int = 0, callbacks: list | None = None) -> PhaseResult:
    """Train the part of ``model`` above ``cut`` on stored activations ``x`` (taken at ``cut``).

    Freezing is up to the caller (:func:`helpers.surgery.freeze`): layers of the top that
    are frozen stay frozen. ``model`` shares the top's layers, so it is what gets trained.
    """
    from .pipeline import from_arrays

    top = cache_mod.split_at(model, cut).top
    steps = max(1, math.ceil(len(x) / batch_size))
    train_ds = from_arrays(x, y, batch_size, shuffle=True, seed=seed, repeat=True)
    val_ds = from_arrays(*validation_data, batch_size) if validation_data is not None else None
    compile_model(top, learning_rate, steps_per_execution=steps)
    cbs = callbacks_for(out_dir, live_plot) + list(callbacks or [])
    start = time.perf_counter()
    history = top.fit(train_ds, epochs=epochs, steps_per_epoch=steps, validation_data=val_ds, callbacks=cbs,
                      verbose=verbose, shuffle=False)  # the dataset reshuffles itself every epoch
    return _finish(model, top, history, time.perf_counter() - start, out_dir, {"cached": True, "cut": cut})


def _cached_phase(model: keras.Model, cut: str, x, y, validation_data, epochs: int, batch_size: int,
                  dtype: str, **kwargs) -> PhaseResult:
    """Compute the activations at ``cut`` once (in memory), then :func:`fit_top` on them."""
    bottom = cache_mod.split_at(model, cut).bottom
    start = time.perf_counter()
    feats = cache_mod.activations(bottom, x, batch_size, dtype)
    val = (cache_mod.activations(bottom, validation_data[0], batch_size, dtype), validation_data[1]) \
        if validation_data is not None else None
    activation_seconds = time.perf_counter() - start
    result = fit_top(model, cut, feats, y, val, epochs=epochs, batch_size=batch_size, **kwargs)
    result.extra.update(activation_seconds=activation_seconds, fit_seconds=result.seconds)
    result.seconds += activation_seconds
    return result


def train_head(model: keras.Model, x, y, validation_data=None, epochs: int = HEAD_EPOCHS, cache: bool = True,
               batch_size: int = 32, dtype: str = cache_mod.DEFAULT_DTYPE, **kwargs) -> PhaseResult:
    """Phase 1: freeze the whole base and train only the new head.

    ``cache=True``: one forward pass of the base over ``x`` (and the validation photos),
    then the head trains on the pooled features. ``cache=False``: plain ``fit`` on pixels.
    """
    surgery.freeze(model, fine_tune_from=None)
    kwargs.setdefault("learning_rate", HEAD_LEARNING_RATE)
    if not cache:
        kwargs.pop("seed", None)
        return fit(model, x, y, validation_data, epochs=epochs, batch_size=batch_size, **kwargs)
    return _cached_phase(model, cache_mod.head_cut(model), x, y, validation_data, epochs, batch_size, dtype,
                         **kwargs)


def fine_tune(model: keras.Model, fine_tune_from: str, x, y, validation_data=None, epochs: int = FINE_TUNE_EPOCHS,
              cache: bool = True, batch_size: int = 32, dtype: str = cache_mod.DEFAULT_DTYPE,
              **kwargs) -> PhaseResult:
    """Phase 2: unfreeze block ``fine_tune_from`` and above; train at a low learning rate.

    ``cache=True`` (and no augmentation, which this recipe does not use): the frozen blocks
    run once and the unfrozen blocks + head train on their stored output. Unfreezing the
    very first block leaves nothing frozen to cache, so that case trains on pixels.
    """
    surgery.freeze(model, fine_tune_from=fine_tune_from)
    kwargs.setdefault("learning_rate", FINE_TUNE_LEARNING_RATE)
    cut = cache_mod.cut_below(model, fine_tune_from) if cache else None
    if cut is None:
        kwargs.pop("seed", None)
        return fit(model, x, y, validation_data, epochs=epochs, batch_size=batch_size, **kwargs)
    return _cached_phase(model, cut, x, y, validation_data, epochs, batch_size, dtype, **kwargs)


def accuracy(model: keras.Model, x: np.ndarray, y, batch_size: int = 32) -> float:
    """Share of ``x`` whose most probable class is ``y``, by the whole model (no compile needed)."""
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return float(np.mean(probs.argmax(axis=-1) == np.asarray(y)))


def load_arrays(folder: data_mod.ImageFolder, image_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode every split of ``folder`` into (pixels, labels) arrays at ``image_size``."""
    out = {}
    for name in data_mod.SPLIT_NAMES:
        split = getattr(folder, name)
        if split is not None and len(split):
            out[name] = (data_mod.load_images(split.paths, image_size), np.asarray(split.labels, np.int32))
    return out


def _disk_phase(model, cut, store: cache_mod.BottleneckCache, folder: data_mod.ImageFolder, epochs: int,
                batch_size: int, augment_copies: int, seed: int, weights, **kwargs) -> PhaseResult:
    """Like :func:`_cached_phase`, but the activations come from (and go to) the disk cache."""
    bottom = cache_mod.split_at(model, cut).bottom
    start = time.perf_counter()
    feats = store.activations(bottom, folder.train.paths, augment_copies, seed, batch_size, str(weights))
    hits, computed = store.last.hits, store.last.computed
    y = np.tile(np.asarray(folder.train.labels, np.int32), augment_copies + 1)
    val = None
    if len(folder.val):
        val = (store.activations(bottom, folder.val.paths, 0, seed, batch_size, str(weights)),
               np.asarray(folder.val.labels, np.int32))
        hits, computed = hits + store.last.hits, computed + store.last.computed
    activation_seconds = time.perf_counter() - start
    result = fit_top(model, cut, feats, y, val, epochs=epochs, batch_size=batch_size, seed=seed, **kwargs)
    result.extra.update(activation_seconds=activation_seconds, fit_seconds=result.seconds,
                        cache_folder=str(store.last.folder), augment_copies=augment_copies,
                        cache_hits=hits, cache_computed=computed)
    result.seconds += activation_seconds
    return result


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, backbone: str = "inception_v3",
                     weights: str | None = "imagenet", per_class: int | None = None,
                     image_size: int | None = None, epochs: int = HEAD_EPOCHS, fine_tune_from: str | None = None,
                     fine_tune_epochs: int = FINE_TUNE_EPOCHS, seed: int = 0, batch_size: int = 32,
                     verbose: int = 0, cache: bool = True, cache_dir: str | os.PathLike | None = None,
                     augment_copies: int = 0) -> dict:
    """The whole recipe behind ``python -m helpers train``: returns and writes the metrics.

    ``cache=True`` trains both phases on cached activations — in memory, or on disk under
    ``cache_dir`` (default ``$WORKBOOK_CACHE`` if set) so that the next run with the same
    photos, backbone and weights skips the forward pass. ``augment_copies=K`` (disk cache
    only) adds K fixed random views of every training photo. ``cache=False`` is the plain
    recipe. Writes ``out/model.keras`` and ``out/metrics.json`` (atomically).
    """
    set_seed(seed)
    out = Path(out)
    size = image_size or get_spec(backbone).default_size
    folder = data_mod.load_folder(data, per_class=per_class, seed=seed)
    with device.strategy_scope():
        model = surgery.build_classifier(folder.class_names, backbone, weights, size)
    cache_dir = cache_dir or os.environ.get(cache_mod.CACHE_ENV)
    if augment_copies and not (cache and cache_dir):
        raise ValueError("augment_copies needs the disk cache: pass cache_dir (or set WORKBOOK_CACHE)")
    common = dict(batch_size=batch_size, verbose=verbose)
    phases: dict[str, PhaseResult] = {}
    if cache and cache_dir:
        store = cache_mod.BottleneckCache(cache_dir)
        surgery.freeze(model, fine_tune_from=None)
        phases["head"] = _disk_phase(model, cache_mod.head_cut(model), store, folder, epochs, augment_copies=augment_copies,
                                     seed=seed, weights=weights, learning_rate=HEAD_LEARNING_RATE,
                                     out_dir=out / "checkpoints" / "head", **common)
        if fine_tune_from:
            surgery.freeze(model, fine_tune_from=fine_tune_from)
            cut = cache_mod.cut_below(model, fine_tune_from)
            arrays = None
            if cut is None:
                arrays = load_arrays(folder, size)
                phases["fine_tune"] = fit(model, *arrays["train"], arrays.get("val"), epochs=fine_tune_epochs,
                                          learning_rate=FINE_TUNE_LEARNING_RATE,
                                          out_dir=out / "checkpoints" / "fine_tune", **common)
            else:
                phases["fine_tune"] = _disk_phase(model, cut, store, folder, fine_tune_epochs,
                                                  augment_copies=augment_copies, seed=seed, weights=weights,
                                                  learning_rate=FINE_TUNE_LEARNING_RATE,
                                                  out_dir=out / "checkpoints" / "fine_tune", **common)
        val = (data_mod.load_images(folder.val.paths, size), np.asarray(folder.val.labels, np.int32)) \
            if len(folder.val) else None
    else:
        arrays = load_arrays(folder, size)
        (x, y), val = arrays["train"], arrays.get("val")
        extra = dict(seed=seed) if cache else {}
        phases["head"] = train_head(model, x, y, val, epochs=epochs, cache=cache,
                                    out_dir=out / "checkpoints" / "head", **common, **extra)
        if fine_tune_from:
            phases["fine_tune"] = fine_tune(model, fine_tune_from, x, y, val, epochs=fine_tune_epochs, cache=cache,
                                            out_dir=out / "checkpoints" / "fine_tune", **common, **extra)
    surgery.freeze(model, fine_tune_from=None)
    val_accuracy = accuracy(model, *val, batch_size=batch_size) if val else float("nan")
    metrics = {
        "backbone": backbone, "weights": str(weights), "image_size": size, "per_class": per_class,
        "seed": seed, "class_names": folder.class_names, "n_train": len(folder.train),
        "n_val": len(folder.val), "val_accuracy": val_accuracy,
        "train_seconds": sum(p.seconds for p in phases.values()),
        "cache": bool(cache), "cache_dir": str(cache_dir) if cache and cache_dir else None,
        "phases": {name: {"seconds": p.seconds, "epochs": p.epochs, "best_val_accuracy": p.val_accuracy,
                          "trainable_weights": p.trainable_weights, "history": p.history, **p.extra}
                   for name, p in phases.items()},
        "fine_tune_from": fine_tune_from, "keras_version": keras.__version__,
    }
    files.save_model(model, out / "model.keras")
    files.write_json(out / "metrics.json", metrics)
    return metrics
