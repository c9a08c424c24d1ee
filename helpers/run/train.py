"""Training, the package's way: notebook 03's recipe on cached activations (``helpers train``).

One :class:`Recipe` (learning rate, epochs, batch size, patience, seed, callbacks, where
activations are cached) and one function, :func:`train_phase`, that trains one phase of a
model built by :func:`build_classifier`. The Keras code is the lesson's own
(:mod:`helpers.model.lesson`: ``add_head``, ``compile_model``, ``fit_keep_best``,
``unfreeze_above``); this module adds what is not the lesson:

- **the cut**: while the layers below a cut are frozen their output never changes, so
  each photo goes through them once, into the activation cache (:mod:`helpers.store.cache`,
  on disk), and ``fit`` trains only what is above the cut (:func:`helpers.model.cuts.split_at`):
  the pooled features for the head, the block output below the first unfrozen block for
  fine-tuning. ``Recipe(cache=None)`` is the plain recipe: the frozen part runs in every
  step of ``fit``, photos streamed from disk in batches;
- **splits**: the validation photos choose the epoch (``EarlyStopping`` restores the one
  with the lowest validation loss), the test photos (a ``test/`` folder, else half of
  ``val/``, :func:`helpers.data.photos.splits`) are what the accuracy is reported on;
- **the whole run** (:func:`train_classifier`): head, optional fine-tuning, metrics and
  the ``.keras`` file, written atomically.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageOps

from helpers import files
from helpers.data import folders as data_mod
from helpers.data.photos import splits
from helpers.data.pipeline import photo_dataset
from helpers.model import cuts
from helpers.model.backbones import build_base, preprocess_layer
from helpers.model.lesson import add_head, compile_model, fit_keep_best, start_at_class_means, unfreeze_above
from helpers.run import device, prior
from helpers.run.config import BATCH_SIZE, Recipe, RunConfig  # Recipe, RunConfig: also helpers.run.train's
from helpers.run.restart import restart
from helpers.store.cache import BottleneckCache

MIRROR_UP_TO = 10  # photos per class: up to this many, the head also trains on each photo's mirror image


class NonFiniteModelError(RuntimeError):
    """Training produced weights that are NaN or infinite: such a model is never saved."""


def check_finite(model: keras.Model) -> None:
    """Raise :class:`NonFiniteModelError` (one line) when any of ``model``'s weights is NaN or infinite."""
    bad = [w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if bad:
        raise NonFiniteModelError(
            f"training gave non-finite weights (NaN or inf) in {bad[0]}"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            + ": nothing was saved as the model; check the backbone's --weights and the photos, then train again"
        )


def _score(value: float) -> float | None:
    """An accuracy for metrics.json: None where there were no photos to measure it on (not NaN)."""
    return None if np.isnan(value) else value


@dataclass
class PhaseResult:
    """What one phase did: its history, the epoch kept, and where the time went."""

    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    trainable_weights: int
    cut: str | None
    extra: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))


def build_classifier(
    class_names: list[str],
    backbone: str = "inception_v3",
    weights="imagenet",
    image_size: int | None = None,
    dropout: float = 0.2,
    normalize: bool = True,
) -> keras.Model:
    """Notebook 02's model by name: the pretrained base, frozen, with ``add_head`` on top.

    ``normalize=True`` (the default) gives the head notebook 05's normalised features, so
    that training on cached features can start it at the class means.
    """
    if len(class_names) < 2:  # a one-way softmax is always 1.0: nothing to learn
        raise ValueError(f"a classifier needs at least two classes, got {list(class_names)}")
    base = build_base(backbone, weights, image_size)
    base.trainable = False
    return add_head(base, class_names, preprocess_layer(backbone), dropout, normalize)


def freeze_for(model: keras.Model, fine_tune_from: str | int | None) -> str | None:
    """Freeze ``model`` for a phase: head only (None), or fine-tune from a block (notebook 04).

    Returns the cut point below the blocks that learn (None for head only).
    """
    base = cuts.base_of(model)
    cut = cuts.resolve_block(base, fine_tune_from)
    if cut is None:
        base.trainable = False
    else:
        unfreeze_above(base, cut)
    return cut


def image_size_of(model: keras.Model) -> int:
    """The side of the square photos ``model`` takes."""
    return int(model.input.shape[1])


