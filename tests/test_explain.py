"""Grad-CAM (notebook 06): the heatmap points at the evidence for the class."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import backbones, cuts, explain, export


def red_detector() -> keras.Model:
    """Class 1 = "red", class 0 = "not red": a 1×1 conv that sees redness, then pool + softmax."""
    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(conv(inputs))))
    conv.set_weights([np.array([[[[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]]]), np.array([0.0, 1.0])])
    dense.set_weights([np.array([[0.0, 5.0], [0.0, 0.0]]), np.zeros(2)])  # logit 1 = 5 × redness
    return model


def test_the_heatmap_lights_up_where_the_red_square_is():
    image = np.full((1, 32, 32, 3), 40.0, np.float32)
    image[0, 4:12, 20:28] = (250, 0, 0)  # a red square, top right
    heatmaps, classes = explain.grad_cam(red_detector(), image, class_index=1, layer_name="conv")
    heat = heatmaps[0]
    assert classes.tolist() == [1] and heat.shape == (32, 32)
    assert heat.max() == pytest.approx(1.0)
    assert heat[4:12, 20:28].min() > 0.99 and heat[16:, :16].max() == 0.0


def test_transferred_model_is_explained_at_its_last_cut_point(tiny_trained_run):
    model = export.load_model(tiny_trained_run / "model.keras")
    assert explain.last_conv_layer(model) == cuts.cut_points(cuts.base_of(model))[-1] == "out_relu"
    images = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 3)).astype("float32")
    heatmaps, classes = explain.grad_cam(model, images)
    assert heatmaps.shape == (3, 2, 2) and heatmaps.max() == pytest.approx(1.0)
    assert ((0 <= heatmaps) & (heatmaps <= 1)).all()
    np.testing.assert_array_equal(classes, model.predict(images, verbose=0).argmax(1))
    np.testing.assert_allclose(model.predict(images, verbose=0).sum(1), 1.0, rtol=1e-5)  # softmax put back
    grad_model = keras.Model(model.input, [model.get_layer("pool").input, model.output])  # notebook 06's lines
    maps, grads = explain.gradients(grad_model, images)
    cam = keras.ops.relu(keras.ops.sum(keras.ops.mean(grads, axis=(1, 2), keepdims=True) * maps, axis=-1))
    np.testing.assert_allclose(explain.normalise(cam), heatmaps, atol=1e-6)
    picture = explain.overlay(images[0].astype("uint8"), heatmaps[0])
    assert picture.shape == (48, 48, 3) and picture.dtype == np.uint8


def test_imagenet_model_with_its_top_is_explained_too(shared_weights_dir, shared_photos, monkeypatch):
    from helpers.data import load_image

    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    model = backbones.build_backbone("mobilenet_0.25", weights="imagenet", include_top=True)
    tiger = sorted((shared_photos / "val" / "tiger").glob("*.jpg"))[0]
    image = load_image(tiger, 224)[None].astype("float32")
    heatmaps, classes = explain.grad_cam(model, image)
    assert explain.last_conv_layer(model) == "conv_pw_13_relu"
    assert heatmaps.shape == (1, 7, 7) and heatmaps.max() == pytest.approx(1.0)
    assert classes[0] == model.predict(image, verbose=0).argmax()
