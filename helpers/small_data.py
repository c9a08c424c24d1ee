"""Small data, short time: transfer versus a CNN from scratch, cached versus plain (notebook 05).

Two measured claims:

(a) :func:`accuracy_vs_photos` — with N photos per class (1, 2, 5, 10, 20, all) a head on a
    pretrained backbone is already accurate, while a small CNN trained from scratch
    (:func:`scratch_cnn`) on the same photos is not;
(b) :func:`time_head_training` — training the head on cached features costs about one
    forward pass; the plain Keras recipe pays that forward pass in every epoch.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from . import cache, data, surgery, train


def scratch_cnn(image_size: int, n_classes: int, width: int = 32, dropout: float = 0.3) -> keras.Model:
    """A small CNN trained from scratch: three conv blocks, pooling and a softmax.

    Takes raw 0–255 pixels like the workbook's backbones. About 100k weights — the
    comparison point for what pretrained features give for free.
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


def train_scratch(x: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray], n_classes: int,
                  epochs: int = 60, batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0) -> dict:
    """Train :func:`scratch_cnn` on ``x`` (random flips as augmentation); return accuracy and time."""
    train.set_seed(seed)
    model = scratch_cnn(x.shape[1], n_classes)
    flip = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.RandomFlip("horizontal", seed=seed)])
    augmented = keras.Model(flip.inputs, model(flip.outputs[0]))
    train.compile_model(augmented, learning_rate)
    start = time.perf_counter()
    augmented.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    return {"val_accuracy": train.accuracy(model, *val, batch_size=batch_size), "seconds": seconds,
            "weights": int(model.count_params())}


@dataclass
class PhotosResult:
    """Validation accuracy of both approaches with ``per_class`` training photos of each class."""

    per_class: int | None
    photos: int
    transfer_accuracy: float
    transfer_seconds: float
    scratch_accuracy: float
    scratch_seconds: float


def accuracy_vs_photos(folder: data.ImageFolder, per_class_list, backbone: str, weights, image_size: int,
                       epochs: int = 30, scratch_size: int = 128, scratch_epochs: int = 60, seed: int = 0,
                       val_per_class: int | None = None, progress: bool = True) -> list[PhotosResult]:
    """For each N in ``per_class_list`` (None = all): transfer head vs CNN from scratch, same photos.

    The backbone's pooled features are computed ONCE for all training photos (the
    bottleneck cache, in memory); each N then trains a fresh head on its subset.
    """
    val_split = data.sample_per_class(folder.val, val_per_class, seed) if val_per_class else folder.val
    val_y = np.asarray(val_split.labels, np.int32)
    train.set_seed(seed)
    model = surgery.build_classifier(folder.class_names, backbone, weights, image_size)
    start_weights = model.get_weights()
    bottom = cache.split_at(model, cache.head_cut(model)).bottom
    features = cache.activations(bottom, data.load_images(folder.train.paths, image_size))
    val_features = cache.activations(bottom, data.load_images(val_split.paths, image_size))
    small_train = data.load_images(folder.train.paths, scratch_size)
    small_val = data.load_images(val_split.paths, scratch_size)
    index = {p: i for i, p in enumerate(folder.train.paths)}
    rows = []
    for n in per_class_list:
        subset = data.sample_per_class(folder.train, n, seed) if n else folder.train
        rows_of = np.asarray([index[p] for p in subset.paths])
        y = np.asarray(subset.labels, np.int32)
        model.set_weights(start_weights)
        train.set_seed(seed)
        surgery.freeze(model)
        head = train.fit_top(model, "head_pool", features[rows_of], y, epochs=epochs, seed=seed)
        top = cache.split_at(model, "head_pool").top
        transfer = float(np.mean(np.asarray(top.predict(val_features, verbose=0)).argmax(-1) == val_y))
        scratch = train_scratch(small_train[rows_of], y, (small_val, val_y), len(folder.class_names),
                                epochs=scratch_epochs, seed=seed)
        rows.append(PhotosResult(n, len(y), transfer, head.seconds, scratch["val_accuracy"], scratch["seconds"]))
        if progress:
            print(f"{n or 'all'} per class ({len(y)} photos): transfer {transfer:.1%} in {head.seconds:.1f} s, "
                  f"from scratch {scratch['val_accuracy']:.1%} in {scratch['seconds']:.1f} s", flush=True)
    return rows


def plot_accuracy_vs_photos(rows: list[PhotosResult], n_classes: int, backbone: str = "pretrained backbone"):
    """Validation accuracy against photos per class, both approaches, on a log axis."""
    import matplotlib.pyplot as plt

    xs = [r.per_class or r.photos / n_classes for r in rows]
    labels = [str(r.per_class) if r.per_class else f"all\n({r.photos // n_classes})" for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, [r.transfer_accuracy for r in rows], "o-", label=f"transfer ({backbone} + new head)")
    ax.plot(xs, [r.scratch_accuracy for r in rows], "s--", label="small CNN from scratch")
    ax.axhline(1 / n_classes, color="grey", lw=0.8, ls=":", label=f"guessing ({n_classes} classes)")
    ax.set_xscale("log")
    ax.set_xticks(xs, labels)
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training photos per class")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@dataclass
class TimingRow:
    """One way of training the head: its wall time and the accuracy it reached."""

    recipe: str
    seconds: float
    forward_seconds: float
    fit_seconds: float
    val_accuracy: float


def time_head_training(folder: data.ImageFolder, backbone: str, weights, image_size: int, epochs: int,
                       seed: int = 0, batch_size: int = 32) -> list[TimingRow]:
    """Train the same head twice on the same photos: plain Keras recipe, then on cached features."""
    arrays = train.load_arrays(folder, image_size)
    (x, y), val = arrays["train"], arrays["val"]
    rows = []
    for recipe, use_cache in (("plain: frozen base inside fit (Keras guide)", False),
                              ("cached: forward pass once, fit the head on features", True)):
        train.set_seed(seed)
        model = surgery.build_classifier(folder.class_names, backbone, weights, image_size)
        model.predict(x[:batch_size], verbose=0)  # same start for both: graph built, weights loaded
        result = train.train_head(model, x, y, epochs=epochs, cache=use_cache, batch_size=batch_size,
                                  **({"seed": seed} if use_cache else {}))
        forward = result.extra.get("activation_seconds", 0.0)
        rows.append(TimingRow(recipe, result.seconds, forward, result.seconds - forward,
                              train.accuracy(model, *val, batch_size=batch_size)))
    return rows


def timing_table(rows: list[TimingRow]) -> str:
    """The timing rows as a plain-text table, with the speed-up of each row over the first."""
    lines = [f"{'recipe':52s} {'total s':>8s} {'forward s':>10s} {'fit s':>7s} {'val acc':>8s} {'speed-up':>9s}"]
    for r in rows:
        lines.append(f"{r.recipe:52s} {r.seconds:8.1f} {r.forward_seconds:10.1f} {r.fit_seconds:7.1f} "
                     f"{r.val_accuracy:8.1%} {rows[0].seconds / r.seconds:8.1f}×")
    return "\n".join(lines)


def as_dicts(rows) -> list[dict]:
    """Rows as plain dicts (for JSON or pandas)."""
    return [asdict(r) for r in rows]
