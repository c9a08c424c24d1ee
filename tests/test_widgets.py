"""The notebook-04 freeze chooser: a slider over the blocks that freezes the model as it moves."""

from __future__ import annotations

import pytest

from helpers.model import cuts
from helpers.run import train
from helpers.show import widgets


@pytest.fixture(scope="module")
def model():
    return train.build_classifier(["bear", "lion", "tiger"], "mobilenet_v2_0.35", weights=None, image_size=32)


def shown_count(chooser) -> int:
    text = chooser.count.value
    return int(text.split("trainable weights: ")[1].split(" of ")[0].replace(",", ""))


def test_resolve_block_accepts_names_counts_and_head_only(model):
    base = cuts.base_of(model)
    names = cuts.cut_points(base)
    assert cuts.resolve_block(base, None) is None
    assert cuts.resolve_block(base, 0) is None
    assert cuts.resolve_block(base, 2) == names[-3] == "block_15_add"  # below the top two blocks
    assert cuts.resolve_block(base, "block_9_add") == "block_8_add"


def test_resolve_block_rejects_what_the_model_does_not_have(model):
    base = cuts.base_of(model)
    with pytest.raises(ValueError, match="mixed9.*block_9_add"):
        cuts.resolve_block(base, "mixed9")
    with pytest.raises(ValueError, match="17 blocks"):
        cuts.resolve_block(base, 99)


def test_chooser_starts_at_the_parameter_and_freezes_the_model(model):
    chooser = widgets.freeze_chooser(model, initial=2)
    assert chooser.slider.value == chooser.fine_tune_from == "block_16_project_BN"
    assert chooser.slider.options[-1] == "head only"
    assert chooser.slider.options[:-1] == tuple(cuts.cut_points(cuts.base_of(model))[1:])
    report = cuts.trainable_report(model)
    assert report.trainable_blocks == ["block_16_project_BN", "out_relu"]
    assert chooser.cut == "block_15_add"
    assert shown_count(chooser) == report.trainable_weights == chooser.report.trainable_weights


def test_moving_the_slider_updates_the_count_and_the_model(model):
    chooser = widgets.freeze_chooser(model, initial="head only")
    head_only = shown_count(chooser)
    assert head_only == model.get_layer("predictions").count_params()
    chooser.slider.value = "block_12_add"
    lower = shown_count(chooser)
    assert lower > head_only
    assert lower == cuts.trainable_report(model).trainable_weights
    assert (
        cuts.base_of(model).get_layer("block_12_expand").trainable
        and not cuts.base_of(model).get_layer("block_11_expand").trainable
    )
    assert not cuts.base_of(model).get_layer("block_12_expand_BN").trainable  # BatchNorm stays frozen
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
