"""What ImageNet already knows about lions, tigers and bears (notebook 01)."""

from __future__ import annotations

import pytest

from helpers import settings
from helpers.model import backbones, imagenet


def test_class_names_put_our_animals_where_keras_does(shared_weights_dir, monkeypatch):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    names = imagenet.class_names()
    assert len(names) == 1000
    assert imagenet.related_indices("lion", names) == {"lion": 291}
    assert imagenet.related_indices("tiger", names) == {"tiger": 292, "tiger_cat": 282}
    assert set(imagenet.related_indices("bear", names).values()) == {294, 295, 296, 297}
    assert imagenet.related_indices("zebra", names) == {}


def test_is_related_counts_the_family_only():
    assert imagenet.is_related("tiger", "tiger_cat")
    assert imagenet.is_related("bear", "ice_bear")
    assert not imagenet.is_related("lion", "tiger")
    assert not imagenet.is_related("bear", "Border_terrier")


def _offline(monkeypatch):
    """Make Keras' download fail as it does offline (no network touched)."""

    def fail(spec, file_name):
        raise Exception(f"URL fetch failure on https://example.invalid/{file_name}: None -- offline")

    monkeypatch.setattr(imagenet, "_download", fail)


def test_classifier_weights_fall_back_and_say_why_in_one_line(shared_weights_dir, monkeypatch, capsys, tmp_path):
    import keras

    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.setattr(settings, "keras_cache_dir", lambda: tmp_path)
    _offline(monkeypatch)
    name, weights, options = imagenet.classifier_weights("InceptionV3")
    assert (name, options) == ("MobileNet", {"alpha": 0.25}) and weights.endswith("mobilenet_2_5_224_tf.h5")
    model = getattr(keras.applications, name)(weights=weights, **options)
    assert model.output_shape == (None, 1000)
    said = capsys.readouterr().out
    assert said.count("\n") == 1, said
    assert "InceptionV3: no ImageNet weights here" in said and "uses MobileNet(alpha=0.25)" in said


def test_a_local_full_top_file_is_used_without_a_notice(shared_weights_dir, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    _offline(monkeypatch)
    name, weights, options = imagenet.classifier_weights("MobileNet", options={"alpha": 0.25})
    assert name == "MobileNet" and weights == str(shared_weights_dir / "mobilenet_2_5_224_tf.h5")
    assert capsys.readouterr().out == ""
    assert imagenet.classifier_weights("mobilenet_0.25") == ("MobileNet", weights, {"alpha": 0.25})


def test_classifier_weights_raise_the_original_error_when_no_fallback_works(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(settings, "keras_cache_dir", lambda: tmp_path)
    _offline(monkeypatch)
    with pytest.raises(backbones.WeightsUnavailableError, match="for inception_v3"):
        imagenet.classifier_weights("InceptionV3")
    with pytest.raises(backbones.WeightsUnavailableError, match="mobilenet_2_5_224_tf.h5"):
        imagenet.classifier_weights("MobileNet", options={"alpha": 0.25})


def test_the_class_index_is_put_where_keras_decode_predictions_reads_it(shared_weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.setattr(settings, "keras_cache_dir", lambda: tmp_path / "models")
    target = imagenet.provide_class_index()
    assert target == tmp_path / "models" / "imagenet_class_index.json"
    assert target.read_bytes() == (shared_weights_dir / "imagenet_class_index.json").read_bytes()


def test_notebook_06_explains_the_classifier_notebook_01_falls_back_to(shared_weights_dir, monkeypatch, capsys):
    """One rule for 01 and 06: offline, MobileNetV2 has no full-top file here, so MobileNet 0.25 answers."""
    import numpy as np

    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    _offline(monkeypatch)
    model = imagenet.pixel_classifier("mobilenet_v2")
    assert model.name == "mobilenet_0.25" and model.output_shape == (None, 1000)
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "uses MobileNet(alpha=0.25)" in said
    assert imagenet.classifier_weights("mobilenet_v2")[:1] == ("MobileNet",)  # what notebook 01 builds
    grey = np.full((1, 224, 224, 3), 128.0, "float32")  # raw pixels in: the preprocessing is inside
    assert np.isclose(model.predict(grey, verbose=0).sum(), 1.0, atol=1e-4)
