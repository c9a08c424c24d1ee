"""Two settings over several seeds, worded from the numbers (notebooks 04, 05, 05a, 07).

One draw of a few photos can mislead: one photo more or less right moves the test accuracy by a point
or more. :class:`SeedRuns` holds test accuracies of several settings on the same draws, :func:`spread`
and :func:`seeds_verdict` say what they show; :func:`head_vs_fine_tune` (04) and
:func:`augmentation_effect` (05a) measure them on stored activations; :func:`scratch_stopped` (05)
says why the CNN from scratch ended where it did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from helpers.data import folders as data_mod
from helpers.model import cuts
from helpers.model.lesson import fit_keep_best, split_at, start_at_class_means, unfreeze_above
from helpers.run.restart import restart


def spread(values) -> str:
    """``mean (worst–best)`` of accuracies, e.g. ``97.8% (96.7%–98.9%)``."""
    values = [float(v) for v in values]
    return f"{np.mean(values):.1%} ({min(values):.1%}–{max(values):.1%})"


def seeds_verdict(label_a: str, a, label_b: str, b, n_photos: int) -> str:
    """One honest sentence on two settings measured on the same draws (one accuracy per seed each).

    A per-seed difference smaller than one photo of ``n_photos`` counts as none. Says how big the
    mean difference is, in how many seeds each side won, and, when the seeds disagree, that they do.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b) or not a:
        raise ValueError(f"one accuracy per seed for both settings, got {len(a)} and {len(b)}")
    diffs = [y - x for x, y in zip(a, b)]
    changed = [d for d in diffs if round(abs(d) * n_photos) >= 1]
    seeds = f"{len(a)} seed{'s' if len(a) > 1 else ''}"
    numbers = f"{label_a} {spread(a)}, {label_b} {spread(b)} on {n_photos} test photos, {seeds}"
    if not changed:
        return f"No difference: {numbers}; no seed moved by even one photo."
    better = sum(d > 0 for d in changed)
    worse = sum(d < 0 for d in changed)
    mean = float(np.mean(diffs))
    if better and worse:
        return (
            f"No consistent difference: {numbers}; {label_b} was better in {better} seed(s) and worse in {worse} "
            f"(mean change {mean * 100:+.1f} percentage points): the draw of photos matters more than the setting here."
        )
    direction = "better" if better else "worse"
    same = len(a) - len(changed)
    tie = f", the same in {same}" if same else ""
    return (
        f"{label_b} is {direction} than {label_a} by {abs(mean) * 100:.1f} percentage points on average ({numbers}): "
        f"{direction} in {len(changed)} of {len(a)} seeds{tie}."
    )


@dataclass
class SeedRuns:
    """Test accuracies of several settings on the same draws of photos: one list per setting, one value per seed."""

    seeds: list[int]
    n_test: int
    accuracy: dict[str, list[float]]
    seconds: float = 0.0

    def table(self) -> str:
        """One line per setting: mean (worst–best) and the value of each seed."""
        width = max(len(name) for name in self.accuracy)
        lines = [f"{'':{width}s}  mean (worst–best) over seeds {self.seeds} on {self.n_test} test photos"]
        for name, values in self.accuracy.items():
            each = "  ".join(f"{v:.1%}" for v in values)
            lines.append(f"{name:{width}s}  {spread(values)}   each: {each}")
        return "\n".join(lines)


def _fresh_head(model: keras.Model, seed: int) -> None:
    """The ``predictions`` layer at a new random start (Glorot, seeded), bias zero."""
    dense = model.get_layer("predictions")
    kernel = keras.initializers.GlorotUniform(seed)(dense.kernel.shape)
    dense.set_weights([keras.ops.convert_to_numpy(kernel), np.zeros(dense.units, "float32")])


@dataclass(frozen=True)
class FineTuneRecipe:
    """Notebook 04's two phases over several draws: the draws, then how the head and the fine-tuning train.

    ``per_class`` training photos of each class (None: all) for each of ``seeds``, drawn from the
    training photos of the folder's split ``split_seed``; the head trains ``head_epochs``, then, for
    each learning rate of ``learning_rates`` (name → rate), the blocks above the cut ``tune_epochs``.
    """

    per_class: int | None
    seeds: tuple[int, ...]
    head_epochs: int
    tune_epochs: int
    learning_rates: dict[str, float]
    patience: int = 10
    batch_size: int = 32
    split_seed: int = 0


