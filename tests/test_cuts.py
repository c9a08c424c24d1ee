"""Cuts: pop the top, add a head, freeze below a block, count weights (notebooks 02, 04, 05)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.model import backbones, cuts, explain
from helpers.model.lesson import add_head, compile_model, unfreeze_above
from helpers.run import train

CLASSES = ["bear", "lion", "tiger"]
MIXED = [f"mixed{i}" for i in range(11)]


@pytest.fixture(scope="module")
def inception_base():
    return backbones.build_base("inception_v3", weights=None, image_size=75)


def test_inception_v3_cut_points_are_the_mixed_blocks(inception_base):
    assert cuts.cut_points(inception_base) == MIXED
    blocks = cuts.blocks(inception_base)
    assert [name for name, _ in blocks] == MIXED
    # every layer but the input is in exactly one block, in order
    assert [layer.name for _, layers in blocks for layer in layers] == [lay.name for lay in inception_base.layers[1:]]


def test_pop_removes_the_imagenet_classifier():
    whole = backbones.build_backbone("mobilenet_v2_0.35", weights=None, include_top=True)
    assert whole.output.shape == (None, 1000)
    classifier = cuts.base_of(whole)
    popped = backbones.build_base("mobilenet_v2_0.35", weights=None, image_size=224)
    # the base without its top is the ImageNet classifier minus its pooling and 1000-way layer
    assert classifier.layers[-1].name == "predictions"
    assert isinstance(classifier.layers[-2], keras.layers.GlobalAveragePooling2D)
    names = [lay.name for lay in popped.layers[1:]]  # input layers are numbered per session
    assert names == [lay.name for lay in classifier.layers[1 : len(names) + 1]]
    assert len(classifier.layers) - len(popped.layers) == 2
    assert popped.output.shape == (None, 7, 7, 1280)


def test_pop_down_to_a_cut_point(inception_base):
    model = add_head(inception_base, CLASSES, backbones.preprocess_layer("inception_v3"))
    part = cuts.split_at(model, "mixed9")
    assert part.name == "mixed9"
    assert part.bottom.output.shape == inception_base.get_layer("mixed9").output.shape
    below = [lay for lay in part.bottom.layers if isinstance(lay, keras.Model)]
    assert len(below) == 1 and below[0].layers[-1].name == "mixed9"
    assert "mixed10" not in [layer.name for layer in below[0].layers]
    assert part.top.output.shape == (None, 3)


def test_add_head_classifies_into_our_classes(inception_base):
    model = add_head(inception_base, CLASSES, backbones.preprocess_layer("inception_v3"))
    assert model.output.shape == (None, 3)
    assert [layer.name for layer in model.layers] == [
        "image",
        "preprocess",
        inception_base.name,
        "pool",
        "dropout",
        "predictions",
    ]
    assert cuts.base_of(model) is inception_base
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    probs = model.predict(np.zeros((2, 75, 75, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_a_head_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        train.build_classifier(["lion"], "mobilenet_v2_0.35", weights=None, image_size=32)


def test_base_of_wants_exactly_one_nested_model():
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="exactly one nested base"):
        cuts.base_of(flat)


@pytest.fixture
def classifier():
    return train.build_classifier(CLASSES, "inception_v3", weights=None, image_size=75)


def test_a_new_classifier_trains_only_its_head(classifier):
    report = cuts.trainable_report(classifier)
    assert report.trainable_weights == 2048 * 3 + 3
    assert report.trainable_blocks == []
    assert report.frozen_blocks == MIXED
    assert report.total_weights == classifier.count_params()
    assert report.trainable_weights == classifier.get_layer("predictions").count_params()


def test_fine_tuning_from_mixed9_unfreezes_the_top_two_blocks(classifier):
    assert train.freeze_for(classifier, "mixed9") == "mixed8"
    base = cuts.base_of(classifier)
    report = cuts.trainable_report(classifier)
    assert report.trainable_blocks == ["mixed9", "mixed10"]
    assert report.frozen_blocks == MIXED[:9]
    assert report.total_weights == classifier.count_params()
    trainable = {layer.name for layer in base.layers if layer.trainable_weights and layer.trainable}
    assert trainable
    index = {layer.name: i for i, layer in enumerate(base.layers)}
    assert all(index[name] > index["mixed8"] for name in trainable)
    assert not any(isinstance(base.get_layer(n), keras.layers.BatchNormalization) for n in trainable)
    bns = [lay for lay in base.layers[index["mixed8"] + 1 :] if isinstance(lay, keras.layers.BatchNormalization)]
    assert bns and not any(lay.trainable for lay in bns)  # BatchNorm above the cut stays frozen
    expected = cuts.count(classifier.get_layer("predictions").trainable_weights) + sum(
        cuts.count(base.get_layer(n).trainable_weights) for n in trainable
    )
    assert report.trainable_weights == expected
    assert str(report).startswith("trainable weights: ")
    assert "frozen blocks: 9 of 11" in str(report)
    # and back to head only
    assert train.freeze_for(classifier, None) is None
    assert cuts.trainable_report(classifier).trainable_blocks == []


def test_resolve_block_by_count_and_by_name(inception_base):
    assert cuts.resolve_block(inception_base, None) is None
    assert cuts.resolve_block(inception_base, 0) is None
    assert cuts.resolve_block(inception_base, 2) == "mixed8"
    assert cuts.resolve_block(inception_base, 10) == "mixed0"
    assert cuts.resolve_block(inception_base, "mixed9") == "mixed8"
    assert cuts.resolve_block(inception_base, "mixed1") == "mixed0"
    assert cuts.block_above(inception_base, "mixed8") == "mixed9"


def test_resolve_block_errors_list_the_choices(inception_base):
    with pytest.raises(ValueError, match="mixed7"):
        cuts.resolve_block(inception_base, "mixed99")
    with pytest.raises(ValueError, match="mixed1"):
        cuts.resolve_block(inception_base, "mixed0")  # nothing below the first block to cut at
    with pytest.raises(ValueError, match="11 blocks"):
        cuts.resolve_block(inception_base, 11)
    with pytest.raises(ValueError, match="11 blocks"):
        cuts.resolve_block(inception_base, -1)
    with pytest.raises(ValueError):
        cuts.resolve_block(inception_base, True)  # not a count


def test_split_at_refuses_a_layer_that_is_not_a_cut_point(classifier):
    base = cuts.base_of(classifier)
    names = [layer.name for layer in base.layers]
    inside = names[names.index("mixed5") - 1]  # a branch of block mixed5 (auto-named per session)
    with pytest.raises(ValueError, match="cut points"):
        cuts.split_at(classifier, inside)


def test_batch_norm_stays_in_inference_mode_while_fine_tuning():
    # ResNet50 rather than a random MobileNet: its untrained activations do not vanish, so the
    # gradients reaching the unfrozen block are non-zero and the check below can tell.
    keras.utils.set_random_seed(0)
    model = train.build_classifier(CLASSES, "resnet50", weights=None, image_size=32)
    base = cuts.base_of(model)
    unfreeze_above(base, "conv5_block2_out")
    bn = base.get_layer("conv5_block3_3_bn")
    assert not bn.trainable
    before = [w.copy() for w in bn.get_weights()]
    conv = base.get_layer("conv5_block3_3_conv")
    assert conv.trainable
    conv_before = conv.get_weights()[0].copy()
    below = base.get_layer("conv5_block2_3_conv")
    assert not below.trainable
    below_before = below.get_weights()[0].copy()
    compile_model(model, 1e-2)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=2, batch_size=8, verbose=0)
    for old, new in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(old, new)  # gamma, beta and running statistics untouched
    np.testing.assert_array_equal(below_before, below.get_weights()[0])  # below the cut: frozen
    assert not np.array_equal(conv_before, conv.get_weights()[0])  # while the block above the cut learned


@pytest.mark.parametrize("name", ["mobilenet_v2_0.35", "mobilenet_0.25"])
def test_the_backbone_table_names_each_bases_blocks_and_grad_cam_layer(name):
    spec = backbones.get_spec(name)
    base = backbones.keras_class(spec)(include_top=False, weights=None, input_shape=(96, 96, 3), **spec.kwargs)
    assert backbones.spec_of_model(base).model_name == spec.model_name  # alpha 0.35 is found as MobileNetV2
    names = cuts.cut_points(base)
    assert names[-1] == spec.grad_cam_layer == explain.last_conv_layer(base)
    assert all(spec.ends_block(base.get_layer(n)) for n in names[:-1]) and len(names) > 10
