"""Surgery in the seed's words: pop the top, add a head, freeze below a block, count weights."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import backbones, surgery

CLASSES = ["bear", "lion", "tiger"]


@pytest.fixture(scope="module")
def inception_with_top():
    return backbones.build_backbone("inception_v3", weights=None, include_top=True)


def test_pop_removes_the_imagenet_classifier(inception_with_top):
    assert inception_with_top.output.shape == (None, 1000)
    popped = surgery.pop(inception_with_top)
    assert popped.layers[-1].name == "avg_pool"
    assert len(popped.layers) == len(inception_with_top.layers) - 1
    assert popped.output.shape == (None, 2048)


def test_pop_down_to_a_cut_point(inception_with_top):
    popped = surgery.pop(inception_with_top, to="mixed9")
    assert popped.layers[-1].name == "mixed9"
    assert "mixed10" not in [layer.name for layer in popped.layers]


def test_add_head_classifies_into_our_classes():
    base = backbones.build_backbone("inception_v3", weights=None, image_size=75)
    model = surgery.add_head(base, CLASSES)
    assert model.output.shape == (None, 3)
    assert [layer.name for layer in model.layers[-3:]] == ["head_pool", "head_dropout", "head_predictions"]
    assert model.get_layer("head_predictions").dtype_policy.compute_dtype == "float32"
    probs = model.predict(np.zeros((2, 75, 75, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_a_head_needs_two_classes():
    base = backbones.build_backbone("mobilenet_v2_0.35", weights=None, image_size=64)
    with pytest.raises(ValueError, match="two classes"):
        surgery.add_head(base, ["lion"])


@pytest.fixture
def classifier():
    return surgery.build_classifier(CLASSES, "inception_v3", weights=None, image_size=75)


def test_a_new_classifier_trains_only_its_head(classifier):
    report = surgery.trainable_report(classifier)
    assert report.trainable_weights == 2048 * 3 + 3
    assert report.trainable_blocks == ["head"]
    assert report.frozen_blocks == [f"mixed{i}" for i in range(11)]
    assert report.total_weights == classifier.count_params()


def test_fine_tuning_from_mixed9_unfreezes_the_top_two_blocks(classifier):
    surgery.freeze(classifier, fine_tune_from="mixed9")
    report = surgery.trainable_report(classifier)
    assert report.trainable_blocks == ["mixed9", "mixed10", "head"]
    assert report.frozen_blocks[-1] == "mixed8"
    trainable = {layer.name for layer in classifier.layers if layer.trainable_weights and layer.trainable}
    index = {layer.name: i for i, layer in enumerate(classifier.layers)}
    assert all(index[name] > index["mixed8"] for name in trainable)
    assert not any(isinstance(classifier.get_layer(n), keras.layers.BatchNormalization) for n in trainable)
    assert str(report).startswith("trainable weights: ")


def test_unknown_block_lists_the_choices(classifier):
    with pytest.raises(ValueError, match="mixed7"):
        surgery.freeze(classifier, fine_tune_from="mixed99")


def test_batch_norm_stays_in_inference_mode_while_fine_tuning():
    # ResNet50 rather than a random MobileNet: its untrained activations do not vanish, so the
    # gradients reaching the unfrozen block are non-zero and the check below can tell.
    model = surgery.build_classifier(CLASSES, "resnet50", weights=None, image_size=32)
    surgery.freeze(model, fine_tune_from="conv5_block3_out")
    bn = model.get_layer("conv5_block3_3_bn")
    before = [w.copy() for w in bn.get_weights()]
    conv = model.get_layer("conv5_block3_3_conv")
    conv_before = conv.get_weights()[0].copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    for old, new in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(old, new)  # gamma, beta and running statistics untouched
    assert not np.array_equal(conv_before, conv.get_weights()[0])  # while the block above the cut learned