def _pixels(split: data_mod.Split, size: int, batch_size: int, shuffle: bool = False, seed: int = 0):
    return photo_dataset(split.paths, size, split.labels, batch_size=batch_size, shuffle=shuffle, seed=seed)


def mirrored_copies(paths, folder) -> list[Path]:
    """Each photo's mirror image (left-right), written once as a lossless PNG into ``folder``.

    As files, the mirror images go through the activation cache like any photo: computed once,
    read back on the next run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / f"{Path(path).stem}-mirror.png"
        if not target.is_file():
            with Image.open(path) as photo:
                ImageOps.exif_transpose(photo).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target)
        out.append(target)
    return out


def mirror_features(store: BottleneckCache, bottom: keras.Model, paths, batch_size: int = BATCH_SIZE):
    """``bottom``'s output for the mirror image (left-right) of each photo, through the activation cache.

    Returns what :meth:`helpers.store.cache.BottleneckCache.fetch` does: the features, and what was
    computed or read back.

    With one or two photos per class, the head learns from each photo and its mirror
    (``benchmarks/few_shot.py``: fewer bad draws, no loss at 5 and 10 per class). The mirror
    images are written to a temporary folder (:func:`mirrored_copies`); the cache knows a photo
    by its content, so the next run reads their activations back instead of computing them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        return store.fetch(bottom, mirrored_copies(paths, tmp), 0, 0, batch_size)


def fit(
    model: keras.Model, x, y, recipe: Recipe, validation=None, shuffle: bool = True, recompile: bool = True
) -> keras.callbacks.History:
    """The package's one training loop: ``compile_model`` with ``recipe``'s learning rate, then ``fit``.

    With ``validation`` (``(x, y)`` or a dataset), the lesson's ``fit_keep_best``: the epoch with the
    lowest validation loss is kept (``history.best_epoch``), ``recipe.patience`` epochs without
    improvement stop it. Without, exactly ``recipe.epochs`` epochs (what the benchmarks time).
    ``y=None``: ``x`` is a dataset of batches (``recipe.batch_size`` is not passed on).
    ``recompile=False`` goes on with the model as compiled (its traced step kept: what a timing wants).
    Without a strategy, compiling is :func:`helpers.run.restart.restart` (a top trained again keeps its traced step).
    """
    if recompile:
        (restart if recipe.strategy is None else compile_model)(model, recipe.learning_rate)
    batch_size = None if y is None else recipe.batch_size
    callbacks = list(recipe.callbacks)
    if validation is None:
        return model.fit(
            x, y, epochs=recipe.epochs, batch_size=batch_size, callbacks=callbacks, shuffle=shuffle, verbose=0
        )
    return fit_keep_best(
        model, x, y, validation, recipe.epochs, batch_size=batch_size, patience=recipe.patience, callbacks=callbacks
    )


def _warn_zero(x: np.ndarray, cut: str) -> int:
    """How many rows of ``x`` are all zero (a broken network, or weights, gives such features); said on stderr."""
    zero = int(np.sum(~np.any(x.reshape(len(x), -1), axis=1))) if len(x) else 0
    if zero:
        print(
            f"warning: {zero} of {len(x)} training photos have all-zero activations at {cut}: the frozen "
            "base gives them nothing to learn from (check its weights)",
            file=sys.stderr,
            flush=True,
        )
    return zero


def _cached_inputs(model: keras.Model, parts: tuple, recipe: Recipe, cut: str, extra: dict):
    """The top of ``model`` above ``cut`` and its training inputs, from the activation cache (``extra``: counts)."""
    train, val = parts
    part = cuts.split_at(model, cut)
    store = recipe.cache
    x, seen = store.fetch(part.bottom, train.paths, recipe.augment_copies, recipe.seed, recipe.batch_size)
    x_val, seen_val = store.fetch(part.bottom, val.paths, 0, recipe.seed, recipe.batch_size)
    extra.update(
        cache_hits=seen.hits + seen_val.hits,
        cache_computed=seen.computed + seen_val.computed,
        cache_continued=seen.continued + seen_val.continued,  # from the checkpoint, not pixels
        cache_folder=str(seen.folder),
        augment_copies=recipe.augment_copies,
    )
    y = np.tile(np.asarray(train.labels, np.int32), recipe.augment_copies + 1)
    zero = _warn_zero(x, cut)
    if zero:
        extra["zero_features"] = zero
    if recipe.class_means_start and cut == cuts.POOL and "l2" in {layer.name for layer in model.layers}:
        if recipe.mirror_views and 0 < np.bincount(train.labels).max() <= MIRROR_UP_TO:
            mirrored, seen_mirrors = mirror_features(store, part.bottom, train.paths, recipe.batch_size)
            x = np.concatenate([x, mirrored.astype(x.dtype)])
            y = np.concatenate([y, np.asarray(train.labels, np.int32)])
            extra.update(mirror_views=len(mirrored), mirror_computed=seen_mirrors.computed)
        start_at_class_means(model, x.astype("float32"), y)
        extra["start"] = "class means"
    return part.top, (x, y, (x_val, np.asarray(val.labels, np.int32)))


