"""Small data, short time: the machinery of notebook 05's measurements.

The lesson's lines (cut at the pooled features, one forward pass, fit the head on the
features) are in the notebook and :mod:`helpers.model.lesson`; this module repeats them over
many draws of photos and seeds, trains the from-scratch comparison (:func:`scratch_cnn`)
within a stated time budget, and draws and tabulates the results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np

from helpers.data.photos import Photos
from helpers.model.lesson import split_at, start_at_class_means
from helpers.run import train
from helpers.run.config import Recipe
from helpers.run.prior import times


def scratch_cnn(image_size: int, n_classes: int, width: int = 32, dropout: float = 0.3) -> keras.Model:
    """A small CNN trained from scratch: random flips, three conv blocks, pooling and a softmax.

    Takes raw 0–255 pixels like the transfer models. About 100k weights — the comparison
    point for what pretrained features give for free.
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(x)
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(name=f"maxpool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


class TimeBudget(keras.callbacks.Callback):
    """Stop training at the end of the first epoch that ends after ``seconds`` (and say so in ``.hit``)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.hit = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.hit = True
            self.model.stop_training = True


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    if pixels.shape[1] == size:
        return pixels
    return (
        np.asarray(
            keras.ops.convert_to_numpy(keras.ops.image.resize(pixels.astype("float32"), (size, size), antialias=True))
        )
        .clip(0, 255)
        .astype(np.uint8)
    )


@dataclass
class PhotosResult:
    """Test accuracy of both approaches with ``per_class`` training photos, one value per seed."""

    per_class: int | None
    photos: int
    transfer_accuracy: list[float] = field(default_factory=list)
    transfer_seconds: list[float] = field(default_factory=list)  # its photos' forward pass + the fit
    scratch_accuracy: list[float] = field(default_factory=list)
    scratch_seconds: list[float] = field(default_factory=list)
    scratch_epochs: list[int] = field(default_factory=list)
    scratch_budget_hit: list[bool] = field(default_factory=list)
    scratch_val_accuracy: list[list[float]] = field(default_factory=list)  # per epoch, per scratch run


def estimate_seconds(per_class_list, seeds, scratch_seeds: int, scratch_seconds: float) -> float:
    """An upper bound for :func:`accuracy_vs_photos`: the scratch CNN's time budget dominates."""
    return len(per_class_list) * (min(scratch_seeds, len(seeds)) * (scratch_seconds + 5) + len(seeds) * 3)


def _draw(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` random examples of each class (all of them for ``n=None``)."""
    if n is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]))


def _features(photos: Photos, store, bottom: keras.Model) -> dict[str, np.ndarray]:
    """The features of every photo of each split, from the activation cache (computed at most once).

    One fetch for the three splits, so a notebook shows one line and one progress bar for the photos computed."""
    names = ("train", "val", "test")
    paths = [list(getattr(photos, f"{name}_paths")) for name in names]
    every = store.activations(bottom, [p for part in paths for p in part]).astype("float32")
    return dict(zip(names, np.split(every, np.cumsum([len(part) for part in paths])[:-1])))


@dataclass
class _Heads:
    """``model`` cut at the pooled features, and every photo's features: what each draw's head trains on."""

    model: keras.Model
    bottom: keras.Model
    top: keras.Model
    feats: dict
    photos: Photos

    @classmethod
    def of(cls, photos: Photos, store, model: keras.Model) -> _Heads:
        bottom, top = split_at(model, "pool")
        return cls(model, bottom, top, _features(photos, store, bottom), photos)

    def test_accuracy(self) -> float:
        return _accuracy(self.top, self.feats["test"], self.photos.y_test)

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int, epochs: int, start: str = "class means") -> float:
        """Notebook 05's head recipe: a start, then the package's loop (val chooses the epoch); test accuracy."""
        keras.utils.set_random_seed(seed)
        if start == "class means":
            start_at_class_means(self.model, x, y)
        else:
            dense = self.model.get_layer("predictions")
            kernel = keras.initializers.GlorotUniform(seed)(dense.kernel.shape)
            dense.set_weights([keras.ops.convert_to_numpy(kernel), np.zeros(dense.units, "float32")])
        train.fit(self.top, x, y, Recipe(epochs=epochs), validation=(self.feats["val"], self.photos.y_val))
        return self.test_accuracy()

    def fit_draw(self, rows_of: np.ndarray, seed: int, epochs: int, start: str = "class means") -> float:
        """:meth:`fit` on the drawn training photos ``rows_of``."""
        return self.fit(self.feats["train"][rows_of], self.photos.y_train[rows_of], seed, epochs, start)


def compare_starts(photos: Photos, store, model: keras.Model, per_class: int, seeds, epochs: int = 20) -> str:
    """Random start vs class-means start of ``model``'s head (it must be normalised), same draws: a table."""
    heads = _Heads.of(photos, store, model)
    results: dict[str, list[float]] = {
        "random start, then fit": [],
        "class means, before fit": [],
        "class means, then fit": [],
    }
    for seed in seeds:
        rows_of = _draw(photos.y_train, per_class, seed)
        results["random start, then fit"].append(heads.fit_draw(rows_of, seed, epochs, "random"))
        start_at_class_means(model, heads.feats["train"][rows_of], photos.y_train[rows_of])
        results["class means, before fit"].append(heads.test_accuracy())
        results["class means, then fit"].append(heads.fit_draw(rows_of, seed, epochs))
    lines = [f"{per_class} photo(s) per class, {len(seeds)} draws, test accuracy: mean (worst)"]
    lines += [f"  {name:26s} {np.mean(v):6.1%} ({min(v):.1%})" for name, v in results.items()]
    return "\n".join(lines)


def compare_mirror(
    photos: Photos, store, model: keras.Model, per_class_list, seeds, epochs: int = 20, prior=None
) -> str:
    """The head on the photos alone vs on the photos and their mirror images, same draws: a table.

    Both start at the class means and are fitted (the package's loop, :func:`helpers.run.train.fit`);
    the validation photos choose the epoch, the test photos score. The mirror images' features
    come from :func:`helpers.run.train.mirror_features` (through the cache, as a training run's).
    ``prior``: ImageNet's prior for each test photo (``imagenet_prior_layer``'s output): a third column,
    the second head's probabilities times it (what ``helpers train`` saves), and a last line, the prior alone.
    """
    heads = _Heads.of(photos, store, model)
    draws = {(n, seed): _draw(photos.y_train, n, seed) for n in per_class_list for seed in seeds}
    drawn = sorted(set(np.concatenate(list(draws.values())).tolist()))  # each drawn photo's mirror: one call
    mirrored, _ = train.mirror_features(store.quiet(), heads.bottom, [photos.train_paths[i] for i in drawn])
    mirror_of = dict(zip(drawn, mirrored.astype("float32")))
    columns = ["photos only", "+ mirror images"] + (["x ImageNet prior"] if prior is not None else [])
    lines = [
        f"{'photos per class':>16s}  " + "  ".join(f"{c:>16s}" for c in columns) + "   test accuracy: mean (worst)"
    ]
    for n in per_class_list:
        results: dict[str, list[float]] = {"old": [], "new": []} | ({"prior": []} if prior is not None else {})
        for seed in seeds:
            rows_of = draws[n, seed]
            x, y = heads.feats["train"][rows_of], photos.y_train[rows_of]
            results["old"].append(heads.fit(x, y, seed, epochs))
            both = np.concatenate([x, np.stack([mirror_of[i] for i in rows_of])])
            results["new"].append(heads.fit(both, np.concatenate([y, y]), seed, epochs))
            if prior is not None:  # the second head, times ImageNet's opinion of each test photo
                joint = times(heads.top.predict(heads.feats["test"], verbose=0), prior)
                results["prior"].append(float(np.mean(joint.argmax(-1) == photos.y_test)))
        lines.append(f"{n:16d}  " + "  ".join(f"{np.mean(v):8.1%} ({min(v):5.1%})" for v in results.values()))
        lines[-1] += f"   {len(seeds)} draws: {_mirror_said(results, len(photos.y_test))}"
    if prior is not None:
        alone = np.mean(np.asarray(prior).argmax(-1) == photos.y_test)
        lines.append(f"{'none':>16s}  {'':>16s}  {'':>16s}  {alone:8.1%}            the ImageNet prior alone")
    return "\n".join(lines)


def _mirror_said(results: dict, n_test: int) -> str:
    """In how many draws the mirror images moved the test accuracy by a photo, each way."""
    diffs = np.subtract(results["new"], results["old"])
    better, worse = int(np.sum(diffs >= 0.5 / n_test)), int(np.sum(diffs <= -0.5 / n_test))
    return f"mirror better in {better}, worse in {worse}" if better or worse else "no draw moved by a photo"


@dataclass(frozen=True)
class Scratch:
    """The from-scratch CNN's side of :func:`accuracy_vs_photos`: photo size, epochs, time budget, seeds."""

    size: int = 128
    epochs: int = 60
    seconds: float = 60.0
    seeds: int = 1


def _train_scratch(small: dict, photos: Photos, rows_of: np.ndarray, seed: int, scratch: Scratch, row: PhotosResult):
    """The CNN from scratch on the drawn photos at ``scratch.size`` px, within its time budget; into ``row``."""
    keras.utils.set_random_seed(seed)
    cnn = scratch_cnn(scratch.size, len(photos.class_names))
    budget = TimeBudget(scratch.seconds)
    recipe = Recipe(epochs=scratch.epochs, patience=15, callbacks=(budget,))
    start = time.perf_counter()
    history = train.fit(cnn, small["train"][rows_of], photos.y_train[rows_of], recipe, (small["val"], photos.y_val))
    row.scratch_seconds.append(time.perf_counter() - start)
    row.scratch_accuracy.append(_accuracy(cnn, small["test"], photos.y_test))
    row.scratch_epochs.append(len(history.epoch))
    row.scratch_budget_hit.append(budget.hit)
    row.scratch_val_accuracy.append([float(v) for v in history.history.get("val_accuracy", [])])


def accuracy_vs_photos(
    photos: Photos, store, model: keras.Model, per_class_list, seeds, epochs: int = 20, progress: bool = True, **scratch
) -> list[PhotosResult]:
    """For each N in ``per_class_list`` (None = all) and seed: transfer head vs CNN from scratch.

    The transfer side is notebook 05's lesson: ``split_at(model, "pool")``, the features of
    every photo from the activation cache ``store`` (each photo through the frozen base at
    most once), the head started at the class means (``model`` has normalised features),
    then the package's loop (:func:`helpers.run.train.fit`) on the top. The scratch CNN
    (``scratch_size``, ``scratch_epochs``, ``scratch_seconds``, ``scratch_seeds``: :class:`Scratch`)
    trains on the same photos at ``scratch_size`` px, at most ``scratch_epochs`` epochs or
    ``scratch_seconds`` seconds, on the draws of the first ``scratch_seeds`` seeds. Both are
    scored on the test photos; the validation photos choose the epoch.
    """
    plan = Scratch(**{name.removeprefix("scratch_"): value for name, value in scratch.items()})
    heads = _Heads.of(photos, store, model)
    probe = photos.x_train[:8]
    start = time.perf_counter()
    heads.bottom.predict(probe, verbose=0)
    forward_per_photo = (time.perf_counter() - start) / max(len(probe), 1)
    small = {name: _resize(getattr(photos, f"x_{name}"), plan.size) for name in ("train", "val", "test")}
    rows = []
    for n in per_class_list:
        row = None
        for number, seed in enumerate(seeds):
            rows_of = _draw(photos.y_train, n, seed)
            row = row or PhotosResult(n, len(rows_of))
            start = time.perf_counter()
            row.transfer_accuracy.append(heads.fit_draw(rows_of, seed, epochs))
            row.transfer_seconds.append(time.perf_counter() - start + forward_per_photo * len(rows_of))
            if number < plan.seeds:
                _train_scratch(small, photos, rows_of, seed, plan, row)
        rows.append(row)
        if progress:
            print(describe(row), flush=True)
    return rows


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(-1) == y))


def describe(row: PhotosResult) -> str:
    """One line: mean (worst–best) of each approach, and the scratch CNN's stopping reason."""

    def spread(values):
        return f"{np.mean(values):.1%} ({min(values):.1%}–{max(values):.1%})"

    budget = " (time budget reached)" if any(row.scratch_budget_hit) else ""
    return (
        f"{row.per_class or 'all'} per class ({row.photos} photos), {len(row.transfer_accuracy)} seeds: "
        f"transfer {spread(row.transfer_accuracy)} in {np.mean(row.transfer_seconds):.1f} s; "
        f"from scratch ({len(row.scratch_accuracy)} seed(s)) {spread(row.scratch_accuracy)} "
        f"in {np.mean(row.scratch_seconds):.1f} s, "
        f"{np.mean(row.scratch_epochs):.0f} epochs{budget}"
    )


def time_to_accuracy(rows: list[PhotosResult]) -> str:
    """How many photos and seconds each approach needs to reach the scratch CNN's best mean accuracy."""
    best = max(rows, key=lambda r: np.mean(r.scratch_accuracy))
    target = float(np.mean(best.scratch_accuracy))
    reached = [r for r in rows if np.mean(r.transfer_accuracy) >= target]
    lines = [
        f"from scratch, best mean: {target:.1%} with {best.per_class or 'all'} photos per class "
        f"in {np.mean(best.scratch_seconds):.1f} s"
    ]
    if reached:
        first = reached[0]
        lines.append(
            f"transfer reaches it with {first.per_class or 'all'} photo{'' if first.per_class == 1 else 's'} per class "
            f"in {np.mean(first.transfer_seconds):.1f} s (forward pass included): "
            f"the CNN from scratch took "
            f"{np.mean(best.scratch_seconds) / max(np.mean(first.transfer_seconds), 1e-9):.1f}× as long"
        )
    else:
        lines.append("transfer never reaches it here")
    return "\n".join(lines)


def timing_table(rows: list[tuple]) -> str:
    """``(recipe, total s, forward s, fit s, test accuracy or None, epochs)`` rows, with speed-ups over the first."""
    lines = [
        f"{'recipe':48s} {'total s':>8s} {'forward s':>10s} {'fit s':>7s} {'epochs':>7s} {'test acc':>9s} "
        f"{'speed-up':>9s}"
    ]
    for recipe, total, forward, fit, accuracy, epochs in rows:
        shown = "—" if accuracy is None else f"{accuracy:.1%}"
        lines.append(
            f"{recipe:48s} {total:8.1f} {forward:10.1f} {fit:7.1f} {epochs:7d} {shown:>9s} "
            f"{rows[0][1] / max(total, 1e-9):8.1f}×"
        )
    return "\n".join(lines)


__all__ = [
    "PhotosResult",
    "Scratch",
    "TimeBudget",
    "accuracy_vs_photos",
    "compare_mirror",
    "compare_starts",
    "describe",
    "estimate_seconds",
    "scratch_cnn",
    "time_to_accuracy",
    "timing_table",
]
