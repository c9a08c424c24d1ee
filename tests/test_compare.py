"""Comparing backbones (notebook 07): same head, same photos; skipped backbones say why."""

from __future__ import annotations

import json
import socket

import keras.src.applications.mobilenet as mobilenet_module  # noqa: TID251 - the test points the weight URL at a dead address
import keras.src.applications.resnet as resnet_module  # noqa: TID251 - as above
import pytest

from helpers.run import compare


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No local weights and a download URL on a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(resnet_module, "BASE_WEIGHTS_PATH", dead)
    monkeypatch.setattr(mobilenet_module, "BASE_WEIGHT_PATH", dead)
    return dead


def test_every_backbone_is_measured_or_skipped_with_its_reason(
    tiny_photos, random_backbone_weights, offline, monkeypatch, tmp_path
):
    monkeypatch.delenv("WORKBOOK_WEIGHTS_DIR", raising=False)
    setting = compare.Setting(
        weights=str(random_backbone_weights), image_size=48, epochs=3, cache_dir=tmp_path / "cache"
    )
    measured = compare.compare_backbones(["mobilenet_v2_0.35"], tiny_photos, setting, progress=False)
    skipped = compare.compare_backbones(
        ["resnet50", "mobilenet_0.25", "no_such_net"],
        tiny_photos,
        compare.Setting(weights="imagenet", image_size=48, cache_dir=tmp_path / "cache"),
        out=tmp_path,
        progress=False,
    )
    row = measured[0]
    assert row.ok and 0.0 <= row.test_accuracy <= 1.0
    assert row.parameters == 410_208 + 1280 * 3 + 3  # the base plus a 3-class softmax head
    assert row.file_mb > 1.0 and row.inference_ms > 0 and row.train_seconds > 0 and row.feature_seconds > 0
    assert [r.status for r in skipped] == ["skipped"] * 3
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in skipped[0].reason
    assert "mobilenet_2_5_224_tf_no_top.h5" in skipped[1].reason
    assert "unknown backbone" in skipped[2].reason
    saved = json.loads((tmp_path / compare.RESULTS_FILE).read_text())
    assert [r["backbone"] for r in saved] == ["resnet50", "mobilenet_0.25", "no_such_net"]
    table = compare.results_table(measured + skipped)
    assert table.splitlines()[2].startswith("| mobilenet_v2_0.35 | ok | 48 |")
    assert table.count("| skipped |") == 3


def test_the_head_trained_on_features_is_the_head_of_the_whole_model(
    tiny_photos, random_backbone_weights, tmp_path, monkeypatch
):
    """Accuracy measured on stored features equals the whole model's accuracy on the photos."""
    import numpy as np

    from helpers.data import folders as data
    from helpers.data import photos
    from helpers.run import train
    from helpers.store import cache, passes

    log = tmp_path / "passes.jsonl"  # what each call computed, as the notebook runner counts it
    monkeypatch.setenv(passes.LOG_ENV, str(log))
    folder = data.load_folder(tiny_photos)
    parts = photos.splits(folder)
    model = train.build_classifier(folder.class_names, "mobilenet_v2_0.35", str(random_backbone_weights), 48)
    before = model.get_layer("predictions").get_weights()[0].copy()
    recipe = train.Recipe(epochs=5, seed=0, cache=cache.BottleneckCache(tmp_path, progress=False))
    accuracy, feature_seconds, train_seconds = compare.train_head_cached(model, parts, recipe)
    assert not np.array_equal(before, model.get_layer("predictions").get_weights()[0])  # it trained
    whole = model.predict(data.load_images(parts["test"].paths, 48).astype("float32"), verbose=0)
    assert accuracy == pytest.approx(float(np.mean(whole.argmax(1) == np.asarray(parts["test"].labels))))
    assert feature_seconds > 0 and train_seconds > 0
    first = log.read_text().splitlines()
    assert sum(json.loads(line)["computed"] for line in first) > 0
    again = compare.train_head_cached(model, parts, recipe)  # the features come from the cache now
    second = log.read_text().splitlines()[len(first) :]
    assert second and all(json.loads(line)["computed"] == 0 for line in second), second
    assert 0.0 <= again[0] <= 1.0


