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
from helpers.model.lesson import TimesPrior, compile_model, fit_keep_best, split_at, start_at_class_means


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
    """The features of every photo of each split, from the activation cache (computed at most once)."""
    return {
        name: store.activations(bottom, getattr(photos, f"{name}_paths")).astype("float32")
        for name in ("train", "val", "test")
    }


def _fit_head(
    top: keras.Model,
    model: keras.Model,
    feats: dict,
    photos: Photos,
    rows_of: np.ndarray,
    seed: int,
    epochs: int,
    start: str = "class means",
) -> float:
    """Notebook 05's head recipe on one draw: a start, ``compile_model`` + ``fit_keep_best``; test accuracy."""
    keras.utils.set_random_seed(seed)
    y = photos.y_train[rows_of]
    if start == "class means":
        start_at_class_means(model, feats["train"][rows_of], y)
    else:
        dense = model.get_layer("predictions")
        kernel = keras.initializers.GlorotUniform(seed)(dense.kernel.shape)
        dense.set_weights([keras.ops.convert_to_numpy(kernel), np.zeros(dense.units, "float32")])
    compile_model(top, 1e-3)
    fit_keep_best(top, feats["train"][rows_of], y, (feats["val"], photos.y_val), epochs)
    return _accuracy(top, feats["test"], photos.y_test)


def compare_starts(photos: Photos, store, model: keras.Model, per_class: int, seeds, epochs: int = 20) -> str:
    """Random start vs class-means start of ``model``'s head (it must be normalised), same draws: a table."""
    bottom, top = split_at(model, "pool")
    feats = _features(photos, store, bottom)
    results: dict[str, list[float]] = {
        "random start, then fit": [],
        "class means, before fit": [],
        "class means, then fit": [],
    }
    for seed in seeds:
        rows_of = _draw(photos.y_train, per_class, seed)
        results["random start, then fit"].append(_fit_head(top, model, feats, photos, rows_of, seed, epochs, "random"))
        start_at_class_means(model, feats["train"][rows_of], photos.y_train[rows_of])
        results["class means, before fit"].append(_accuracy(top, feats["test"], photos.y_test))
        results["class means, then fit"].append(_fit_head(top, model, feats, photos, rows_of, seed, epochs))
    lines = [f"{per_class} photo(s) per class, {len(seeds)} draws, test accuracy: mean (worst)"]
    lines += [f"  {name:26s} {np.mean(v):6.1%} ({min(v):.1%})" for name, v in results.items()]
    return "\n".join(lines)


def mirrored_copies(paths, folder) -> list:
    """Each photo's mirror image (left-right), written once as a lossless PNG into ``folder``.

    As files, the mirror images go through the activation cache like any photo: computed once,
    read back on the next run.
    """
    from pathlib import Path

    from PIL import Image, ImageOps

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


def compare_mirror(
    photos: Photos, store, model: keras.Model, per_class_list, seeds, epochs: int = 20, folder=None, prior=None
):
    """The head on the photos alone vs on the photos and their mirror images, same draws: a table.

    Both start at the class means and are fitted (``compile_model`` + ``fit_keep_best``); the
    validation photos choose the epoch, the test photos score. ``folder`` keeps the mirror images
    (default: a temporary folder; the same photo's mirror is the same file, so the cache still serves it).
    ``prior``: ImageNet's prior for each test photo (``imagenet_prior_layer``'s output): a third column,
    the second head's probabilities times it (``TimesPrior``, what ``helpers train`` saves), and a last
    line, the prior alone.
    """
    import tempfile

    if folder is None:
        with tempfile.TemporaryDirectory() as tmp:
            return compare_mirror(photos, store, model, per_class_list, seeds, epochs, tmp, prior)
    bottom, top = split_at(model, "pool")
    feats = _features(photos, store, bottom)
    draws = {(n, seed): _draw(photos.y_train, n, seed) for n in per_class_list for seed in seeds}
    drawn = sorted(set(np.concatenate(list(draws.values())).tolist()))  # each drawn photo's mirror: one call
    copies = mirrored_copies([photos.train_paths[i] for i in drawn], folder)
    mirror_of = dict(zip(drawn, store.activations(bottom, copies).astype("float32")))
    columns = ["photos only", "+ mirror images"] + (["x ImageNet prior"] if prior is not None else [])
    header = f"{'photos per class':>16s}  " + "  ".join(f"{c:>16s}" for c in columns)
    lines = [header + "   test accuracy: mean (worst)"]
    for n in per_class_list:
        results: dict[str, list[float]] = {"old": [], "new": []} | ({"prior": []} if prior is not None else {})
        for seed in seeds:
            rows_of = draws[n, seed]
            y = photos.y_train[rows_of]
            mirrored = np.stack([mirror_of[i] for i in rows_of])
            for key, x, labels in (
                ("old", feats["train"][rows_of], y),
                ("new", np.concatenate([feats["train"][rows_of], mirrored]), np.concatenate([y, y])),
            ):
                keras.utils.set_random_seed(seed)
                start_at_class_means(model, x, labels)
                compile_model(top, 1e-3)
                fit_keep_best(top, x, labels, (feats["val"], photos.y_val), epochs)
                results[key].append(_accuracy(top, feats["test"], photos.y_test))
            if prior is not None:  # the second head, times ImageNet's opinion of each test photo
                joint = TimesPrior()([top.predict(feats["test"], verbose=0).astype("float32"), prior])
                results["prior"].append(float(np.mean(np.asarray(joint).argmax(-1) == photos.y_test)))
        one_photo = 1 / len(photos.y_test)
        diffs = np.subtract(results["new"], results["old"])
        better, worse = int(np.sum(diffs >= one_photo / 2)), int(np.sum(diffs <= -one_photo / 2))
        said = f"mirror better in {better}, worse in {worse}" if better or worse else "no draw moved by a photo"
        lines.append(
            f"{n:16d}  "
            + "  ".join(f"{np.mean(v):8.1%} ({min(v):5.1%})" for v in results.values())
            + f"   {len(seeds)} draws: {said}"
        )
    if prior is not None:
        alone = np.mean(np.asarray(prior).argmax(-1) == photos.y_test)
        lines.append(f"{'none':>16s}  {'':>16s}  {'':>16s}  {alone:8.1%}            the ImageNet prior alone")
    return "\n".join(lines)


