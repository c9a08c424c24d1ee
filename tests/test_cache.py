"""The activation cache: store what the frozen part computes, read it back checked, never reuse stale ones.

(Cutting a model and training above the cut are tested in test_cuts.py and test_train.py.)
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import make_photo

from helpers.data.folders import load_folder, load_images
from helpers.model import cuts
from helpers.model.lesson import split_at
from helpers.run import train
from helpers.store import cache, counting, passes

SIZE = 48
BACKBONE = "mobilenet_v2_0.35"  # cheap; with random weights its deep activations are ~1e-11 (vanishing)
LIVELY = dict(backbone="resnet50", size=32)  # random ResNet50 keeps activations O(1): numbers to compare
CLASSES = ["bear", "lion", "tiger"]


def tiny_model(seed: int = 0, dropout: float = 0.2, backbone: str = BACKBONE, size: int = SIZE) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return train.build_classifier(CLASSES, backbone, weights=None, image_size=size, dropout=dropout)


def pooled(model: keras.Model) -> keras.Model:
    """The bottom of ``model`` cut at its pooled features (notebook 05's ``split_at``)."""
    return split_at(model, "pool")[0]


@pytest.fixture(scope="module")
def lively_bottom() -> keras.Model:
    """``pooled(tiny_model(**LIVELY))``, built once for the tests that only read it (a random ResNet50)."""
    return pooled(tiny_model(**LIVELY))


@pytest.fixture
def photos(tiny_photos):
    folder = load_folder(tiny_photos)
    return folder, load_images(folder.train.paths, SIZE), np.asarray(folder.train.labels)


def test_float16_storage_leaves_accuracy_unchanged(tiny_photos):
    folder = load_folder(tiny_photos)
    val_x, val_y = load_images(folder.val.paths, LIVELY["size"]), np.asarray(folder.val.labels)
    results = {}
    for dtype in ("float32", "float16"):
        model = tiny_model(seed=3, **LIVELY)
        store = cache.BottleneckCache(tiny_photos.parent / f"cache-{dtype}", dtype=dtype, progress=False)
        train.train_phase(model, folder.train, folder.val, train.Recipe(epochs=8, seed=3, cache=store), "pool")
        results[dtype] = model.predict(val_x, verbose=0)
    assert not np.allclose(results["float32"], results["float32"].mean(0)), "predictions do not depend on the photo"
    assert (results["float16"].argmax(-1) == val_y).mean() == (results["float32"].argmax(-1) == val_y).mean()
    np.testing.assert_array_equal(results["float16"].argmax(-1), results["float32"].argmax(-1))
    np.testing.assert_allclose(results["float16"], results["float32"], atol=2e-2)


@pytest.mark.shared
def test_float16_storage_leaves_real_accuracy_unchanged(shared_photos, shared_weights_dir, tmp_path):
    """With genuine MobileNetV2 weights and real photos (5 per class, 96 px), float16 = float32 accuracy."""
    folder = load_folder(shared_photos, per_class=5)
    weights = shared_weights_dir / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    accuracy = {}
    for dtype in ("float32", "float16"):
        store = cache.BottleneckCache(tmp_path / dtype, dtype=dtype, progress=False)
        keras.utils.set_random_seed(0)
        model = train.build_classifier(folder.class_names, "mobilenet_v2", str(weights), 96)
        recipe = train.Recipe(epochs=20, seed=0, cache=store)
        train.train_phase(model, folder.train, folder.val, recipe, "pool")
        accuracy[dtype] = train.accuracy(model, folder.val, train.Recipe(cache=None))  # whole model, pixels
    assert accuracy["float16"] == accuracy["float32"] >= 0.9, accuracy


def test_the_disk_cache_computes_once_then_reads_back(photos, lively_bottom, tmp_path, capsys):
    folder, x, _ = photos
    model = tiny_model()
    bottom = pooled(model)
    store = cache.BottleneckCache(tmp_path / "cache")
    first, stats = store.fetch(bottom, folder.train.paths)
    assert (stats.computed, stats.hits) == (len(x), 0)
    printed = capsys.readouterr().out
    assert "computing 24 activations at pool" in printed and "KB" in printed  # size estimate first
    quiet, computed = cache.BottleneckCache(tmp_path / "other").quiet().fetch(bottom, folder.train.paths[:2])
    assert computed.computed == len(quiet) == 2 and capsys.readouterr() == ("", "")  # a loop's store says nothing
    second, again = store.fetch(bottom, folder.train.paths)
    assert (again.computed, again.hits) == (0, len(x))
    assert first.dtype == np.float16 and first.shape == (len(x), *bottom.output.shape[1:])
    np.testing.assert_array_equal(first, second)
    meta = json.loads((stats.folder / "meta.json").read_text())
    assert meta["cut"] == "pool" and meta["image_size"] == SIZE and meta["dtype"] == "float16"
    stored = sorted(p.name for p in stats.folder.iterdir())
    assert len([n for n in stored if n.endswith(".npy")]) == len(x)
    assert not [n for n in stored if n.startswith(".")], "temporary files left behind"
    np.load(next(stats.folder.glob("*.npy")), allow_pickle=False)  # plain arrays, no pickle
    lively = lively_bottom  # numbers worth comparing
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
        return store.fetch(bottom, paths, **kw)[1].computed

    model = tiny_model()
    base = pooled(model)
    assert computed(base) == 4 and computed(base) == 0
    # the same architecture and weights built again is the same key (layer names don't matter)
    rebuilt = tiny_model()
    assert computed(pooled(rebuilt)) == 0
    # backbone
    assert computed(pooled(tiny_model(backbone="mobilenet_0.25"))) == 4
    # weights: different values; and a weights *file* rewritten in place at the same path
    other = tiny_model(seed=1)
    assert computed(pooled(other)) == 4
    wfile = tmp_path / "w.weights.h5"
    model.save_weights(wfile)
    reloaded = tiny_model(seed=5)
    reloaded.load_weights(wfile)
    assert computed(pooled(reloaded)) == 0  # same values as `model`
    tiny_model(seed=2).save_weights(wfile)  # new values, same path
    reloaded.load_weights(wfile)
    assert computed(pooled(reloaded)) == 4
    # cut point (not block_15_add: the checkpoint, stored in the same pass as the pooled features)
    assert computed(cuts.split_at(model, "block_14_add").bottom) == 4
    # image size
    assert computed(pooled(tiny_model(size=64))) == 4
    # preprocessing: the same network behind a different preprocessing layer
    swapped = keras.models.clone_model(
        model,
        clone_function=lambda layer: (
            keras.layers.Rescaling(1 / 255.0, name=layer.name)
            if layer.name == "preprocess"
            else layer.__class__.from_config(layer.get_config())
        ),
    )
    swapped.set_weights(model.get_weights())
    assert computed(pooled(swapped)) == 4
    # storage dtype
    assert computed(base, store=cache.BottleneckCache(tmp_path / "cache", dtype="float32", progress=False)) == 4
    # one photo's content changes (same name, same folder): only that one is recomputed
    make_photo(paths[0], (0, 0, 0), seed=99)
    assert computed(base) == 1
    # augmented copies are their own entries, fixed by the seed
    assert computed(base, augment_copies=1, seed=0) == 4
    assert computed(base, augment_copies=1, seed=0) == 0
    assert computed(base, augment_copies=1, seed=1) == 4


def test_the_pooled_pass_keeps_the_checkpoint_and_fine_tuning_reads_it(photos, tmp_path, monkeypatch, capsys):
    """One pass per photo: pixels → checkpoint (stored) → pool; fine-tuning above the checkpoint reads it."""
    folder, _, _ = photos
    paths = folder.train.paths[:6]
    log = tmp_path / "passes.jsonl"
    monkeypatch.setenv(passes.LOG_ENV, str(log))
    model = tiny_model(**LIVELY)  # random ResNet50: activations O(1), worth comparing
    bottom = pooled(model)
    store = cache.BottleneckCache(tmp_path / "cache")
    checkpoint = cuts.resolve_block(cuts.base_of(model), cache.CHECKPOINT_BLOCKS)
    assert store.checkpoint_for(bottom).name == checkpoint == "conv5_block1_out"
    features, stats = store.fetch(bottom, paths)
    assert (stats.computed, stats.continued, stats.hits) == (6, 6, 0)
    printed = capsys.readouterr().out
    assert "computing 6 activations at pool ((2048,) float16, 4.0 KB each)" in printed
    assert f"on from their activations at {checkpoint} (stored as well" in printed
    assert printed.count("bottleneck cache: computing") == 1  # one line for the one pass, not one per level
    # the pooled features went on from float16 activations at the checkpoint: still the model's own
    exact = bottom.predict(load_images(paths, LIVELY["size"]), verbose=0)
    assert np.abs(exact).mean() > 0.1
    np.testing.assert_allclose(features, exact, rtol=1e-2, atol=1e-2)
    # fine-tuning the top two blocks: its bottom is the checkpoint, read back, nothing computed
    train.freeze_for(model, cache.CHECKPOINT_BLOCKS)
    fine = cuts.split_at(model, checkpoint)
    below, again = store.fetch(fine.bottom, paths)
    assert (again.computed, again.hits) == (0, 6)
    pixels = load_images(paths, LIVELY["size"])
    np.testing.assert_allclose(fine.top.predict(below, verbose=0), model.predict(pixels, verbose=0), atol=1e-2)
    # counted once per photo through the frozen part; the rest of the pass is counted apart
    [network] = passes.totals(log)
    assert (network["distinct"], network["computed"]) == (6, 6)
    kinds = {e["kind"]: e["computed"] for e in passes.summarise(log)}
    assert kinds == {
        f"frozen, up to {checkpoint}": 6,
        "frozen, up to pool": 0,
        f"{passes.CONTINUED_PREFIX} {checkpoint}, up to pool": 6,
    }
    # a damaged checkpoint entry is named and recomputed, never used
    entry = next(again.folder.glob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:100])
    for p in stats.folder.glob("*.npy"):
        p.unlink()
    np.testing.assert_allclose(store.activations(bottom, paths), features, rtol=1e-2, atol=1e-2)
    assert "is damaged" in capsys.readouterr().err
    # checkpoint=None keeps only the cut asked for
    only = cache.BottleneckCache(tmp_path / "only", progress=False, checkpoint=None)
    assert only.checkpoint_for(bottom) is None and only.fetch(bottom, paths)[1].continued == 0
    assert [f.meta["cut"] for f in only.folders()] == ["pool"]