def head_vs_fine_tune(
    model: keras.Model, cut: str, store, photos, start_weights: list, recipe: FineTuneRecipe
) -> SeedRuns:
    """Notebook 04's two phases repeated over ``recipe.seeds``, on stored activations: head only vs fine-tuned.

    ``photos`` is the notebook's :class:`helpers.data.photos.Photos`: its validation photos choose the epoch,
    its test photos are scored. For each seed, ``recipe.per_class`` training photos of each class are drawn
    from all the training photos of its folder (the draw of :func:`helpers.data.photos.load` for that seed);
    ``model`` starts from ``start_weights`` (the pretrained blocks) with a new random head, the head
    learns on the pooled features (notebook 03), and then, for each learning rate of
    ``recipe.learning_rates``, the blocks above ``cut`` and the head learn on the activations at ``cut``
    (notebook 04), every run from the same trained head. The frozen part runs once per photo, through
    ``store``. ``model``'s weights and trainable flags are put back.
    """
    started = time.perf_counter()
    store = store.quiet()  # many small fetches: the table printed after says what they cost
    base = cuts.base_of(model)
    kept = model.get_weights()
    pooled_cut, fine = split_at(model, cuts.POOL), cuts.split_at(model, cut)
    train_split = data_mod.load_folder(photos.root, seed=recipe.split_seed, check=False).train  # checked when read
    held_out = {"val": data_mod.Split(photos.val_paths, list(photos.y_val)),
                "test": data_mod.Split(photos.test_paths, list(photos.y_test))}  # fmt: skip
    labels = {"val": np.asarray(photos.y_val, np.int32), "test": np.asarray(photos.y_test, np.int32)}
    # the pooled features are those of the pretrained blocks, frozen (the store's folder is named by both)
    model.set_weights(start_weights)
    base.trainable = False
    features = {
        name: {part: store.activations(bottom, s.paths).astype("float32") for part, s in held_out.items()}
        for name, bottom in (("pool", pooled_cut[0]), ("cut", fine.bottom))
    }
    shared = _Shared(pooled_cut[1], fine.top, cut, features, labels)
    results: dict[str, list[float]] = {"head only": [], **{name: [] for name in recipe.learning_rates}}
    try:
        for seed in recipe.seeds:
            draw = data_mod.sample_per_class(train_split, recipe.per_class, seed) if recipe.per_class else train_split
            model.set_weights(start_weights)
            base.trainable = False
            x = {"pool": store.activations(pooled_cut[0], draw.paths).astype("float32"),
                 "cut": store.activations(fine.bottom, draw.paths).astype("float32")}  # fmt: skip
            for name, accuracy in _one_draw(model, shared, x, np.asarray(draw.labels, np.int32), recipe, seed).items():
                results[name].append(accuracy)
    finally:
        unfreeze_above(base, cut)
        model.set_weights(kept)
    return SeedRuns(list(recipe.seeds), len(labels["test"]), results, time.perf_counter() - started)


@dataclass(frozen=True)
class _Shared:
    """What every draw of :func:`head_vs_fine_tune` shares: the two tops it trains, the cut, the held-out photos."""

    head: keras.Model  # above the pooled features
    fine_top: keras.Model  # above the cut
    cut: str
    features: dict[str, dict[str, np.ndarray]]  # "pool" / "cut" -> "val" / "test" -> activations
    labels: dict[str, np.ndarray]  # "val" / "test"


def _one_draw(model, shared: _Shared, x: dict, y: np.ndarray, recipe: FineTuneRecipe, seed: int) -> dict[str, float]:
    """One seed of :func:`head_vs_fine_tune`: a new head trained on pooled features, then each fine-tuning."""
    base = cuts.base_of(model)
    features, labels = shared.features, shared.labels
    keras.utils.set_random_seed(seed)
    _fresh_head(model, seed)
    restart(shared.head, 1e-3)  # compile_model, its traced step kept from the last draw
    val = (features["pool"]["val"], labels["val"])
    fit_keep_best(shared.head, x["pool"], y, val, recipe.head_epochs, recipe.batch_size, recipe.patience)
    out = {"head only": _accuracy(shared.head, features["pool"]["test"], labels["test"])}
    after_head = model.get_weights()
    for name, rate in recipe.learning_rates.items():
        model.set_weights(after_head)
        unfreeze_above(base, shared.cut)
        keras.utils.set_random_seed(seed)
        restart(shared.fine_top, rate)
        val = (features["cut"]["val"], labels["val"])
        fit_keep_best(shared.fine_top, x["cut"], y, val, recipe.tune_epochs, recipe.batch_size, recipe.patience)
        out[name] = _accuracy(shared.fine_top, features["cut"]["test"], labels["test"])
        base.trainable = False
    return out


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(-1) == y))