def test_real_backbones_with_the_shared_weights(shared_weights_dir, shared_photos, offline, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    setting = compare.Setting(image_size=96, epochs=10, cache_dir=tmp_path / "cache", few=1, seeds=(0, 1, 2))
    results = compare.compare_backbones(
        ["mobilenet_v2", "mobilenet_0.25", "resnet50"], shared_photos, setting, per_class=5, progress=False
    )
    by_name = {r.backbone: r for r in results}
    assert by_name["mobilenet_v2"].ok and by_name["mobilenet_0.25"].ok
    for name in ("mobilenet_v2", "mobilenet_0.25"):  # the harder setting: one accuracy per seed's draw
        assert by_name[name].few_per_class == 1 and len(by_name[name].few_accuracy) == 3
        assert by_name[name].test_photos == 90  # half of each class's 60 val photos, per class
    verdict = compare.ranking_verdict(results)
    assert "With 1 photos per class, over 3 draws, by mean:" in verdict and "resnet50" not in verdict
    assert "1 per class" in compare.results_table(results)
    assert by_name["mobilenet_v2"].test_accuracy > 0.6  # 3 classes: chance is 1/3
    assert by_name["mobilenet_v2"].parameters > by_name["mobilenet_0.25"].parameters
    assert by_name["resnet50"].status == "skipped"


def test_with_downloads_off_a_missing_file_is_skipped_without_touching_the_network(tiny_photos, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(resnet_module, "BASE_WEIGHTS_PATH", "http://must-not-be-used.invalid/")
    setting = compare.Setting(image_size=48, allow_download=False, cache_dir=tmp_path / "cache")
    [row] = compare.compare_backbones(["resnet50"], tiny_photos, setting, progress=False)
    assert row.status == "skipped" and "downloads are off" in row.reason
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in row.reason


def test_two_settings_over_seeds_are_worded_from_the_numbers():
    same = compare.seeds_verdict("head only", [1.0, 1.0, 1.0], "fine-tuned", [1.0, 1.0, 1.0], 90)
    assert same.startswith("No difference:") and "100.0% (100.0%–100.0%)" in same
    worse = compare.seeds_verdict("head only", [0.9, 0.95, 1.0], "fine-tuned", [0.8, 0.95, 0.9], 20)
    assert worse.startswith("fine-tuned is worse than head only by 6.7 percentage points on average")
    assert "worse in 2 of 3 seeds, the same in 1" in worse
    mixed = compare.seeds_verdict("a", [0.9, 0.9, 0.9], "b", [1.0, 0.8, 0.9], 10)
    assert mixed.startswith("No consistent difference:") and "better in 1 seed(s) and worse in 1" in mixed
    assert compare.seeds_verdict("a", [0.90], "b", [0.905], 90).startswith("No difference")  # under one photo
    with pytest.raises(ValueError, match="one accuracy per seed"):
        compare.seeds_verdict("a", [1.0], "b", [1.0, 1.0], 10)


def test_the_ranking_says_when_backbones_tie_and_how_they_rank_with_few_photos():
    def row(name, accuracy, few):
        return compare.BackboneResult(
            name, "ok", test_accuracy=accuracy, few_per_class=2, few_accuracy=few, test_photos=90
        )

    results = [
        row("a", 1.0, [0.9, 0.92, 0.95]),
        row("b", 1.0, [0.99, 0.98, 1.0]),
        compare.BackboneResult("c", "skipped", "no weights"),
    ]
    text = compare.ranking_verdict(results)
    assert "all 2 backbones tie at 100.0% on 90 test photos" in text
    assert "With 2 photos per class, over 3 draws, by mean: b 99.0%, a 92.3%." in text
    assert "- b is better than a by 6.7 percentage points on average" in text


def test_head_vs_fine_tune_repeats_both_phases_per_seed_and_puts_the_model_back(
    tiny_photos, random_backbone_weights, tmp_path
):
    import numpy as np

    from helpers.data import photos
    from helpers.model import cuts, lesson
    from helpers.run import train
    from helpers.store import cache

    data = photos.load(tiny_photos, 48, per_class=2, seed=0)
    model = train.build_classifier(data.class_names, "mobilenet_v2_0.35", str(random_backbone_weights), 48)
    base = cuts.base_of(model)
    cut = cuts.resolve_block(base, 2)
    lesson.unfreeze_above(base, cut)
    start = model.get_weights()
    trainable = [layer.name for layer in base.layers if layer.trainable]
    store = cache.BottleneckCache(tmp_path, progress=False)
    lesson.compile_model(model, 1e-2)
    model.fit(data.x_train, data.y_train, epochs=1, verbose=0)  # as in notebook 04: the blocks moved since `start`
    moved = model.get_weights()
    runs = compare.head_vs_fine_tune(
        model, cut, store, data, start, compare.FineTuneRecipe(2, (0, 1, 2), 3, 2, {"tuned": 1e-3})
    )
    # every pooled feature came from the pretrained blocks: one store folder at "pool", no photo computed twice
    assert [f.meta["cut"] for f in store.folders()].count("pool") == 1, [f.path.name for f in store.folders()]
    assert list(runs.accuracy) == ["head only", "tuned"] and all(len(v) == 3 for v in runs.accuracy.values())
    assert runs.n_test == len(data.y_test) and runs.seeds == [0, 1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(moved, model.get_weights()))  # put back
    assert [layer.name for layer in base.layers if layer.trainable] == trainable
    assert "mean (worst–best) over seeds [0, 1, 2]" in runs.table()


def test_the_scratch_cnn_is_explained_from_its_own_curve():
    from helpers.run.small_data import PhotosResult

    rising = PhotosResult(None, 720, [1.0, 1.0, 1.0], [70.0, 70.0, 70.0], [0.76], [31.8], [10], [True])
    rising.scratch_val_accuracy = [[0.40, 0.50, 0.55, 0.60, 0.64, 0.68, 0.72, 0.74, 0.76, 0.78]]
    text = compare.scratch_stopped(rising, 30, 100)
    assert "was stopped by its time budget (30 s) after 10 epochs, 3.2 s each" in text
    assert "from 40.0% (epoch 1) to 78.0% (epoch 10), best 78.0% at epoch 10" in text
    assert "Over its last 4 epochs it was still rising, from 72.0% to 78.0% (+2.0 points per epoch)" in text
    assert "would take at least 11 more epochs (about 35 s more" in text and "70.0 s for the transfer head" in text
    flat = PhotosResult(1, 3, [0.9], [1.0], [0.4], [5.0], [5], [False], [[0.3, 0.4, 0.4, 0.4, 0.4]])
    text = compare.scratch_stopped(flat, 30, 100)
    assert "stopped by itself after 5 epochs" in text and "levelled off (40.0% → 40.0%)" in text
    falling = PhotosResult(10, 30, [0.99], [2.0], [0.35], [10.0], [3], [True], [[0.484, 0.40, 0.352]])
    assert "It had passed its best: 48.4% at epoch 1, 35.2% at the end" in compare.scratch_stopped(falling, 10, 91)


def test_augmentation_effect_starts_the_head_at_the_class_means_or_at_random(
    tiny_photos, random_backbone_weights, monkeypatch, tmp_path
):
    """Notebook 05a measures stored views with notebook 05's head (class means) and with notebook 03's (random)."""
    from helpers.data import folders as data
    from helpers.data import photos
    from helpers.model import backbones, lesson
    from helpers.store import cache

    base = backbones.application("mobilenet_v2_0.35")(
        include_top=False, weights=str(random_backbone_weights), input_shape=(48, 48, 3), alpha=0.35
    )
    base.trainable = False
    folder = data.load_folder(tiny_photos, seed=0)
    model = lesson.add_head(base, folder.class_names, lesson.preprocessing_for("mobilenet_v2"), normalize=True)
    parts = photos.splits(folder, 0)
    store = cache.BottleneckCache(tmp_path / "cache", progress=False)
    starts = []
    real = lesson.start_at_class_means
    from helpers.run import seeds  # where compare's augmentation_effect lives, with the lesson's function by name

    monkeypatch.setattr(seeds, "start_at_class_means", lambda *a, **k: starts.append(len(a[2])) or real(*a, **k))
    means = compare.augmentation_effect(model, store, parts, [1], [0, 1], 2, epochs=1)
    assert starts == [3, 9, 3, 9]  # alone, then with its 2 views, per seed
    starts.clear()
    random = compare.augmentation_effect(model, store, parts, [1], [0, 1], 2, epochs=1, start="random")
    assert starts == []  # a new random head instead, the same for both settings of a seed
    for runs in [*means.values(), *random.values()]:
        assert list(runs.accuracy) == ["photos alone", "+ 2 stored views"] and runs.seeds == [0, 1]
        assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in runs.accuracy.values())
        assert runs.n_test == len(parts["test"])
    with pytest.raises(ValueError, match="start must be 'class means' or 'random'"):
        compare.augmentation_effect(model, store, parts, [1], [0], 2, start="zero")


def test_the_backbone_measured_by_hand_is_the_first_the_comparison_would_measure(
    shared_weights_dir, offline, monkeypatch, tmp_path
):
    """Notebook 07's cells by hand take the first of BACKBONES that can be built here, by compare_one's rules."""
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    local = compare.Setting(image_size=96, allow_download=False)
    assert compare.first_measurable(["no_such_net", "resnet50", "mobilenet_v2", "mobilenet_0.25"], local) == (
        "mobilenet_v2"  # an unknown name and a missing file are passed over, without the network
    )
    fetched = []  # the real build_base, with the downloads it tries noted

    def build_base(name, *args, **kwargs):
        fetched.append(name)
        return real_build_base(name, *args, **kwargs)

    real_build_base = compare.build_base
    monkeypatch.setattr(compare, "build_base", build_base)
    downloading = compare.Setting(image_size=96, allow_download=True)  # a download would fail (a dead port)
    assert compare.first_measurable(["resnet50", "mobilenet_0.25"], downloading) == "mobilenet_0.25"
    assert fetched == []  # a backbone at hand wins: nothing fetched before it
    with pytest.raises(ValueError, match=r"none of \['mobilenet_v2'\] can be built here"):
        compare.first_measurable(["mobilenet_v2"], compare.Setting(image_size=16))  # below its smallest size
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="ALLOW_DOWNLOAD"):
        compare.first_measurable(["resnet50", "mobilenet_v2"], local)
    with pytest.raises(ValueError, match="ALLOW_DOWNLOAD"):  # nothing at hand: each download tried once, in order
        compare.first_measurable(["resnet50", "mobilenet_v2"], downloading)
    assert fetched == ["resnet50", "mobilenet_v2"]


def test_inference_timing_is_the_lesson_function_of_notebook_07():
    from helpers.model import lesson

    assert compare.inference_ms_per_image is lesson.inference_ms_per_image


def test_by_hand_and_the_package_are_compared_in_test_photos():
    row = compare.BackboneResult(
        "mobilenet_v2", "ok", test_accuracy=88 / 90, parameters=2_261_827, file_mb=9.61, test_photos=90
    )
    same = compare.by_hand_vs_package(row, 88 / 90, 2_261_827, 9.63)
    assert same.endswith("97.8% vs 97.8%, parameters 2,261,827 vs 2,261,827, file 9.6 vs 9.6 MB: the same.")
    apart = compare.by_hand_vs_package(row, 86 / 90, 2_261_827, 9.61)
    assert "95.6% vs 97.8% (2 of 90 test photos apart)" in apart and apart.endswith(": not the same.")
    assert compare.by_hand_vs_package(row, 88 / 90, 2_261_830, 9.61).endswith(": not the same.")
    skipped = compare.BackboneResult("resnet50", "skipped", "no local ImageNet weights")
    assert "nothing to compare" in compare.by_hand_vs_package(skipped, 0.9, 1, 1.0)
