"""Which backbone fits best? The same head, the same photos, several backbones (notebook 07).

For each backbone we build notebook 02's model (:func:`helpers.run.train.build_classifier`)
and train its head with one :class:`helpers.run.train.Recipe` on cached features
(:func:`helpers.run.train.train_phase` cut at ``"pool"``: the frozen base runs once over the
photos, into the activation cache, and the head trains on the stored features), then
measure what a learner weighs when choosing: test accuracy (the validation photos
choose the epoch), training time, inference time per image of the whole model,
parameter count and the size of the saved ``.keras`` file. A backbone whose ImageNet
weights cannot be had (offline, no local file) is reported as *skipped* with the reason
in one line, never dropped.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from helpers import files
from helpers.data import folders as data_mod
from helpers.data.photos import splits
from helpers.model import cuts
from helpers.model.backbones import BACKBONES, WeightsUnavailableError, get_spec, resolve_weights
from helpers.run import train
from helpers.settings import WEIGHTS_ENV
from helpers.store.cache import BottleneckCache

RESULTS_FILE = "comparison.json"


@dataclass
class BackboneResult:
    """One row of the comparison: measured numbers, or why the backbone was skipped."""

    backbone: str
    status: str  # "ok" | "skipped"
    reason: str = ""
    image_size: int | None = None
    weights: str | None = None
    test_accuracy: float | None = None
    feature_seconds: float | None = None  # the one forward pass over train + val photos (0 when cached)
    train_seconds: float | None = None  # head training on the stored features
    inference_ms: float | None = None  # whole model, per image, batch of photos
    parameters: int | None = None
    file_mb: float | None = None
    few_per_class: int | None = None  # the harder setting: this many training photos per class…
    few_accuracy: list[float] | None = None  # …test accuracy on each seed's draw of them
    test_photos: int | None = None  # how many test photos each accuracy is on

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _skip_reason(exc: WeightsUnavailableError) -> str:
    """'ImageNet weights could not be had: Keras expects the file X …' in one line."""
    lines = str(exc).splitlines()
    expected = next((line for line in lines if line.startswith("Keras expects")), "")
    expected = expected.split(" (from ")[0]
    return (
        f"ImageNet weights could not be downloaded. {expected}; put it in ${WEIGHTS_ENV} or pass weights=PATH"
    ).strip()


def train_head_cached(
    model: keras.Model, parts: dict[str, data_mod.Split], recipe: train.Recipe
) -> tuple[float, float, float]:
    """Train ``model``'s head on cached features; return (test accuracy, feature s, train s).

    :func:`helpers.run.train.train_phase` cut at ``"pool"`` (notebooks 03 and 05): the base runs
    once over the photos (or not at all, when the cache has them), the head trains on the
    pooled features, the validation photos choose the epoch. Accuracy is on the test
    photos, scored from their cached features.
    """
    train.freeze_for(model, None)
    result = train.train_phase(model, parts["train"], parts["val"], recipe, cuts.POOL)
    test = parts["test"] if len(parts["test"]) else parts["val"]
    return (
        train.accuracy(model, test, recipe, cuts.POOL),
        result.extra["forward_seconds"],
        result.extra["fit_seconds"],
    )


def inference_ms_per_image(model: keras.Model, images: np.ndarray, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``model.predict`` on a batch, per image, in ms."""
    x = np.asarray(images, np.float32)
    model.predict(x[:1], verbose=0)  # build and trace once
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=len(x), verbose=0)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(x)