def train_phase(
    model: keras.Model, train: data_mod.Split, val: data_mod.Split, recipe: Recipe, cut: str | None = None
) -> PhaseResult:
    """Train what is trainable in ``model`` on ``train``; ``val`` chooses the epoch kept.

    With ``recipe.cache`` and a ``cut`` (``"pool"`` for the head, a block output for
    fine-tuning), the layers below the cut run once per photo, into the cache, and ``fit``
    trains the top on the stored activations; otherwise ``fit`` runs on the photos.
    ``recipe.callbacks`` go to ``fit`` (a notebook passes ``helpers.show.curves.LivePlot()``).
    """
    keras.utils.set_random_seed(recipe.seed)
    extra: dict = {}
    start = time.perf_counter()
    with device.strategy_scope(recipe.strategy):
        if recipe.cache is not None and cut is not None:
            fit_model, (x, y, validation) = _cached_inputs(model, (train, val), recipe, cut, extra)
        else:
            size = image_size_of(model)
            fit_model, x, y = model, _pixels(train, size, recipe.batch_size, shuffle=True, seed=recipe.seed), None
            validation = _pixels(val, size, recipe.batch_size)
        extra["forward_seconds"] = time.perf_counter() - start if fit_model is not model else 0.0
        fit_start = time.perf_counter()
        history = fit(fit_model, x, y, recipe, validation=validation)
    extra["fit_seconds"] = time.perf_counter() - fit_start
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return PhaseResult(
        hist, history.best_epoch, time.perf_counter() - start, cuts.count(model.trainable_weights), cut, extra
    )


def probabilities(model: keras.Model, split: data_mod.Split, recipe: Recipe, cut: str | None = None) -> np.ndarray:
    """``model``'s class probabilities for every photo of ``split``.

    With a cache and a cut whose bottom is still frozen, the stored activations are scored
    by the top (no photo goes through the frozen part again); otherwise the photos are
    streamed through the whole model in batches.
    """
    if recipe.cache is not None and cut is not None:
        part = cuts.split_at(model, cut)
        x = recipe.cache.activations(part.bottom, split.paths, 0, recipe.seed, recipe.batch_size)
        return np.asarray(part.top.predict(x, batch_size=recipe.batch_size, verbose=0))
    return np.asarray(model.predict(_pixels(split, image_size_of(model), recipe.batch_size), verbose=0))


def accuracy(model: keras.Model, split: data_mod.Split, recipe: Recipe, cut: str | None = None) -> float:
    """Share of ``split`` whose most probable class is right, by ``model`` (see :func:`probabilities`)."""
    if not len(split):
        return float("nan")
    probs = probabilities(model, split, recipe, cut)
    return float(np.mean(probs.argmax(-1) == np.asarray(split.labels)))


def _phase_record(phase: PhaseResult) -> dict:
    return {
        "seconds": phase.seconds,
        "epochs": phase.epochs,
        "best_epoch": phase.best_epoch,
        "cut": phase.cut,
        "trainable_weights": phase.trainable_weights,
        "history": phase.history,
        **phase.extra,
    }