def test_augmented_copies_are_different_views_and_repeatable(photos, lively_bottom, tmp_path):
    folder, _, _ = photos
    bottom = lively_bottom
    paths = folder.train.paths[:3]
    a = cache.BottleneckCache(tmp_path / "a", progress=False).activations(bottom, paths, augment_copies=2, seed=4)
    b = cache.BottleneckCache(tmp_path / "b", progress=False).activations(bottom, paths, augment_copies=2, seed=4)
    assert a.shape[0] == 9
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:3], a[3:6]) and not np.allclose(a[3:6], a[6:])


def test_train_classifier_uses_the_disk_cache_on_the_second_run(tiny_photos, tmp_path):
    kw = dict(
        backbone=BACKBONE,
        weights=None,
        image_size=SIZE,
        epochs=2,
        fine_tune_from="block_16_project_BN",
        fine_tune_epochs=1,
        cache_dir=tmp_path / "cache",
    )
    first = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "run1")
    second = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "run2")
    assert first["phases"]["fine_tune"]["cut"] == "block_15_add"
    assert first["val_accuracy"] == second["val_accuracy"]
    n = first["n_train"] + first["n_val"]
    head, tune = first["phases"]["head"], first["phases"]["fine_tune"]
    # the head's pass stored the activations below the fine-tuned block as well: fine-tuning read them
    assert head["cache_computed"] == head["cache_continued"] == n and head["cache_hits"] == 0
    assert tune["cache_computed"] == 0 and tune["cache_hits"] == n
    for phase in ("head", "fine_tune"):
        assert second["phases"][phase]["cache_computed"] == 0 and second["phases"][phase]["cache_hits"] == n
    folders = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert folders == ["block_15_add", "pool"]


