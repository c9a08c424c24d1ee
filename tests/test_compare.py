"""Comparing backbones (notebook 07): same head, same photos; skipped backbones say why."""

from __future__ import annotations

import json
import socket

import keras.src.applications.mobilenet as mobilenet_module
import keras.src.applications.resnet as resnet_module
import pytest

from helpers import compare


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
    measured = compare.compare_backbones(
        ["mobilenet_v2_0.35"],
        tiny_photos,
        weights=str(random_backbone_weights),
        image_size=48,
        epochs=3,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    skipped = compare.compare_backbones(
        ["resnet50", "mobilenet_0.25", "no_such_net"],
        tiny_photos,
        weights="imagenet",
        image_size=48,
        out=tmp_path,
        progress=False,
        cache_dir=tmp_path / "cache",
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


def test_the_head_trained_on_features_is_the_head_of_the_whole_model(tiny_photos, random_backbone_weights, tmp_path):
    """Accuracy measured on stored features equals the whole model's accuracy on the photos."""
    import numpy as np

    from helpers import cache, data, photos, train

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
    _, again, _ = compare.train_head_cached(model, parts, recipe)  # the features come from the cache now
    assert recipe.cache.fetch(train.cuts.split_at(model, "pool").bottom, parts["train"].paths)[1].computed == 0


def test_real_backbones_with_the_shared_weights(shared_weights_dir, shared_photos, offline, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    results = compare.compare_backbones(
        ["mobilenet_v2", "mobilenet_0.25", "resnet50"],
        shared_photos,
        image_size=96,
        per_class=5,
        epochs=10,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    by_name = {r.backbone: r for r in results}
    assert by_name["mobilenet_v2"].ok and by_name["mobilenet_0.25"].ok
    assert by_name["mobilenet_v2"].test_accuracy > 0.6  # 3 classes: chance is 1/3
    assert by_name["mobilenet_v2"].parameters > by_name["mobilenet_0.25"].parameters
    assert by_name["resnet50"].status == "skipped"


def test_with_downloads_off_a_missing_file_is_skipped_without_touching_the_network(tiny_photos, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(resnet_module, "BASE_WEIGHTS_PATH", "http://must-not-be-used.invalid/")
    [row] = compare.compare_backbones(
        ["resnet50"], tiny_photos, image_size=48, allow_download=False, progress=False, cache_dir=tmp_path / "cache"
    )
    assert row.status == "skipped" and "downloads are off" in row.reason
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in row.reason