def accuracy_vs_photos(
    photos: Photos,
    store,
    model: keras.Model,
    per_class_list,
    seeds,
    epochs: int = 20,
    scratch_size: int = 128,
    scratch_epochs: int = 60,
    scratch_seconds: float = 60.0,
    scratch_seeds: int = 1,
    progress: bool = True,
) -> list[PhotosResult]:
    """For each N in ``per_class_list`` (None = all) and seed: transfer head vs CNN from scratch.

    The transfer side is notebook 05's lesson: ``split_at(model, "pool")``, the features of
    every photo from the activation cache ``store`` (each photo through the frozen base at
    most once), the head started at the class means (``model`` has normalised features),
    then ``compile_model`` + ``fit_keep_best`` on the top. The scratch CNN trains on the same
    photos at ``scratch_size`` px, at most ``scratch_epochs`` epochs or ``scratch_seconds``
    seconds, on the draws of the first ``scratch_seeds`` seeds. Both are scored on the test
    photos; the validation photos choose the epoch.
    """
    bottom, top = split_at(model, "pool")
    feats = _features(photos, store, bottom)
    probe = photos.x_train[:8]
    start = time.perf_counter()
    bottom.predict(probe, verbose=0)
    forward_per_photo = (time.perf_counter() - start) / max(len(probe), 1)
    small = {name: _resize(getattr(photos, f"x_{name}"), scratch_size) for name in ("train", "val", "test")}
    rows = []
    for n in per_class_list:
        row = None
        for number, seed in enumerate(seeds):
            rows_of = _draw(photos.y_train, n, seed)
            y = photos.y_train[rows_of]
            row = row or PhotosResult(n, len(rows_of))
            start = time.perf_counter()
            row.transfer_accuracy.append(_fit_head(top, model, feats, photos, rows_of, seed, epochs))
            row.transfer_seconds.append(time.perf_counter() - start + forward_per_photo * len(rows_of))
            if number >= scratch_seeds:
                continue
            keras.utils.set_random_seed(seed)
            scratch = compile_model(scratch_cnn(scratch_size, len(photos.class_names)), 1e-3)
            budget = TimeBudget(scratch_seconds)
            start = time.perf_counter()
            history = fit_keep_best(
                scratch,
                small["train"][rows_of],
                y,
                (small["val"], photos.y_val),
                scratch_epochs,
                patience=15,
                callbacks=[budget],
            )
            row.scratch_seconds.append(time.perf_counter() - start)
            row.scratch_accuracy.append(_accuracy(scratch, small["test"], photos.y_test))
            row.scratch_epochs.append(len(history.epoch))
            row.scratch_budget_hit.append(budget.hit)
            row.scratch_val_accuracy.append([float(v) for v in history.history.get("val_accuracy", [])])
        rows.append(row)
        if progress:
            print(describe(row), flush=True)
    from helpers.tools.book import record

    for row in (rows[0], rows[-1]) if rows else ():  # fewest and most photos: notebook 05's key numbers
        n = f"{row.per_class}_per_class" if row.per_class else "all_photos"
        record(**{f"transfer_accuracy_{n}": float(np.mean(row.transfer_accuracy))})
        if row.scratch_accuracy:
            record(**{f"scratch_accuracy_{n}": float(np.mean(row.scratch_accuracy))})
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


def plot_accuracy_vs_photos(rows: list[PhotosResult], n_classes: int, backbone: str = "pretrained base"):
    """Test accuracy against photos per class: mean over seeds, worst-to-best band, log axis.

    A pyplot figure, as the other plots of the notebooks: Jupyter shows it at the end of the cell
    (notebook 05 ends the call with ``;``), so it is in the executed notebook and in the book.
    """
    import matplotlib.pyplot as plt

    from helpers.show import plots

    xs = [r.per_class or r.photos / n_classes for r in rows]
    labels = [str(r.per_class) if r.per_class else f"all\n({r.photos // n_classes})" for r in rows]
    fig = plt.figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for key, style, label in (
        ("transfer_accuracy", "o-", f"transfer ({backbone} + new head)"),
        ("scratch_accuracy", "s--", "small CNN from scratch"),
    ):
        values = [getattr(r, key) for r in rows]
        (line,) = ax.plot(xs, [np.mean(v) for v in values], style, label=label)
        ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.15)
    ax.axhline(1 / n_classes, color="grey", lw=0.8, ls=":", label=f"guessing ({n_classes} classes)")
    ax.set_xscale("log")
    ax.set_xticks(xs, labels)
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training photos per class")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.show(fig)


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
            f"transfer reaches it with {first.per_class or 'all'} photos per class "
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
    "TimeBudget",
    "accuracy_vs_photos",
    "compare_mirror",
    "compare_starts",
    "describe",
    "estimate_seconds",
    "mirrored_copies",
    "plot_accuracy_vs_photos",
    "scratch_cnn",
    "time_to_accuracy",
    "timing_table",
]