def test_the_cut_travels_as_an_object_never_read_from_a_model_name(tiny_photos, tmp_path):
    """A model whose name looks like a split's half is not taken for one; a real half says where it ends."""
    paths = sorted(tiny_photos.rglob("*.jpg"))[:2]
    model = tiny_model()
    lookalike = keras.Model(model.input, model.get_layer("pool").output, name="net_below_block_3_add")
    store = cache.BottleneckCache(tmp_path, progress=False, checkpoint=None)
    assert store.folder_for(lookalike).name.startswith("pool-")  # its last layer, not its name
    part = cuts.split_at(model, "block_14_add")
    assert part.point == cuts.CutPoint(cuts.base_of(model).name, "block_14_add", inside=True)
    assert store.folder_for(part).name.startswith("block_14_add-") and cuts.cut_point(part.bottom) == part.point
    np.testing.assert_array_equal(store.activations(part, paths), store.activations(part.bottom, paths))
    assert counting.network_key(part.bottom)["backbone"] == cuts.base_of(model).name
    assert counting.frozen_base(part.top) is None and counting.frozen_base(model) is cuts.base_of(model)
    lower = cuts.split_at(part.bottom, "block_12_add")  # a half cut again still belongs to the whole base
    assert lower.point == cuts.CutPoint(cuts.base_of(model).name, "block_12_add", inside=True)