def scratch_stopped(row, budget_seconds: float, n_val: int) -> str:
    """Why notebook 05's CNN from scratch ended where it did, from its own numbers (one ``PhotosResult``).

    Its epochs, seconds and stopping reason; its validation accuracy at the start, at the best epoch
    and over its last epochs (still rising, or levelled off: a change under one of ``n_val``
    validation photos counts as none); and, if it was still rising when the time budget stopped it,
    how many more epochs the last epochs' rate would need to reach the transfer head's mean
    accuracy — at least that many, since such curves flatten.
    """
    if not row.scratch_val_accuracy or not row.scratch_val_accuracy[0]:
        return "The CNN from scratch did not run in this setting."
    curve = row.scratch_val_accuracy[0]
    epochs, seconds = len(curve), float(row.scratch_seconds[0])
    per_epoch = seconds / epochs
    best = int(np.argmax(curve))
    who = f"On {row.per_class or 'all'} photos per class ({row.photos} photos) the CNN from scratch"
    if row.scratch_budget_hit[0]:
        how = f"was stopped by its time budget ({budget_seconds:g} s) after {epochs} epochs, {per_epoch:.1f} s each"
    else:
        how = f"stopped by itself after {epochs} epochs ({seconds:.1f} s, {per_epoch:.1f} s each)"
    lines = [
        f"{who} {how}; its validation accuracy went from {curve[0]:.1%} (epoch 1) to {curve[-1]:.1%} "
        f"(epoch {epochs}), best {curve[best]:.1%} at epoch {best + 1}."
    ]
    window = max(2, min(5, epochs // 3 + 1))
    if epochs < window:
        return lines[0]
    start = curve[-window]
    rate = (curve[-1] - start) / (window - 1)
    target = float(np.mean(row.transfer_accuracy))
    if round((curve[-1] - start) * n_val) >= 1 and rate > 0:
        lines.append(
            f"Over its last {window} epochs it was still rising, from {start:.1%} to {curve[-1]:.1%} "
            f"(+{rate * 100:.1f} points per epoch): it stopped before it had finished learning."
        )
        if row.scratch_budget_hit[0] and target > curve[-1]:
            more = int(np.ceil((target - curve[-1]) / rate))
            lines.append(
                f"At that rate, reaching the transfer head's {target:.1%} would take at least {more} more epochs "
                f"(about {more * per_epoch:.0f} s more; curves like this flatten, so likely longer) — against "
                f"{np.mean(row.transfer_seconds):.1f} s for the transfer head, forward pass included."
            )
    elif round((curve[best] - curve[-1]) * n_val) >= 1:
        lines.append(
            f"It had passed its best: {curve[best]:.1%} at epoch {best + 1}, {curve[-1]:.1%} at the end (the epoch "
            "with the lowest validation loss is the one kept); more epochs of the same would not help, more photos, "
            "augmentation or a different network would."
        )
    else:
        lines.append(
            f"Over its last {window} epochs it had levelled off ({start:.1%} → {curve[-1]:.1%}): more epochs of the "
            "same would add little; a bigger network, more photos or augmentation are what it lacks."
        )
    return "\n".join(lines)


def augmentation_effect(  # noqa: PLR0913 - notebook 05a's call names the draw, the views and the start in one line
    model: keras.Model,
    store,
    parts: dict,
    per_class_list,
    seeds,
    views: int,
    epochs: int = 20,
    start: str = "class means",
):
    """The head with and without ``views`` stored augmented views per photo, at few photos per class (notebook 05a).

    ``model`` is notebook 05's head with normalised features (``add_head(..., normalize=True)``). For
    each N of ``per_class_list`` and each seed, the same draw of N training photos per class trains
    the head twice, as notebook 05 does (started at the class means, then ``fit``; the validation
    photos choose the epoch): on the photos alone, and on the photos plus their stored views
    (``store.activations(..., augment_copies=views)``: computed once, then read back). Both are scored
    on the test photos. ``start="random"`` starts the head as notebook 03 does instead: a new random
    ``predictions`` layer (seeded), the same for both. Returns ``{N: SeedRuns}``.
    """
    if start not in ("class means", "random"):
        raise ValueError(f"start must be 'class means' or 'random', got {start!r}")
    bottom, top = split_at(model, cuts.POOL)
    store = store.quiet()  # many small fetches: the tables printed after say what they cost
    val, test = parts["val"], parts["test"] if len(parts["test"]) else parts["val"]
    x_val = store.activations(bottom, val.paths).astype("float32")
    x_test = store.activations(bottom, test.paths).astype("float32")
    y_val, y_test = np.asarray(val.labels, np.int32), np.asarray(test.labels, np.int32)

    def head_accuracy(x, y, seed):
        keras.utils.set_random_seed(seed)
        if start == "class means":
            start_at_class_means(model, x, y)
        else:
            _fresh_head(model, seed)
        restart(top, 1e-3)
        fit_keep_best(top, x, y, (x_val, y_val), epochs)
        return _accuracy(top, x_test, y_test)

    with_views = f"+ {views} stored views"
    out = {}
    for n in per_class_list:
        started = time.perf_counter()
        runs = {"photos alone": [], with_views: []}
        for seed in seeds:
            draw = data_mod.sample_per_class(parts["train"], n, seed)
            y = np.asarray(draw.labels, np.int32)
            x = store.activations(bottom, draw.paths, augment_copies=views, seed=seed).astype("float32")
            runs["photos alone"].append(head_accuracy(x[: len(y)], y, seed))
            runs[with_views].append(head_accuracy(x, np.tile(y, views + 1), seed))
        out[n] = SeedRuns(list(seeds), len(y_test), runs, time.perf_counter() - started)
    return out
