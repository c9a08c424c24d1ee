"""The notebook-04 freeze chooser: a slider over the blocks that freezes the model as it moves."""
from __future__ import annotations

import pytest

from helpers import backbones, surgery, widgets


@pytest.fixture(scope="module")
def model():
    base = backbones.build_backbone("mobilenet_v2_0.35", weights=None, image_size=32)
    return surgery.add_head(base, ["bear", "lion", "tiger"])


def shown_count(chooser) -> int:
    text = chooser.count.value
    return int(text.split("trainable weights: ")[1].split(" of ")[0].replace(",", ""))


def test_resolve_block_accepts_names_counts_and_head_only(model):
    names = surgery.block_names(model)
    assert widgets.resolve_block(model, None) is None
    assert widgets.resolve_block(model, 0) is None
    assert widgets.resolve_block(model, "head only") is None
    assert widgets.resolve_block(model, 2) == names[-2] == "block_16_project_BN"
    assert widgets.resolve_block(model, "block_9_add") == "block_9_add"


def test_resolve_block_rejects_what_the_model_does_not_have(model):
    with pytest.raises(ValueError, match="mixed9.*block_9_add"):
        widgets.resolve_block(model, "mixed9")
    with pytest.raises(ValueError, match="17 blocks"):
        widgets.resolve_block(model, 99)


def test_chooser_starts_at_the_parameter_and_freezes_the_model(model):
    chooser = widgets.freeze_chooser(model, initial=2)
    assert chooser.slider.value == chooser.fine_tune_from == "block_16_project_BN"
    assert chooser.slider.options[-1] == "head only"
    assert chooser.slider.options[:-1] == tuple(surgery.block_names(model))
    report = surgery.trainable_report(model)
    assert report.trainable_blocks == ["block_16_project_BN", "out_relu", "head"]
    assert shown_count(chooser) == report.trainable_weights == chooser.report.trainable_weights


def test_moving_the_slider_updates_the_count_and_the_model(model):
    chooser = widgets.freeze_chooser(model, initial="head only")
    head_only = shown_count(chooser)
    assert head_only == model.get_layer("head_predictions").count_params()
    chooser.slider.value = "block_12_add"
    lower = shown_count(chooser)
    assert lower > head_only
    assert lower == surgery.trainable_report(model).trainable_weights
    assert model.get_layer("block_12_expand").trainable and not model.get_layer("block_11_expand").trainable
    assert not model.get_layer("block_12_expand_BN").trainable  # BatchNorm stays frozen
    assert "frozen blocks: 11 of 17" in chooser.count.value
    chooser.slider.value = "head only"
    assert shown_count(chooser) == head_only
    assert chooser.fine_tune_from is None


def test_chooser_has_stable_names_for_a_browser_test(model):
    chooser = widgets.freeze_chooser(model)
    assert widgets.CHOOSER_CLASS in chooser._dom_classes
    assert widgets.SLIDER_CLASS in chooser.slider._dom_classes
    assert widgets.COUNT_CLASS in chooser.count._dom_classes
    assert chooser.slider.description == "fine-tune from"
    assert chooser.count.value.startswith("<b>trainable weights: ")
    assert "trainable weights:" in repr(chooser)  # the text a headless run stores