def compare_one(
    name: str,
    photos: data_mod.ImageFolder,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    epochs: int = 10,
    seed: int = 0,
    inference_images: int = 8,
    allow_download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    few: int | None = None,
    seeds=(),
    train_pool: data_mod.Split | None = None,
) -> BackboneResult:
    """Measure one backbone (see the module docstring); skipped if its weights can't be had.

    With ``few`` and ``seeds``, the head is also trained on ``few`` photos per class drawn from
    ``train_pool`` (default: ``photos.train``) for each seed, on the same stored features, and
    scored on the same test photos: ``few_accuracy``, one value per seed.

    ``allow_download=False`` skips a backbone at once when its ImageNet file is not local
    (CI and offline machines: no attempt, no waiting on the network).
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    if not allow_download and weights == "imagenet" and resolve_weights(spec, weights, False, size) == "imagenet":
        expected = spec.weight_file_names(False, size)[-1]
        return BackboneResult(
            spec.name,
            "skipped",
            f"no local ImageNet weights ({expected} is not in ${WEIGHTS_ENV} or the Keras cache) and downloads are off",
            size,
            str(weights),
        )
    try:
        model = train.build_classifier(photos.class_names, spec.name, weights, size)
    except WeightsUnavailableError as exc:
        return BackboneResult(spec.name, "skipped", _skip_reason(exc), size, str(weights))
    except (FileNotFoundError, ValueError) as exc:
        return BackboneResult(spec.name, "skipped", _first_line(exc), size, str(weights))
    parts = splits(photos, seed)
    store = BottleneckCache(cache_dir, progress=False, checkpoint=None)  # head only: the pooled features
    recipe = train.Recipe(epochs=epochs, seed=seed, cache=store)
    accuracy, feature_seconds, train_seconds = train_head_cached(model, parts, recipe)
    few_accuracy = None
    if few and seeds:
        few_accuracy = []
        for each in seeds:
            drawn = dict(parts, train=data_mod.sample_per_class(train_pool or photos.train, few, each))
            few_accuracy.append(train_head_cached(model, drawn, train.Recipe(epochs=epochs, seed=each, cache=store))[0])
    shown = parts["val"] if len(parts["val"]) else parts["train"]
    sample = data_mod.load_images(shown.paths[:inference_images], size)
    with tempfile.TemporaryDirectory() as tmp:
        size_bytes = files.save_model(model, Path(tmp) / "model.keras").stat().st_size
    return BackboneResult(
        spec.name,
        "ok",
        "",
        size,
        str(weights),
        accuracy,
        feature_seconds,
        train_seconds,
        inference_ms_per_image(model, sample),
        int(model.count_params()),
        size_bytes / 1e6,
        few if few_accuracy is not None else None,
        few_accuracy,
        len(parts["test"]) if len(parts["test"]) else len(parts["val"]),
    )


def compare_backbones(
    names: list[str] | None,
    data_dir: str | os.PathLike,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    per_class: int | None = None,
    epochs: int = 10,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    allow_download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    few: int | None = None,
    seeds=(),
) -> list[BackboneResult]:
    """Compare backbones (default: all of :data:`helpers.model.backbones.BACKBONES`) on one photo folder.

    With ``few`` and ``seeds``, each backbone is also measured in a harder setting: ``few``
    training photos per class, one draw per seed (:func:`compare_one`).

    ``image_size=None`` uses each backbone's own default size. Features go to the activation
    cache (``cache_dir``, default ``$WORKBOOK_CACHE``), so a second run computes none. With
    ``out``, the rows are written to ``out/comparison.json``.
    """
    everything = data_mod.load_folder(data_dir, seed=seed)
    photos = everything
    if per_class is not None:
        photos = data_mod.ImageFolder(
            everything.root,
            everything.class_names,
            data_mod.sample_per_class(everything.train, per_class, seed),
            everything.val,
            everything.test,
            everything.report,
        )

    results = []
    for name in names or list(BACKBONES):
        try:
            get_spec(name)
        except ValueError as exc:
            results.append(BackboneResult(name, "skipped", str(exc)))
            continue
        result = compare_one(
            name,
            photos,
            weights,
            image_size,
            epochs,
            seed,
            allow_download=allow_download,
            cache_dir=cache_dir,
            few=few,
            seeds=seeds,
            train_pool=everything.train,
        )
        results.append(result)
        if progress:
            print(describe(result), flush=True)
    if out is not None:
        files.write_json(Path(out) / RESULTS_FILE, [asdict(r) for r in results])
    from helpers.store.numbers import record

    record(**{f"accuracy of {r.backbone}": r.test_accuracy for r in results if r.ok})  # notebook 07's, for the book
    return results


def describe(result: BackboneResult) -> str:
    """One line for a progress log."""
    if not result.ok:
        return f"{result.backbone:18s} skipped (the table below says why)"
    few = f"  {result.few_per_class}/class: {spread(result.few_accuracy)}" if result.few_accuracy else ""
    return (
        f"{result.backbone:18s} {result.test_accuracy:6.1%}  train {result.train_seconds:5.1f}s "
        f"(+{result.feature_seconds:.1f}s features)  {result.inference_ms:6.1f} ms/image  "
        f"{result.parameters:>11,} params  {result.file_mb:6.1f} MB{few}"
    )


COLUMNS = [
    ("backbone", "backbone"),
    ("status", "status"),
    ("image_size", "px"),
    ("test_accuracy", "test acc"),
    ("few_accuracy", "test acc, few per class: mean (worst–best)"),
    ("train_seconds", "train s"),
    ("feature_seconds", "features s"),
    ("inference_ms", "ms/image"),
    ("parameters", "parameters"),
    ("file_mb", "file MB"),
    ("reason", "reason"),
]


def results_table(results: list[BackboneResult]) -> str:
    """The comparison as a Markdown table (measured rows first, then the skipped ones)."""

    def cell(key: str, value) -> str:
        if value is None or value == "":
            return "–"
        if key == "test_accuracy":
            return f"{value:.1%}"
        if key == "few_accuracy":
            return f"{spread(value)}" if value else "–"
        if key in ("train_seconds", "feature_seconds", "inference_ms", "file_mb"):
            return f"{value:.2f}"
        if key == "parameters":
            return f"{value:,}"
        return str(value)

    rows = sorted(results, key=lambda r: (not r.ok, r.backbone))
    few = next((r.few_per_class for r in results if r.few_per_class), None)
    titles = [title.replace("few per class", f"{few} per class") for _, title in COLUMNS]
    header = "| " + " | ".join(titles) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(cell(key, getattr(r, key)) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body])


# -- two settings over several seeds, worded from the numbers (notebooks 04, 05a, 07) --------------


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


def head_vs_fine_tune(
    model: keras.Model,
    cut: str,
    store,
    photos,
    per_class: int | None,
    seeds,
    start_weights: list,
    head_epochs: int,
    tune_epochs: int,
    tune_learning_rates: dict[str, float],
    patience: int = 10,
    batch_size: int = 32,
    split_seed: int = 0,
) -> SeedRuns:
    """Notebook 04's two phases repeated over ``seeds``, on stored activations: head only vs fine-tuned.

    ``photos`` is the notebook's :class:`helpers.data.photos.Photos`: its validation photos choose the epoch,
    its test photos are scored. For each seed, ``per_class`` training photos of each class are drawn
    from all the training photos of its folder (the draw of :func:`helpers.data.photos.load` for that seed);
    ``model`` starts from ``start_weights`` (the pretrained blocks) with a new random head, the head
    learns on the pooled features (notebook 03), and then, for each learning rate of
    ``tune_learning_rates`` (name → rate), the blocks above ``cut`` and the head learn on the
    activations at ``cut`` (notebook 04), every run from the same trained head. The frozen part
    runs once per photo, through ``store``. ``model``'s weights and trainable flags are put back.
    """
    from helpers.model.lesson import compile_model, fit_keep_best, split_at, unfreeze_above

    started = time.perf_counter()
    base = cuts.base_of(model)
    kept = model.get_weights()
    bottom, top = split_at(model, cuts.POOL)
    fine = cuts.split_at(model, cut)
    train_split = data_mod.load_folder(photos.root, seed=split_seed, check=False).train  # checked when read
    val = data_mod.Split(photos.val_paths, list(photos.y_val))
    test = data_mod.Split(photos.test_paths, list(photos.y_test))
    y_val, y_test = np.asarray(photos.y_val, np.int32), np.asarray(photos.y_test, np.int32)
    splits = {"val": val, "test": test}
    # the pooled features are those of the pretrained blocks, frozen (the store's folder is named by both)
    model.set_weights(start_weights)
    base.trainable = False
    pooled = {name: store.activations(bottom, s.paths).astype("float32") for name, s in splits.items()}
    below = {name: store.activations(fine.bottom, s.paths).astype("float32") for name, s in splits.items()}
    results: dict[str, list[float]] = {"head only": [], **{name: [] for name in tune_learning_rates}}
    try:
        for seed in seeds:
            draw = data_mod.sample_per_class(train_split, per_class, seed) if per_class else train_split
            y = np.asarray(draw.labels, np.int32)
            model.set_weights(start_weights)
            base.trainable = False
            x_pool = store.activations(bottom, draw.paths).astype("float32")
            x_cut = store.activations(fine.bottom, draw.paths).astype("float32")
            keras.utils.set_random_seed(seed)
            _fresh_head(model, seed)
            compile_model(top, 1e-3)
            fit_keep_best(top, x_pool, y, (pooled["val"], y_val), head_epochs, batch_size, patience)
            results["head only"].append(_accuracy(top, pooled["test"], y_test))
            after_head = model.get_weights()
            for name, rate in tune_learning_rates.items():
                model.set_weights(after_head)
                unfreeze_above(base, cut)
                keras.utils.set_random_seed(seed)
                compile_model(fine.top, rate)
                fit_keep_best(fine.top, x_cut, y, (below["val"], y_val), tune_epochs, batch_size, patience)
                results[name].append(_accuracy(fine.top, below["test"], y_test))
                base.trainable = False
    finally:
        unfreeze_above(base, cut)
        model.set_weights(kept)
    return SeedRuns(list(seeds), len(y_test), results, time.perf_counter() - started)


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(-1) == y))


def ranking_verdict(results: list[BackboneResult]) -> str:
    """The comparison's accuracies in words from its numbers: ties in the main run, the ranking with few photos.

    Backbones within one test photo of each other count as tied. In the harder setting (``few``
    photos per class over seeds), the best backbone by mean is compared with each other one on the
    same draws (:func:`seeds_verdict`).
    """
    ok = [r for r in results if r.ok]
    if not ok:
        return "No backbone could be measured here."
    n_test = ok[0].test_photos
    lines = []
    best = max(r.test_accuracy for r in ok)
    tied = [r.backbone for r in ok if round((best - r.test_accuracy) * n_test) < 1]
    if len(tied) == len(ok) and len(ok) > 1:
        lines.append(
            f"With the training photos of the main run, all {len(ok)} backbones tie at {best:.1%} on {n_test} test "
            "photos: this setting cannot tell them apart."
        )
    else:
        ranked = sorted(ok, key=lambda r: -r.test_accuracy)
        lines.append(
            "With the training photos of the main run: "
            + ", ".join(f"{r.backbone} {r.test_accuracy:.1%}" for r in ranked)
            + (f" ({', '.join(tied)} tied at the top)" if len(tied) > 1 else "")
            + "."
        )
    few = [r for r in ok if r.few_accuracy]
    if len(few) > 1:
        ranked = sorted(few, key=lambda r: -float(np.mean(r.few_accuracy)))
        top = ranked[0]
        lines.append(
            f"With {top.few_per_class} photos per class, over {len(top.few_accuracy)} draws, by mean: "
            + ", ".join(f"{r.backbone} {np.mean(r.few_accuracy):.1%}" for r in ranked)
            + "."
        )
        for r in ranked[1:]:
            lines.append("- " + seeds_verdict(r.backbone, r.few_accuracy, top.backbone, top.few_accuracy, n_test))
    return "\n".join(lines)


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


def augmentation_effect(model: keras.Model, store, parts: dict, per_class_list, seeds, views: int, epochs: int = 20):
    """The head with and without ``views`` stored augmented views per photo, at few photos per class (notebook 05a).

    ``model`` is notebook 05's head with normalised features (``add_head(..., normalize=True)``). For
    each N of ``per_class_list`` and each seed, the same draw of N training photos per class trains
    the head twice, as notebook 05 does (started at the class means, then ``fit``; the validation
    photos choose the epoch): on the photos alone, and on the photos plus their stored views
    (``store.activations(..., augment_copies=views)``: computed once, then read back). Both are scored
    on the test photos. Returns ``{N: SeedRuns}``.
    """
    from helpers.model.lesson import compile_model, fit_keep_best, split_at, start_at_class_means

    bottom, top = split_at(model, cuts.POOL)
    val, test = parts["val"], parts["test"] if len(parts["test"]) else parts["val"]
    x_val = store.activations(bottom, val.paths).astype("float32")
    x_test = store.activations(bottom, test.paths).astype("float32")
    y_val, y_test = np.asarray(val.labels, np.int32), np.asarray(test.labels, np.int32)

    def head_accuracy(x, y, seed):
        keras.utils.set_random_seed(seed)
        start_at_class_means(model, x, y)
        compile_model(top, 1e-3)
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
