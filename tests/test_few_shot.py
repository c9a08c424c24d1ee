"""The few-shot head (helpers.few_shot): plain Keras, prototype start, and its measured claim.

The claim (N=5 photos per class -> >= 99% mean val accuracy) needs the real photos and
MobileNetV2 weights (``WORKBOOK_DATA``, ``WORKBOOK_WEIGHTS_DIR``); without them it skips.
Features are computed once per session, only for the photos the test draws plus val/.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import few_shot

SEEDS = (0, 1, 2)
PER_CLASS = 5
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def _clusters(n_per_class: int, n_classes: int = 3, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n_classes, dim)) * 4
    x = np.concatenate([np.abs(c + rng.normal(0, 0.3, (n_per_class, dim))) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_classes), n_per_class)


def test_class_means_start_is_nearest_mean_classifier():
    x, y = _clusters(4)
    head = few_shot.build_head(x.shape[1], 3, per_class=4)
    few_shot.init_from_class_means(head, x, y)
    means = few_shot.class_means(x, y, 3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_array_equal(head.predict(x, verbose=0).argmax(1), (unit @ means.T).argmax(1))
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 1.0, rtol=1e-5)


def test_fit_head_is_plain_keras(tmp_path):
    import keras

    x, y = _clusters(5)
    head = few_shot.build_head(x.shape[1], 3, per_class=5)
    history = few_shot.fit_head(head, x, y, per_class=5, seed=0, epochs=3)
    assert len(history.history["loss"]) == 3
    assert head.evaluate(x, y, verbose=0)[1] == 1.0
    head.save(tmp_path / "head.keras")
    again = keras.saving.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), head.predict(x, verbose=0), atol=1e-6)


def test_every_class_needs_a_photo():
    x, y = _clusters(2)
    with pytest.raises(ValueError, match="class"):
        few_shot.class_means(x[y != 1], y[y != 1], 3)


# ---------------------------------------------------------------- the measured claim, on real material


def _listing(root, split, class_names):
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = sorted(p for p in (root / split / name).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels)


def _draw(labels, n, seed):
    """As benchmarks/few_shot.py draws: N random rows per class with numpy default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False)
                           for c in range(int(labels.max()) + 1)])


@pytest.fixture(scope="session")
def real_features(shared_photos, shared_weights_dir):
    """Pooled MobileNetV2 features (224×224 centre crops) of the drawn train photos and all of val/."""
    import keras

    from helpers.data import load_images

    class_names = sorted(p.name for p in (shared_photos / "train").iterdir() if p.is_dir())
    train_paths, train_labels = _listing(shared_photos, "train", class_names)
    val_paths, val_labels = _listing(shared_photos, "val", class_names)
    needed = sorted(set(np.concatenate([_draw(train_labels, PER_CLASS, s) for s in SEEDS]).tolist()))
    model = keras.applications.MobileNetV2(include_top=False, weights=str(shared_weights_dir / MOBILENET_V2_FILE),
                                           input_shape=(224, 224, 3), pooling="avg")

    def features(paths):
        return model.predict(load_images(paths, 224).astype(np.float32) / 127.5 - 1.0, batch_size=64, verbose=0)

    train = np.zeros((len(train_paths), model.output.shape[-1]), np.float32)
    train[needed] = features([train_paths[i] for i in needed])
    return train, train_labels, features(val_paths), val_labels, len(class_names)


@pytest.mark.shared
def test_five_photos_per_class_reach_99_percent(real_features):
    train, train_labels, val, val_labels, n_classes = real_features
    accs = []
    for seed in SEEDS:
        rows = _draw(train_labels, PER_CLASS, seed)
        head = few_shot.build_head(train.shape[1], n_classes, PER_CLASS)
        few_shot.fit_head(head, train[rows], train_labels[rows], PER_CLASS, seed)
        accs.append(float(np.mean(head.predict(val, verbose=0).argmax(1) == val_labels)))
    assert np.mean(accs) >= 0.99, accs
    assert min(accs) >= 0.95, accs
