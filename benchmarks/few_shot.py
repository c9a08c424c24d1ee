"""Few-shot head recipes on MobileNetV2 pooled features: mean and worst accuracy per N, on two held-out sets.

    python benchmarks/few_shot.py --data ../shared/data/lion-tiger-bear \\
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 \\
        --seeds 10 --n 1,2,5,10 --features-cache /tmp/few_shot_features.npz \\
        --draw workbook --engine numpy --methods old,mirror,mirror+tta,tta,means,means+mirror,12views --json out.json

The backbone runs ONCE per photo and view (224×224 centre crop as ``load_images`` gives it,
its mirror image, and the four corner + centre 224 crops of a 256 resize with their
mirrors); the pooled features of the last block (``out_relu``, 1280) and of two earlier
cut points are stored in ``--features-cache``. Every recipe then trains on stored
features only.

For each seed, N photos per class are a random sample of train/ drawn with
``numpy.random.default_rng(seed)``, or with ``--draw workbook`` what
``python -m helpers train --per-class N --seed S`` trains on (``helpers.data.folders.sample_per_class``).
Every head is scored on all of val/ and, as a second held-out set, on the train/ photos not
drawn for that seed (centre crops; "flip TTA" averages them with their mirror). The recipes are
chosen by the mean and worst over the seeds of that table: model selection on val/, said as
such; the held-out train photos check that the choice carries over. ``--methods`` picks recipes
by short name (``old``: notebook 05's class-means start + fit on the photos; ``mirror``: the
same on each photo and its mirror image, what ``python -m helpers train`` does with up to 10
photos per class); ``--engine numpy`` runs the same recipes in numpy (seconds instead of an
hour on a busy CPU); ``--json`` keeps every seed's accuracies; ``--train`` measures the
command itself; ``--cut-points`` adds two cut points' features side by side.

What ImageNet already knows (issue 19): the ``*prior`` recipes multiply the head's probabilities by an
ImageNet prior — MobileNet 0.25 WITH its top (``--prior-weights``, default ``$WORKBOOK_WEIGHTS_DIR/``
``mobilenet_2_5_224_tf.h5``), its probability mass on the ImageNet classes related to each of ours
(``helpers.model.lesson.imagenet_prior_layer``, ``TimesPrior``: what ``helpers train`` saves); ``prior`` is that
prior alone. ``--two-backbones`` runs the recipes again on MobileNetV2 + MobileNet 0.25 pooled features side
by side. Its table, with every recipe over 10 seeds (about 5 minutes on a busy 2-core CPU, the features
stored once)::

    python benchmarks/few_shot.py --data ../shared/data/lion-tiger-bear \\
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 \\
        --features-cache /tmp/fs-feats.npz --seeds 10 --n 1,2,5,10 --draw workbook --engine numpy \\
        --methods old,mirror,tta,mirror+tta,12views,12views+tta,means,means+mirror,means+mirror+tta,prior,\\
    means+mirror+prior,mirror+prior,mirror+tta+prior,12views+tta+prior --two-backbones
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE = 224
BIG = 256  # corner/centre crops of 224 are taken from this resize
VIEWS = ["centre", "centre_flip"] + [f"{c}{f}" for c in ("c256", "tl", "tr", "bl", "br") for f in ("", "_flip")]
LAYERS = {"top": "out_relu", "b16": "block_16_project_BN", "b13": "block_13_expand_relu"}
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def list_split(root: Path, split: str, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = sorted(p for p in (root / split / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, np.int32)


def views_of(paths: list[Path]) -> dict[str, np.ndarray]:
    """Every view in ``VIEWS`` of these photos, as uint8 arrays."""
    from helpers.data.folders import load_images

    centre = load_images(paths, SIZE)
    big = load_images(paths, BIG)
    m = BIG - SIZE
    crops = {
        "c256": big[:, m // 2 : m // 2 + SIZE, m // 2 : m // 2 + SIZE],
        "tl": big[:, :SIZE, :SIZE],
        "tr": big[:, :SIZE, m:],
        "bl": big[:, m:, :SIZE],
        "br": big[:, m:, m:],
    }
    out = {"centre": centre, "centre_flip": centre[:, :, ::-1]}
    for name, crop in crops.items():
        out[name] = crop
        out[name + "_flip"] = crop[:, :, ::-1]
    return out


def extractor(weights: str):
    """MobileNetV2 (ImageNet weights, no top) -> pooled features at each cut point in LAYERS."""
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=weights, input_shape=(SIZE, SIZE, 3))
    pooled = [keras.layers.GlobalAveragePooling2D()(base.get_layer(name).output) for name in LAYERS.values()]
    return keras.Model(base.input, pooled)


def compute_features(data: Path, weights: str, views: list[str] = VIEWS, batch: int = 64) -> dict:
    """Pooled features of every photo of train/ and val/ (train: all views; val: centre views)."""
    class_names = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    model = extractor(weights)
    out: dict = {"class_names": np.asarray(class_names), "views": np.asarray(views)}
    for split, split_views in (("train", views), ("val", [v for v in views if v.startswith("centre")])):
        paths, labels = list_split(data, split, class_names)
        out[f"{split}_labels"] = labels
        out[f"{split}_names"] = np.asarray([p.name for p in paths])
        imgs = views_of(paths)
        for key in LAYERS:
            out[f"{split}_{key}"] = np.zeros(
                (len(views), len(paths), model.output[list(LAYERS).index(key)].shape[-1]), np.float32
            )
        for v in split_views:
            x = imgs[v].astype(np.float32) / 127.5 - 1.0
            feats = model.predict(x, batch_size=batch, verbose=0)
            for key, f in zip(LAYERS, feats):
                out[f"{split}_{key}"][views.index(v)] = f
            print(f"  features: {split} {v} done", flush=True)
    return out


PRIOR_FILE = "mobilenet_2_5_224_tf.h5"  # MobileNet 0.25 WITH its ImageNet top: the only full classifier here


def compute_prior_features(data: Path, prior_weights: str, batch: int = 64) -> dict:
    """MobileNet 0.25's ImageNet probabilities (1000) and pooled features (256), centre and mirror view.

    The probabilities give the ImageNet prior (``helpers.model.lesson.imagenet_prior``: the mass of the ImageNet
    classes related to each of ours); the pooled features are a second backbone's, to put beside MobileNetV2's.
    """
    import keras

    classifier = keras.applications.MobileNet(alpha=0.25, include_top=True, weights=prior_weights)
    pooled = next(layer for layer in classifier.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    model = keras.Model(classifier.input, [classifier.output, keras.layers.Flatten()(pooled.output)])
    class_names = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    out = {}
    for split in ("train", "val"):
        paths, _ = list_split(data, split, class_names)
        imgs = views_of(paths)
        probs, feats = zip(
            *(model.predict(imgs[v].astype(np.float32) / 127.5 - 1.0, batch_size=batch, verbose=0) for v in VIEWS[:2])
        )
        out[f"{split}_imagenet"], out[f"{split}_mn025"] = np.stack(probs), np.stack(feats)
        print(f"  prior features: {split} done", flush=True)
    return out


def load_or_compute(cache: Path | None, data: Path | None, weights: str | None) -> dict:
    """The stored features if ``cache`` holds them for these photos, else computed (and stored)."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            feats = {k: z[k] for k in z.files}
        if data is None or [p.name for p in list_split(data, "train", list(feats["class_names"]))[0]] == list(
            feats["train_names"]
        ):
            return feats
        print(f"{cache} was computed for other photos: computing again", flush=True)
    if data is None or weights is None:
        raise SystemExit("no stored features: pass --data and --weights")
    start = time.perf_counter()
    feats = compute_features(data, weights)
    print(f"features computed in {time.perf_counter() - start:.0f} s", flush=True)
    if cache is not None:
        with open(cache, "wb") as f:  # the name as given (np.savez would add .npz)
            np.savez(f, **feats)
    return feats