def _with_prior(model: keras.Model, config: RunConfig, class_names: list[str], parts: dict, score: Recipe, cut):
    """The model to save (with ImageNet's prior where it applies, :mod:`helpers.run.prior`) and its accuracies.

    The accuracies are the saved model's; ``head_only_*`` keep the head's own beside them.
    """
    scored = {name: parts[name] for name in ("val", "test")}
    head = {name: probabilities(model, split, score, cut) if len(split) else None for name, split in scored.items()}
    combined, priors, source = None, {}, "off (--no-imagenet-prior)"
    if config.imagenet_prior:
        combined, priors, source = prior.imagenet_prior(model, config, class_names, scored)
    joint = {n: prior.times(head[n], priors[n]) if priors.get(n) is not None else head[n] for n in head}

    def right(name: str, probs: dict) -> float | None:
        labels = np.asarray(scored[name].labels)
        return _score(np.mean(probs[name].argmax(-1) == labels) if probs[name] is not None else np.nan)

    return combined or model, {
        "val_accuracy": right("val", joint),
        "test_accuracy": right("test", joint),
        "imagenet_prior": source if combined is not None else f"not used: {source}",
        "head_only_val_accuracy": right("val", head),
        "head_only_test_accuracy": right("test", head),
    }


def train_classifier(config: RunConfig, out: str | os.PathLike, strategy=None, callbacks=()) -> dict:
    """The whole recipe behind ``python -m helpers train``: returns and writes the metrics.

    ``config`` (:class:`helpers.run.config.RunConfig`, resolved here) says everything: head
    training (``epochs``; 0 = none), then, with ``fine_tune_from``, fine-tuning from that block
    (a name or the number of top blocks). ``cache=True`` keeps the frozen part's activations in
    the disk cache (``cache_dir``) so a second run with the same photos, backbone and weights
    computes nothing; ``cache=False`` is the plain recipe. Writes ``out/model.keras`` and
    ``out/metrics.json`` (atomically). ``strategy``: a ``tf.distribute`` strategy (default:
    :func:`helpers.run.device.choose_strategy` for this machine). ``callbacks`` go to each phase's
    ``fit`` (a notebook passes ``helpers.show.curves.LivePlot()``).
    """
    config = config.resolved()
    keras.utils.set_random_seed(config.seed)
    folder = data_mod.load_folder(config.data, per_class=config.per_class, seed=config.seed)
    parts = splits(folder, config.seed)
    strategy = strategy or device.choose_strategy()
    with device.strategy_scope(strategy):  # the plain recipe keeps the classic head (no features to start from)
        model = build_classifier(
            folder.class_names, config.backbone, config.weights, config.image_size, normalize=config.cache
        )
    # the head's pass also keeps the activations below the blocks that fine-tune: that phase reads them back
    checkpoint = cuts.resolve_block(cuts.base_of(model), config.fine_tune_from) if config.fine_tunes else None
    store = BottleneckCache(config.cache_dir, checkpoint=checkpoint) if config.cache else None
    head = config.head_recipe(store, strategy, callbacks)
    phases: dict[str, PhaseResult] = {}
    last_cut = cuts.POOL
    if config.epochs > 0:
        freeze_for(model, None)
        phases["head"] = train_phase(model, parts["train"], parts["val"], head, cuts.POOL)
    if config.fine_tunes:
        last_cut = freeze_for(model, config.fine_tune_from)
        phases["fine_tune"] = train_phase(model, parts["train"], parts["val"], config.tune_recipe(head), last_cut)
    score = Recipe(batch_size=config.batch_size, seed=config.seed, cache=store)
    saved, scores = _with_prior(model, config, folder.class_names, parts, score, last_cut)
    metrics = {
        **config.summary(),
        "class_names": folder.class_names,
        **{f"n_{name}": len(parts[name]) for name in ("train", "val", "test")},
        **scores,
        "train_seconds": sum(p.seconds for p in phases.values()),
        "phases": {name: _phase_record(p) for name, p in phases.items()},
        "keras_version": keras.__version__,
    }
    freeze_for(model, None)
    check_finite(model)  # a NaN model is never saved (nor reported: the accuracies above came from it)
    files.save_model(saved, Path(out) / "model.keras")
    files.write_json(Path(out) / "metrics.json", metrics)
    return metrics


__all__ = [
    "MIRROR_UP_TO",
    "NonFiniteModelError",
    "PhaseResult",
    "Recipe",
    "RunConfig",
    "accuracy",
    "build_classifier",
    "check_finite",
    "fit",
    "freeze_for",
    "image_size_of",
    "mirror_features",
    "mirrored_copies",
    "probabilities",
    "train_classifier",
    "train_phase",
]
