"""The bottleneck cache: cut anywhere, train the top on stored activations, never reuse stale ones."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from helpers import cache, surgery, train
from helpers.data import load_folder, load_images

from conftest import make_photo

SIZE = 48
BACKBONE = "mobilenet_v2_0.35"  # cheap; with random weights its deep activations are ~1e-11 (vanishing)
LIVELY = dict(backbone="resnet50", size=32)  # random ResNet50 keeps activations O(1): numbers to compare
CLASSES = ["bear", "lion", "tiger"]


def tiny_model(seed: int = 0, dropout: float = 0.2, backbone: str = BACKBONE, size: int = SIZE) -> keras.Model:
    train.set_seed(seed)
    return surgery.build_classifier(CLASSES, backbone, weights=None, image_size=size, dropout=dropout)


@pytest.fixture
def photos(tiny_photos):
    folder = load_folder(tiny_photos)
    return folder, load_images(folder.train.paths, SIZE), np.asarray(folder.train.labels)


def test_a_model_cut_in_two_computes_the_same_function(photos):
    _, x, _ = photos
    model = tiny_model()
    for cut in ["block_5_add", "block_15_add", cache.head_cut(model)]:
        parts = cache.split_at(model, cut)
        np.testing.assert_allclose(parts.top.predict(parts.bottom.predict(x, verbose=0), verbose=0),
                                   model.predict(x, verbose=0), atol=1e-5)
    assert cache.head_cut(model) == "head_pool"
    assert cache.cut_below(model, "block_16_project_BN") == "block_15_add"
    with pytest.raises(ValueError, match="cut points"):
        cache.split_at(model, "block_5_expand")  # inside a residual block: not a cut


def test_training_above_a_cut_on_cached_activations_equals_training_the_full_model(tiny_photos):
    """Same start, same data: the fine-tuned block + head end up with the same weights either way."""
    folder = load_folder(tiny_photos)
    x, y = load_images(folder.train.paths, LIVELY["size"]), np.asarray(folder.train.labels)
    full, cached = tiny_model(dropout=0.0, **LIVELY), tiny_model(dropout=0.0, **LIVELY)
    cached.set_weights(full.get_weights())
    before = full.get_layer("conv5_block3_3_conv").get_weights()[0].copy()
    for m in (full, cached):
        surgery.freeze(m, fine_tune_from="conv5_block3_out")  # the last residual block + head learn
    cut = cache.cut_below(cached, "conv5_block3_out")
    assert cut == "conv5_block2_out"
    acts = cache.activations(cache.split_at(cached, cut).bottom, x, dtype="float32")
    assert np.abs(acts).mean() > 0.1  # real numbers flow through the cut
    # one batch per epoch, so the order of the photos cannot make a difference
    train.fit(full, x, y, epochs=3, batch_size=len(x), learning_rate=1e-4)
    train.fit_top(cached, cut, acts, y, epochs=3, batch_size=len(x), learning_rate=1e-4)
    assert not np.allclose(full.get_layer("conv5_block3_3_conv").get_weights()[0], before), "the block did not train"
    for a, b in zip(full.get_weights(), cached.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(full.predict(x, verbose=0), cached.predict(x, verbose=0), atol=1e-4)


def test_float16_storage_leaves_accuracy_unchanged(tiny_photos):
    folder = load_folder(tiny_photos)
    size = LIVELY["size"]
    x, y = load_images(folder.train.paths, size), np.asarray(folder.train.labels)
    val_x, val_y = load_images(folder.val.paths, size), np.asarray(folder.val.labels)
    results = {}
    for dtype in ("float32", "float16"):
        model = tiny_model(seed=3, **LIVELY)
        train.train_head(model, x, y, (val_x, val_y), epochs=8, dtype=dtype, seed=3)
        results[dtype] = model.predict(val_x, verbose=0)
    assert not np.allclose(results["float32"], results["float32"].mean(0)), "predictions do not depend on the photo"
    assert (results["float16"].argmax(-1) == val_y).mean() == (results["float32"].argmax(-1) == val_y).mean()
    np.testing.assert_array_equal(results["float16"].argmax(-1), results["float32"].argmax(-1))
    np.testing.assert_allclose(results["float16"], results["float32"], atol=2e-2)


@pytest.mark.shared
def test_float16_storage_leaves_real_accuracy_unchanged(shared_photos, shared_weights_dir):
    """With genuine MobileNetV2 weights and real photos (5 per class), float16 = float32 accuracy."""
    folder = load_folder(shared_photos, per_class=5)
    x, y = load_images(folder.train.paths, 160), np.asarray(folder.train.labels)
    val_x, val_y = load_images(folder.val.paths[::2], 160), np.asarray(folder.val.labels[::2])
    weights = shared_weights_dir / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    accuracy = {}
    for dtype in ("float32", "float16"):
        train.set_seed(0)
        model = surgery.build_classifier(folder.class_names, "mobilenet_v2", str(weights), 160)
        train.train_head(model, x, y, epochs=20, dtype=dtype, seed=0)
        accuracy[dtype] = train.accuracy(model, val_x, val_y)
    assert accuracy["float16"] == accuracy["float32"] >= 0.9, accuracy


def test_the_disk_cache_computes_once_then_reads_back(photos, tmp_path, capsys):
    folder, x, _ = photos
    model = tiny_model()
    bottom = cache.split_at(model, "head_pool").bottom
    store = cache.BottleneckCache(tmp_path / "cache", progress=False)
    first = store.activations(bottom, folder.train.paths)
    assert (store.last.computed, store.last.hits) == (len(x), 0)
    printed = capsys.readouterr().out
    assert "computing 24 activations at head_pool" in printed and "KB" in printed  # size estimate first
    second = store.activations(bottom, folder.train.paths)
    assert (store.last.computed, store.last.hits) == (0, len(x))
    assert first.dtype == np.float16 and first.shape == (len(x), *bottom.output.shape[1:])
    np.testing.assert_array_equal(first, second)
    meta = json.loads((store.last.folder / "meta.json").read_text())
    assert meta["cut"] == "head_pool" and meta["image_size"] == SIZE and meta["dtype"] == "float16"
    stored = sorted(p.name for p in store.last.folder.iterdir())
    assert len([n for n in stored if n.endswith(".npy")]) == len(x)
    assert not [n for n in stored if n.startswith(".")], "temporary files left behind"
    np.load(next(store.last.folder.glob("*.npy")), allow_pickle=False)  # plain arrays, no pickle
    lively = cache.split_at(tiny_model(**LIVELY), "head_pool").bottom  # numbers worth comparing
    from_disk = store.activations(lively, folder.train.paths)
    exact = cache.activations(lively, load_images(folder.train.paths, LIVELY["size"]), dtype="float32")
    assert np.abs(exact).mean() > 0.1
    np.testing.assert_allclose(from_disk, exact, rtol=2e-3, atol=1e-3)


def test_every_key_component_invalidates_the_cache(photos, tmp_path):
    """Backbone, weights, cut point, image size, preprocessing, dtype, photo content: change one → recompute."""
    folder, x, _ = photos
    paths = folder.train.paths[:4]
    store = cache.BottleneckCache(tmp_path / "cache", progress=False)

    def computed(bottom, store=store, paths=paths, **kw) -> int:
        store.activations(bottom, paths, **kw)
        return store.last.computed

    model = tiny_model()
    base = cache.split_at(model, "head_pool").bottom
    assert computed(base) == 4 and computed(base) == 0
    # the same architecture and weights built again is the same key (layer names don't matter)
    rebuilt = tiny_model()
    assert computed(cache.split_at(rebuilt, "head_pool").bottom) == 0
    # backbone
    assert computed(cache.split_at(tiny_model(backbone="mobilenet_0.25"), "head_pool").bottom) == 4
    # weights: different values; and a weights *file* rewritten in place at the same path
    other = tiny_model(seed=1)
    assert computed(cache.split_at(other, "head_pool").bottom) == 4
    wfile = tmp_path / "w.weights.h5"
    model.save_weights(wfile)
    reloaded = tiny_model(seed=5)
    reloaded.load_weights(wfile)
    assert computed(cache.split_at(reloaded, "head_pool").bottom) == 0  # same values as `model`
    tiny_model(seed=2).save_weights(wfile)  # new values, same path
    reloaded.load_weights(wfile)
    assert computed(cache.split_at(reloaded, "head_pool").bottom) == 4
    # cut point
    assert computed(cache.split_at(model, "block_15_add").bottom) == 4
    # image size
    assert computed(cache.split_at(tiny_model(size=64), "head_pool").bottom) == 4
    # preprocessing: the same network behind a different preprocessing layer
    swapped = keras.models.clone_model(
        model, clone_function=lambda layer: keras.layers.Rescaling(1 / 255.0, name=layer.name)
        if layer.name == "preprocess" else layer.__class__.from_config(layer.get_config()))
    swapped.set_weights(model.get_weights())
    assert computed(cache.split_at(swapped, "head_pool").bottom) == 4
    # storage dtype
    assert computed(base, store=cache.BottleneckCache(tmp_path / "cache", dtype="float32", progress=False)) == 4
    # one photo's content changes (same name, same folder): only that one is recomputed
    make_photo(paths[0], (0, 0, 0), seed=99)
    assert computed(base) == 1
    # augmented copies are their own entries, fixed by the seed
    assert computed(base, augment_copies=1, seed=0) == 4
    assert computed(base, augment_copies=1, seed=0) == 0
    assert computed(base, augment_copies=1, seed=1) == 4


def test_augmented_copies_are_different_views_and_repeatable(photos, tmp_path):
    folder, _, _ = photos
    bottom = cache.split_at(tiny_model(**LIVELY), "head_pool").bottom
    paths = folder.train.paths[:3]
    a = cache.BottleneckCache(tmp_path / "a", progress=False).activations(bottom, paths, augment_copies=2, seed=4)
    b = cache.BottleneckCache(tmp_path / "b", progress=False).activations(bottom, paths, augment_copies=2, seed=4)
    assert a.shape[0] == 9
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:3], a[3:6]) and not np.allclose(a[3:6], a[6:])


def test_train_classifier_uses_the_disk_cache_on_the_second_run(tiny_photos, tmp_path):
    kw = dict(backbone=BACKBONE, weights=None, image_size=SIZE, epochs=2, fine_tune_from="block_16_project_BN",
              fine_tune_epochs=1, cache_dir=tmp_path / "cache")
    first = train.train_classifier(tiny_photos, tmp_path / "run1", **kw)
    second = train.train_classifier(tiny_photos, tmp_path / "run2", **kw)
    assert first["phases"]["fine_tune"]["cut"] == "block_15_add"
    assert first["val_accuracy"] == second["val_accuracy"]
    for phase in ("head", "fine_tune"):
        assert first["phases"][phase]["cache_computed"] == 36 and first["phases"][phase]["cache_hits"] == 0
        assert second["phases"][phase]["cache_computed"] == 0 and second["phases"][phase]["cache_hits"] == 36
    folders = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert folders == ["block_15_add", "head_pool"]
