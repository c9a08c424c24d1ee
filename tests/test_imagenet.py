"""What ImageNet already knows about lions, tigers and bears (notebook 01)."""
from __future__ import annotations

import pytest

from helpers import backbones, imagenet


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


def _unavailable_for(monkeypatch, *missing: str):
    """Make ``build_backbone`` fail as it does offline for the ``missing`` backbones only."""
    real = backbones.build_backbone

    def build(name, weights="imagenet", image_size=None, include_top=False):
        if name in missing and weights == "imagenet":
            raise backbones.WeightsUnavailableError(f"Could not download the ImageNet weights for {name}")
        return real(name, weights=weights, image_size=image_size, include_top=include_top)

    monkeypatch.setattr(backbones, "build_backbone", build)


def test_pretrained_classifier_falls_back_and_says_why(shared_weights_dir, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    _unavailable_for(monkeypatch, "inception_v3")
    model = imagenet.pretrained_classifier("inception_v3", fallback="mobilenet_0.25")
    assert model.name == "mobilenet_0.25" and model.output_shape == (None, 1000)
    said = capsys.readouterr().out
    assert "inception_v3: its ImageNet weights are not available here" in said
    assert "uses mobilenet_0.25 instead" in said


def test_pretrained_classifier_raises_the_original_error_when_no_fallback_works(monkeypatch):
    _unavailable_for(monkeypatch, "inception_v3", "mobilenet_0.25")
    with pytest.raises(backbones.WeightsUnavailableError, match="for inception_v3"):
        imagenet.pretrained_classifier("inception_v3", fallback="mobilenet_0.25")
    with pytest.raises(backbones.WeightsUnavailableError, match="for inception_v3"):
        imagenet.pretrained_classifier("inception_v3", fallback=None)