# ---------------------------------------------------------------- head recipes
# Each recipe: (train features by view (V, n, d), labels (n,), val features by view, per_class, seed)
# -> val probabilities (m, n_classes). Views: 0 = centre, 1 = its mirror, 2.. = crops (VIEWS).


def _default_head(n_features: int, n_classes: int):
    import keras

    inputs = keras.Input((n_features,))
    x = keras.layers.Dropout(0.2)(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))


def _fit(model, x, y, epochs: int, lr: float, batch: int, seed: int):
    """The package's one training loop (``helpers.run.train.fit``): these epochs, no validation."""
    import keras

    from helpers.run import train

    keras.utils.set_random_seed(seed)
    train.fit(model, x, y, train.Recipe(learning_rate=lr, epochs=epochs, batch_size=batch))
    return model


def _stack(train, views):
    """Rows of several views, one after the other (labels repeat with ``np.tile``)."""
    return train[views].reshape(-1, train.shape[-1])


def recipe_default(train, y, val, n, seed, views=(0,), epochs=30, lr=1e-3, batch=32):
    import keras

    keras.utils.set_random_seed(seed)
    model = _fit(
        _default_head(train.shape[-1], N_CLASSES),
        _stack(train, list(views)),
        np.tile(y, len(views)),
        epochs,
        lr,
        batch,
        seed,
    )
    return model.predict(val[0], verbose=0)


