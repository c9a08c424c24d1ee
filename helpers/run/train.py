"""Training, the package's way: notebook 03's recipe on cached activations (``helpers train``).

One :class:`Recipe` (learning rate, epochs, batch size, patience, seed, live plot, where
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
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from helpers import files
from helpers.data import folders as data_mod
from helpers.data.photos import splits
from helpers.model import cuts
from helpers.model.backbones import build_base, get_spec, preprocess_layer
from helpers.model.lesson import (
    TimesPrior,
    add_head,
    add_imagenet_prior,
    compile_model,
    fit_keep_best,
    imagenet_prior_layer,
    start_at_class_means,
    unfreeze_above,
)
from helpers.run import device
from helpers.store.cache import BottleneckCache

HEAD_LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-5
HEAD_EPOCHS = 30  # cheap on cached features; 10 photos/class reach >= 97% for every seed tried
FINE_TUNE_EPOCHS = 5
PATIENCE = 10
BATCH_SIZE = 32
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
class Recipe:
    """How one phase trains. ``cache=None``: the plain recipe (the frozen part runs every epoch)."""

    learning_rate: float = HEAD_LEARNING_RATE
    epochs: int = HEAD_EPOCHS
    batch_size: int = BATCH_SIZE
    patience: int = PATIENCE
    seed: int = 0
    live_plot: bool = False
    cache: BottleneckCache | None = None
    augment_copies: int = 0  # with a cache: K fixed random views of each training photo, computed once
    strategy: object = None  # a tf.distribute strategy (helpers.run.device.choose_strategy); None: one device
    class_means_start: bool = True  # a normalised head on cached features starts at the class means (notebook 05)
    mirror_views: bool = False  # with the class-means start, <= MIRROR_UP_TO photos per class: add their mirrors


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
    from helpers.data.pipeline import photo_dataset

    return photo_dataset(split.paths, size, split.labels, batch_size=batch_size, shuffle=shuffle, seed=seed)


def mirror_features(bottom: keras.Model, paths, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """``bottom``'s output for the mirror image (left-right) of each photo: one pass each, not cached.

    With one or two photos per class, the head learns from each photo and its mirror
    (``benchmarks/few_shot.py``: fewer bad draws, no loss at 5 and 10 per class); a few
    photos cost a few passes, which is why it stops at ``MIRROR_UP_TO`` per class.
    """
    size = int(bottom.inputs[0].shape[1])
    pixels = data_mod.load_images(list(paths), size)[:, :, ::-1]
    return np.asarray(bottom.predict(pixels, batch_size=batch_size, verbose=0))


def imagenet_prior(
    model: keras.Model, backbone: str, weights, class_names: list[str], splits_to_score: dict, batch_size: int
) -> tuple[keras.Model | None, dict, str]:
    """``model`` with ImageNet's opinion multiplied in (notebook 05's ``add_imagenet_prior``), and its class
    probabilities on each split of ``splits_to_score`` (the head's, from the cache, times the prior's).

    Used when the backbone carries ImageNet's weights (``"imagenet"`` or Keras' own file name) and ImageNet
    has related classes for all of ours: the classifier is the backbone's own with its ImageNet top, else
    (offline) the small MobileNet whose file the workbook keeps (:func:`helpers.model.imagenet.classifier_weights`).
    ``benchmarks/few_shot.py``: with 1 photo per class, 98.3% → 100% on the 180 val/ photos over 10 draws.
    Returns ``(None, {}, reason)`` where it does not apply.
    """
    from helpers.model import imagenet

    spec = get_spec(backbone)
    size = image_size_of(model)
    genuine = str(weights) == "imagenet" or Path(str(weights)).name in spec.weight_file_names(False, size)
    if not genuine:
        return None, {}, "the backbone's weights are not ImageNet's"
    if imagenet_prior_layer(class_names) is None:
        return None, {}, "ImageNet has no related class for one of the classes"
    try:
        classifier = imagenet.pixel_classifier(spec.keras_name, "imagenet", spec.kwargs)
    except Exception as exc:  # no ImageNet classifier here, not even the fallback: train without the prior
        return None, {}, f"no ImageNet classifier ({str(exc).splitlines()[0]})"
    classifier.trainable = False
    combined = add_imagenet_prior(model, classifier, class_names)
    prior_part = keras.Model(combined.input, combined.get_layer("imagenet_prior").output)
    priors = {
        name: np.asarray(prior_part.predict(_pixels(split, size, batch_size), verbose=0)) if len(split) else None
        for name, split in splits_to_score.items()
    }
    return combined, priors, classifier.name


def train_phase(
    model: keras.Model, train: data_mod.Split, val: data_mod.Split, recipe: Recipe, cut: str | None = None
) -> PhaseResult:
    """Train what is trainable in ``model`` on ``train``; ``val`` chooses the epoch kept.

    With ``recipe.cache`` and a ``cut`` (``"pool"`` for the head, a block output for
    fine-tuning), the layers below the cut run once per photo, into the cache, and ``fit``
    trains the top on the stored activations; otherwise ``fit`` runs on the photos.
    """
    keras.utils.set_random_seed(recipe.seed)
    callbacks = []
    if recipe.live_plot:
        from helpers.show.curves import LivePlot

        callbacks.append(LivePlot())
    extra: dict = {}
    start = time.perf_counter()
    with device.strategy_scope(recipe.strategy):
        if recipe.cache is not None and cut is not None:
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
            extra["forward_seconds"] = time.perf_counter() - start
            zero = int(np.sum(~np.any(x.reshape(len(x), -1), axis=1))) if len(x) else 0
            if zero:  # a broken network (or weights) gives features with nothing in them
                extra["zero_features"] = zero
                print(
                    f"warning: {zero} of {len(x)} training photos have all-zero activations at {cut}: the frozen "
                    "base gives them nothing to learn from (check its weights)",
                    file=sys.stderr,
                    flush=True,
                )
            if recipe.class_means_start and cut == cuts.POOL and "l2" in {layer.name for layer in model.layers}:
                if recipe.mirror_views and 0 < np.bincount(train.labels).max() <= MIRROR_UP_TO:
                    mirrored = mirror_features(part.bottom, train.paths, recipe.batch_size)
                    x = np.concatenate([x, mirrored.astype(x.dtype)])
                    y = np.concatenate([y, np.asarray(train.labels, np.int32)])
                    extra["mirror_views"] = len(mirrored)
                start_at_class_means(model, x.astype("float32"), y)
                extra["start"] = "class means"
            fit_model, args = part.top, (x, y, (x_val, np.asarray(val.labels, np.int32)))
            batch_size = recipe.batch_size
        else:
            size = image_size_of(model)
            fit_model = model
            args = (
                _pixels(train, size, recipe.batch_size, shuffle=True, seed=recipe.seed),
                None,
                _pixels(val, size, recipe.batch_size),
            )
            batch_size = None
            extra["forward_seconds"] = 0.0
        compile_model(fit_model, recipe.learning_rate)
        fit_start = time.perf_counter()
        history = fit_keep_best(
            fit_model, *args, recipe.epochs, batch_size=batch_size, patience=recipe.patience, callbacks=callbacks
        )
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


def train_classifier(
    data: str | os.PathLike,
    out: str | os.PathLike,
    backbone: str = "inception_v3",
    weights: str | None = "imagenet",
    per_class: int | None = None,
    image_size: int | None = None,
    epochs: int = HEAD_EPOCHS,
    fine_tune_from: str | int | None = None,
    fine_tune_epochs: int = FINE_TUNE_EPOCHS,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    augment_copies: int = 0,
    live_plot: bool = False,
    strategy=None,
    patience: int = PATIENCE,
    mirror_views: bool = True,
    with_imagenet_prior: bool = True,
) -> dict:
    """The whole recipe behind ``python -m helpers train``: returns and writes the metrics.

    Head training (``epochs``; 0 = none), then, with ``fine_tune_from``, fine-tuning from
    that block (a name or the number of top blocks). ``cache=True`` keeps the frozen
    part's activations in the disk cache (``cache_dir``, default ``$WORKBOOK_CACHE`` or
    ``~/.cache/transfer-workbook``) so a second run with the same photos, backbone and
    weights computes nothing; ``cache=False`` is the plain recipe. Writes
    ``out/model.keras`` and ``out/metrics.json`` (atomically). ``strategy``: a
    ``tf.distribute`` strategy (default: :func:`helpers.run.device.choose_strategy` for this machine).
    ``patience``: each phase stops when the validation loss has not improved for that many
    epochs, and keeps its best epoch. ``mirror_views``: with at most ``MIRROR_UP_TO`` photos per
    class, the head also learns from each training photo's mirror image (:func:`mirror_features`).
    ``with_imagenet_prior``: where it applies (:func:`imagenet_prior`), the saved model multiplies the
    head's probabilities by ImageNet's opinion, and the accuracies are that model's.
    """
    out = Path(out)
    keras.utils.set_random_seed(seed)
    spec = get_spec(backbone)
    size = spec.default_size if image_size is None else image_size
    if size < spec.min_size:
        raise ValueError(f"image_size {size}: {spec.name} takes photos of at least {spec.min_size} px")
    folder = data_mod.load_folder(data, per_class=per_class, seed=seed)
    parts = splits(folder, seed)
    strategy = strategy or device.choose_strategy()
    with device.strategy_scope(strategy):  # the plain recipe keeps the classic head (no features to start from)
        model = build_classifier(folder.class_names, backbone, weights, size, normalize=cache)
    fine_tuning = bool(fine_tune_from) and fine_tune_epochs > 0
    # the head's pass also keeps the activations below the blocks that fine-tune: that phase reads them back
    checkpoint = cuts.resolve_block(cuts.base_of(model), fine_tune_from) if fine_tuning else None
    store = BottleneckCache(cache_dir, checkpoint=checkpoint) if cache else None
    if augment_copies and store is None:
        raise ValueError("augment_copies needs the activation cache (leave cache on)")
    phases: dict[str, PhaseResult] = {}
    head = Recipe(HEAD_LEARNING_RATE, epochs, batch_size, patience, seed, live_plot, store, augment_copies, strategy)
    head.mirror_views = mirror_views
    last_cut = cuts.POOL
    if epochs > 0:
        freeze_for(model, None)
        phases["head"] = train_phase(model, parts["train"], parts["val"], head, cuts.POOL)
    if fine_tuning:
        last_cut = freeze_for(model, fine_tune_from)
        tune = Recipe(
            FINE_TUNE_LEARNING_RATE,
            fine_tune_epochs,
            batch_size,
            patience,
            seed,
            live_plot,
            store,
            augment_copies,
            strategy,
        )
        phases["fine_tune"] = train_phase(model, parts["train"], parts["val"], tune, last_cut)
    score = Recipe(batch_size=batch_size, seed=seed, cache=store)
    scored = {name: parts[name] for name in ("val", "test")}
    probs = {
        name: probabilities(model, split, score, last_cut) if len(split) else None for name, split in scored.items()
    }
    saved, priors, prior_source = model, {}, "off"
    if with_imagenet_prior:
        classes = folder.class_names
        combined, priors, prior_source = imagenet_prior(model, backbone, weights, classes, scored, batch_size)
        saved = combined or model
    head_probs = dict(probs)
    for name, prior in priors.items():
        if prior is not None:
            probs[name] = np.asarray(TimesPrior()([probs[name].astype("float32"), prior.astype("float32")]))

    def right(name: str, p: dict) -> float:
        return _score(np.mean(p[name].argmax(-1) == np.asarray(scored[name].labels)) if p[name] is not None else np.nan)

    metrics = {
        "backbone": backbone,
        "weights": str(weights),
        "image_size": size,
        "per_class": per_class,
        "seed": seed,
        "class_names": folder.class_names,
        "n_train": len(parts["train"]),
        "n_val": len(parts["val"]),
        "n_test": len(parts["test"]),
        "val_accuracy": right("val", probs),
        "test_accuracy": right("test", probs),
        "imagenet_prior": prior_source if saved is not model else f"not used: {prior_source}",
        "head_only_val_accuracy": right("val", head_probs),
        "head_only_test_accuracy": right("test", head_probs),
        "train_seconds": sum(p.seconds for p in phases.values()),
        "cache": bool(cache),
        "cache_dir": str(store.root) if store else None,
        "phases": {
            name: {
                "seconds": p.seconds,
                "epochs": p.epochs,
                "best_epoch": p.best_epoch,
                "cut": p.cut,
                "trainable_weights": p.trainable_weights,
                "history": p.history,
                **p.extra,
            }
            for name, p in phases.items()
        },
        "fine_tune_from": fine_tune_from,
        "keras_version": keras.__version__,
    }
    freeze_for(model, None)
    check_finite(model)  # a NaN model is never saved (nor reported: the accuracies above came from it)
    files.save_model(saved, out / "model.keras")
    files.write_json(out / "metrics.json", metrics)
    return metrics