class _SeenBatches(keras.layers.Layer):
    """Passes its input on and notes the batch size it was called (or traced) with."""

    def __init__(self, seen: list, **kwargs):
        super().__init__(**kwargs)
        self.note = seen.append  # a list attribute would be Keras' tracked copy

    def call(self, x):
        self.note(x.shape[0])
        return x


def _sizes(seen: list) -> set[int]:
    """The batch sizes a network was run (or traced) with; a symbolic build's open size left out."""
    return {size for size in seen if isinstance(size, int)}


def test_a_short_batch_is_padded_so_the_network_only_ever_sees_full_batches():
    """``compute.forward(pad=True)`` (the store's default under JAX, where each batch shape compiles anew): the
    network runs whole batches only, and the rows that come out are those of the photos alone. Under TensorFlow
    and PyTorch the store runs a short batch as it is."""
    from helpers.store import compute

    seen: list = []
    inputs = keras.Input((SIZE, SIZE, 3))
    x = _SeenBatches(seen)(inputs)
    probe = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x)))
    pixels = np.random.default_rng(0).uniform(0, 1, (5, SIZE, SIZE, 3)).astype("float32")
    seen.clear()  # what building the model noted
    rows = compute.forward(probe, pixels, batch_size=8, pad=True)
    assert _sizes(seen) == {8}, seen  # never the short batch's 5
    assert rows.shape == (5, 4)
    expected = probe.predict(pixels, verbose=0)  # Keras keeps its own trace for predict()
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
    seen.clear()
    np.testing.assert_allclose(compute.forward(probe, pixels, batch_size=8), expected, rtol=1e-5, atol=1e-6)
    # the default: under JAX padded, so the compiled step is reused (nothing traced again); TensorFlow traces
    # once more with the batch size left open (None), PyTorch runs the 5 rows
    assert (seen == []) == (keras.backend.backend() == "jax"), seen