def recipe_unit_dense(train, y, val, n, seed, epochs=100, lr=1e-2):
    """UnitNormalization -> Dropout -> Dense, random start, trained longer and faster."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((train.shape[-1],))
    x = keras.layers.Dropout(0.2)(keras.layers.UnitNormalization()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(N_CLASSES, activation="softmax")(x))
    return _fit(model, train[0], y, epochs, lr, 32, seed).predict(val[0], verbose=0)


def _normalised_head(n_features: int):
    """The top of ``add_head(..., normalize=True)`` (notebooks 02 and 05) on pooled features."""
    import keras

    inputs = keras.Input((n_features,))
    x = keras.layers.Dropout(0.2)(keras.layers.UnitNormalization(name="l2")(inputs))
    return keras.Model(inputs, keras.layers.Dense(N_CLASSES, activation="softmax", name="predictions")(x))


def with_prior(p: np.ndarray, prior: np.ndarray | None, tta: bool) -> np.ndarray:
    """The head's probabilities times the ImageNet prior (centre view, or centre and mirror averaged),
    renormalised: ``helpers.model.lesson.TimesPrior``, the layer ``add_imagenet_prior`` puts on the saved model."""
    if prior is None:
        return p
    from helpers.model.lesson import TimesPrior

    q = (prior[0] + prior[1]) / 2 if tta else prior[0]
    return np.asarray(TimesPrior()([p.astype("float32"), q.astype("float32")]))


def recipe_few_shot(train, y, val, n, seed, views=(0,), epochs=30, tta=False, prior=None):
    """Notebook 05's ``start_at_class_means`` then ``fit`` (epochs=0: the class means alone); ``prior``: times
    the ImageNet prior of each query (``helpers.model.lesson.combine_with_prior``)."""
    import keras

    from helpers.model.lesson import start_at_class_means

    keras.utils.set_random_seed(seed)
    head = _normalised_head(train.shape[-1])
    x, yy = _stack(train, list(views)), np.tile(y, len(views))
    start_at_class_means(head, x, yy)
    if epochs:
        _fit(head, x, yy, epochs, 1e-3, 32, seed)
    p = head.predict(val[0], verbose=0)
    return with_prior((p + head.predict(val[1], verbose=0)) / 2 if tta else p, prior, tta)


def default_train(data: Path, weights: str, ns: list[int], seeds: int, image_size: int = 224) -> list[str]:
    """The real default ``python -m helpers train`` (MobileNetV2, head only) for each N and seed.

    It draws its own N photos per class (``--per-class N --seed S``), chooses the epoch on its
    validation half and reports val and test halves: both are scored here, together.
    """
    import tempfile

    from helpers.run import train

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            accs = []
            for seed in range(seeds):
                config = train.RunConfig(
                    data,
                    backbone="mobilenet_v2",
                    weights=weights,
                    per_class=n,
                    image_size=image_size,
                    seed=seed,
                    cache_dir=Path(tmp) / "cache",
                )
                m = train.train_classifier(config, Path(tmp) / f"n{n}s{seed}")
                accs.append(
                    (m["val_accuracy"] * m["n_val"] + m["test_accuracy"] * m["n_test"]) / (m["n_val"] + m["n_test"])
                )
            lines.append(
                f"helpers train (default head)  N={n:3d}  mean {np.mean(accs):6.1%}  worst {min(accs):6.1%}  "
                f"best {max(accs):6.1%}  ({seeds} seeds)"
            )
            print(lines[-1], flush=True)
    return lines


N_CLASSES = 3
SPLITS = ("train", "val")
RECIPES = {
    "default: Dropout+Dense, Adam 1e-3, 30 ep": lambda *a: recipe_default(*a),
    "default, 12 crop/flip views": lambda *a: recipe_default(*a, views=range(len(VIEWS))),
    "default, 100 ep, lr 1e-2": lambda *a: recipe_default(*a, epochs=100, lr=1e-2),
    "UnitNorm+Dense random init, lr 1e-2, 100 ep": lambda *a: recipe_unit_dense(*a),
}
# The class-means recipes, by their options; the Keras engine (RECIPES) and the numpy one (NUMPY_RECIPES) share them.
FEW_SHOT_OPTIONS = {
    "class means only (no fit)": {"epochs": 0},
    "class means only, + mirror views": {"views": (0, 1), "epochs": 0},
    "OLD: class means + fit 30 ep": {},
    "RECOMMENDED: class means + fit, + mirror views": {"views": (0, 1)},
    "class means + fit, + mirror views, flip TTA": {"views": (0, 1), "tta": True},
    "class means + fit, flip TTA at val only": {"tta": True},
    "class means + fit, 12 crop/flip views": {"views": range(len(VIEWS))},
    "class means + fit, 12 crop/flip views, flip TTA": {"views": range(len(VIEWS)), "tta": True},
    "class means only, + mirror views, flip TTA": {"views": (0, 1), "epochs": 0, "tta": True},
}
# These multiply the head's probabilities by the ImageNet prior (MobileNet 0.25's top: PRIOR_FILE).
PRIOR_OPTIONS = {
    "ImageNet prior alone (MobileNet 0.25 top)": {"views": (0, 1), "epochs": 0, "prior_alone": True},
    "class means only, + mirror views, x prior": {"views": (0, 1), "epochs": 0},
    "RECOMMENDED + mirror views, x ImageNet prior": {"views": (0, 1)},
    "class means + fit, + mirror, flip TTA, x prior": {"views": (0, 1), "tta": True},
    "class means + fit, 12 views, flip TTA, x prior": {"views": range(len(VIEWS)), "tta": True},
}
RECIPES.update({name: functools.partial(recipe_few_shot, **kw) for name, kw in FEW_SHOT_OPTIONS.items()})


def _prior_alone(train, y, val, n, seed, views=(0,), epochs=0, tta=False, prior=None):
    """The ImageNet prior on its own: no photo of ours learnt from (the same for every N and seed)."""
    return with_prior(np.full((val.shape[1], N_CLASSES), 1.0 / N_CLASSES), prior, tta)


def _prior_recipe(recipe, prior_alone=False, **kw):
    return functools.partial(_prior_alone if prior_alone else recipe, **kw)


RECIPES.update({name: _prior_recipe(recipe_few_shot, **kw) for name, kw in PRIOR_OPTIONS.items()})
# --methods picks these by a short name
SHORT = {
    "random": "default: Dropout+Dense, Adam 1e-3, 30 ep",
    "means": "class means only (no fit)",
    "means+mirror": "class means only, + mirror views",
    "old": "OLD: class means + fit 30 ep",
    "mirror": "RECOMMENDED: class means + fit, + mirror views",
    "mirror+tta": "class means + fit, + mirror views, flip TTA",
    "tta": "class means + fit, flip TTA at val only",
    "12views": "class means + fit, 12 crop/flip views",
    "12views+tta": "class means + fit, 12 crop/flip views, flip TTA",
    "means+mirror+tta": "class means only, + mirror views, flip TTA",
    "prior": "ImageNet prior alone (MobileNet 0.25 top)",
    "means+mirror+prior": "class means only, + mirror views, x prior",
    "mirror+prior": "RECOMMENDED + mirror views, x ImageNet prior",
    "mirror+tta+prior": "class means + fit, + mirror, flip TTA, x prior",
    "12views+tta+prior": "class means + fit, 12 views, flip TTA, x prior",
}


# ---------------------------------------------------------------- the same recipes in numpy (--engine numpy)
# Keras needs seconds per fit to build, compile and trace; on a busy CPU a 10-seed table of several
# recipes takes an hour. These repeat the recipes above in numpy — the class-means start of
# ``start_at_class_means``, then Adam (lr 1e-3, batch 32) on the softmax cross-entropy with dropout 0.2
# on the unit features — with their own random dropout masks and shuffles: the same recipe, not the same
# random numbers (tests/test_few_shot.py checks that both engines agree).


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_few_shot(
    train, y, val, n, seed, views=(0,), epochs=30, tta=False, prior=None, lr=1e-3, batch=32, dropout=0.2, scale=30.0
):
    """``recipe_few_shot`` in numpy: class means start, then ``epochs`` of Adam on the normalised head."""
    rng = np.random.default_rng(seed)
    u = _unit(_stack(train, list(views)))
    yy = np.tile(y, len(views))
    means = _unit(np.stack([u[yy == c].mean(0) for c in range(N_CLASSES)]))
    w, b = scale * means.T, np.zeros(N_CLASSES)
    onehot = np.eye(N_CLASSES)[yy]
    moments = [[np.zeros_like(w), np.zeros_like(w)], [np.zeros_like(b), np.zeros_like(b)]]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(u))
        for start in range(0, len(u), batch):
            rows = order[start : start + batch]
            x = u[rows] * (rng.random(u[rows].shape) >= dropout) / (1 - dropout)
            g = (_softmax(x @ w + b) - onehot[rows]) / len(rows)
            step += 1
            for param, grad, (m, v) in ((w, x.T @ g, moments[0]), (b, g.sum(0), moments[1])):
                m += (1 - 0.9) * (grad - m)
                v += (1 - 0.999) * (grad * grad - v)
                param -= lr * np.sqrt(1 - 0.999**step) / (1 - 0.9**step) * m / (np.sqrt(v) + 1e-7)
    p = _softmax(_unit(val[0]) @ w + b)
    return with_prior((p + _softmax(_unit(val[1]) @ w + b)) / 2 if tta else p, prior, tta)


NUMPY_RECIPES = {name: functools.partial(np_few_shot, **kw) for name, kw in FEW_SHOT_OPTIONS.items()}
NUMPY_RECIPES.update({name: _prior_recipe(np_few_shot, **kw) for name, kw in PRIOR_OPTIONS.items()})


def draw(labels: np.ndarray, n: int, seed: int, names: np.ndarray | None = None) -> np.ndarray:
    """N random train rows per class for this seed (numpy default_rng(seed)).

    With ``names`` (``--draw workbook``): the photos ``helpers.data.folders.sample_per_class`` picks,
    i.e. what ``python -m helpers train --per-class N --seed S`` trains on.
    """
    if names is not None:
        from helpers.data.folders import Split, sample_per_class

        split = Split([Path(str(v)) for v in names], [int(v) for v in labels])
        row = {str(v): i for i, v in enumerate(names)}
        return np.asarray([row[p.name] for p in sample_per_class(split, n, seed).paths])
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in range(int(labels.max()) + 1)]
    )


def concat_layers(feats: dict, split: str, keys: list[str]) -> np.ndarray:
    """Features of several cut points side by side, each L2-normalised first."""
    parts = [
        feats[f"{split}_{k}"] / np.maximum(np.linalg.norm(feats[f"{split}_{k}"], axis=-1, keepdims=True), 1e-12)
        for k in keys
    ]
    return np.concatenate(parts, axis=-1)


def measure(
    feats: dict,
    names: list[str],
    ns: list[int],
    seeds: int,
    draw_kind: str = "rng",
    inputs=None,
    engine: str = "keras",
    progress: bool = True,
) -> list[dict]:
    """Each recipe in ``names`` × N × seed: accuracy on all val/ photos and on the train/ photos not drawn.

    One row per (features, recipe, N) with per-seed accuracies on both held-out sets.
    """
    global N_CLASSES
    N_CLASSES = len(feats["class_names"])
    ytr, yva = feats["train_labels"], feats["val_labels"]
    inputs = inputs or {"top": (feats["train_top"], feats["val_top"])}
    priors = None
    if any(name in PRIOR_OPTIONS for name in names):
        from helpers.model.imagenet import related_rows
        from helpers.model.lesson import imagenet_prior_layer

        layer = imagenet_prior_layer(related_rows([str(c) for c in feats["class_names"]]))  # ImageNet's -> ours
        priors = {split: np.stack([np.asarray(layer(p)) for p in feats[f"{split}_imagenet"]]) for split in SPLITS}
    rows_out = []
    for feature_name, (train, val) in inputs.items():
        for name in names:
            label = name if feature_name == "top" else f"{name} [{feature_name}]"
            options = {**FEW_SHOT_OPTIONS, **PRIOR_OPTIONS}.get(name, {})
            if max(options.get("views", (0,))) >= train.shape[0]:
                continue  # these features have fewer views than the recipe takes
            for n in ns:
                row = {"recipe": label, "n": n, "engine": engine, "val": [], "held_out_train": [], "seconds": []}
                for seed in range(seeds):
                    rows = draw(ytr, n, seed, feats["train_names"] if draw_kind == "workbook" else None)
                    rest = np.setdiff1d(np.arange(len(ytr)), rows)
                    queries = np.concatenate([val[:, :], train[:, rest]], axis=1)  # both held-out sets at once
                    start = time.perf_counter()
                    recipe = NUMPY_RECIPES[name] if engine == "numpy" else RECIPES[name]
                    if name in PRIOR_OPTIONS:
                        prior = np.concatenate([priors["val"], priors["train"][:, rest]], axis=1)
                        probs = recipe(train[:, rows], ytr[rows], queries, n, seed, prior=prior)
                    else:
                        probs = recipe(train[:, rows], ytr[rows], queries, n, seed)
                    row["seconds"].append(time.perf_counter() - start)
                    right = np.argmax(probs, -1) == np.concatenate([yva, ytr[rest]])
                    row["val"].append(float(np.mean(right[: len(yva)])))
                    row["held_out_train"].append(float(np.mean(right[len(yva) :])))
                if progress:
                    print(format_row(row), flush=True)
                rows_out.append(row)
    return rows_out


HEADER = (
    f"{'recipe':48s} {'N':>3s} | {'val mean':>8s} {'worst':>6s} | {'held-out train mean':>19s} {'worst':>6s} | "
    f"{'s/fit':>5s}"
)


def format_row(row: dict) -> str:
    v, t = row["val"], row["held_out_train"]
    return (
        f"{row['recipe'][:48]:48s} {row['n']:3d} | {np.mean(v):8.1%} {min(v):6.1%} | {np.mean(t):19.1%} "
        f"{min(t):6.1%} | {np.mean(row['seconds']):5.1f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=os.environ.get("WORKBOOK_DATA"))
    p.add_argument("--weights", help="MobileNetV2 1.0 no-top .h5 file (not needed once features are stored)")
    p.add_argument("--seeds", type=int, default=10, help="random draws per N (seeds 0..S-1)")
    p.add_argument("--n", default="1,2,5,10", help="photos per class, comma-separated")
    p.add_argument("--features-cache", type=Path, help="npz of stored features (computed if missing)")
    p.add_argument(
        "--draw",
        choices=["rng", "workbook"],
        default="rng",
        help="rng: numpy default_rng(seed) sample; workbook: helpers.data.folders.sample_per_class (the CLI's)",
    )
    p.add_argument("--only", help="run only recipes whose name contains one of these ';'-separated words")
    p.add_argument("--methods", help=f"comma-separated short names, in order: {', '.join(SHORT)}")
    p.add_argument(
        "--engine",
        choices=["keras", "numpy"],
        default="keras",
        help="keras: the lesson's layers and fit; numpy: the same recipes in numpy, seconds instead of an hour",
    )
    p.add_argument("--json", type=Path, help="also write the per-seed accuracies of every row here")
    p.add_argument(
        "--train",
        action="store_true",
        help="measure the real default `python -m helpers train` for each N and seed (needs --weights)",
    )
    p.add_argument(
        "--prior-weights",
        help=f"MobileNet 0.25 WITH its ImageNet top (default: {PRIOR_FILE} in $WORKBOOK_WEIGHTS_DIR); for the "
        "prior recipes and --two-backbones, computed once into --features-cache",
    )
    p.add_argument(
        "--two-backbones",
        action="store_true",
        help="also: the recipes on MobileNetV2 + MobileNet 0.25 pooled features side by side (centre and mirror)",
    )
    p.add_argument(
        "--cut-points",
        action="store_true",
        help="also: the recommended head on block_16_project_BN + out_relu features side by side",
    )
    args = p.parse_args()
    if args.train:
        default_train(Path(args.data), args.weights, [int(v) for v in args.n.split(",")], args.seeds)
        return 0
    if args.methods:
        unknown = [m for m in args.methods.split(",") if m not in SHORT]
        if unknown:
            p.error(f"unknown --methods {unknown}: choose from {', '.join(SHORT)}")
        names = [SHORT[m] for m in args.methods.split(",")]
    else:
        names = [r for r in RECIPES if not args.only or any(o in r for o in args.only.split(";"))]
    feats = load_or_compute(args.features_cache, Path(args.data) if args.data else None, args.weights)
    if (args.two_backbones or any(name in PRIOR_OPTIONS for name in names)) and "train_imagenet" not in feats:
        weights = args.prior_weights or os.path.join(os.environ.get("WORKBOOK_WEIGHTS_DIR", ""), PRIOR_FILE)
        if args.data is None or not os.path.isfile(weights):
            raise SystemExit(f"the prior recipes need --data and MobileNet 0.25 with its top ({weights} is missing)")
        feats.update(compute_prior_features(Path(args.data), weights))
        if args.features_cache is not None:
            with open(args.features_cache, "wb") as f:
                np.savez(f, **feats)
    inputs = {"top": (feats["train_top"], feats["val_top"])}
    if args.two_backbones:
        inputs["v2+mn025"] = tuple(
            np.concatenate([_unit(feats[f"{split}_top"][:2]), _unit(feats[f"{split}_mn025"])], axis=-1)
            for split in SPLITS
        )
    if args.cut_points:
        keys = ["b16", "top"]
        inputs["b16+top"] = (concat_layers(feats, "train", keys), concat_layers(feats, "val", keys))
    ns = [int(v) for v in args.n.split(",")]
    print(
        f"{len(feats['train_labels'])} train / {len(feats['val_labels'])} val photos, "
        f"{len(feats['class_names'])} classes; seeds 0..{args.seeds - 1} ({args.draw} draw); accuracy on all "
        "val/ photos and on the train/ photos not drawn for the seed (centre crops; TTA adds their mirror)\n"
    )
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    if args.engine == "numpy" and any(name not in NUMPY_RECIPES for name in names):
        p.error(
            f"--engine numpy has these recipes only: {', '.join(k for k, v in SHORT.items() if v in NUMPY_RECIPES)}"
        )
    rows = measure(feats, names, ns, args.seeds, args.draw, inputs, args.engine)
    if args.json:
        args.json.write_text(
            json.dumps({"draw": args.draw, "seeds": args.seeds, "engine": args.engine, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
