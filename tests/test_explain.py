"""Grad-CAM (notebook 06): the heatmap points at the evidence for the class."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers.model import backbones, cuts, explain
from helpers.ship import export
from helpers.show import heatmaps


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


def test_the_grad_cam_figure_shows_each_photo_above_its_overlay_titled_with_the_class():
    image = np.full((2, 32, 32, 3), 40.0, np.float32)
    image[:, 4:12, 20:28] = (250, 0, 0)
    fig = heatmaps.plot_grad_cam(red_detector(), image, ["grey", "red"], class_index=1, layer_name="conv")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 4 and titles[:2] == ["red 100%", "red 100%"]
    overlaid = fig.axes[2].get_images()[0].get_array()
    assert overlaid.shape == (32, 32, 3) and not np.array_equal(overlaid, image[0].astype("uint8"))


def test_the_gradient_is_the_exact_one():
    """score of "red" = 5 × mean of conv channel 0, so d score / d maps is 5/1024 there and 0 on channel 1."""
    model = red_detector()
    grad_model = keras.Model(model.input, [model.get_layer("conv").output, model.output])
    image = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    maps, grads = explain.gradients(grad_model, image, class_index=1)
    assert maps.shape == grads.shape == (2, 32, 32, 2)
    np.testing.assert_allclose(grads[..., 0], 5 / 1024, rtol=1e-5)
    np.testing.assert_allclose(grads[..., 1], 0.0, atol=1e-8)
    np.testing.assert_allclose(model.predict(image, verbose=0).sum(1), 1.0, rtol=1e-5)  # softmax put back


ROOT = Path(__file__).resolve().parent.parent


def grad_cam_script(backend: str) -> str:
    """Grad-CAM with ``backend``'s own autodiff, checked against the exact gradient, for ``python -c``.

    ``backend`` is also the module imported for its version (``jax``, ``torch``); run with
    ``KERAS_BACKEND`` set to it and the project root as the working directory.
    """
    return textwrap.dedent(f"""
        import keras, numpy as np
        assert keras.backend.backend() == "{backend}", keras.backend.backend()
        import {backend}
        from tests.test_explain import test_the_gradient_is_the_exact_one
        from helpers.model import cuts
        from helpers.model import explain
        from helpers.run import train
        test_the_gradient_is_the_exact_one()             # the red detector, by the backend's autodiff
        keras.utils.set_random_seed(0)  # random weights: unseeded, a lower cut's map could come out all zero
        model = train.build_classifier(["a", "b", "c"], "mobilenet_v2_0.35", weights=None, image_size=32,
                                     normalize=False)  # score = W . mean(maps): an exact gradient to check
        assert not cuts.base_of(model).trainable  # frozen: under torch its weights do not require grad
        images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        # the maps are the nested base's output: score = W[:, c] . mean(maps), so d score / d maps = W[:, c] / (h w)
        maps, grads, chosen = explain.gradients(explain.grad_model(model), images, return_classes=True)
        w = keras.ops.convert_to_numpy(model.get_layer("predictions").kernel)
        h, wd = maps.shape[1:3]
        for i, c in enumerate(chosen):
            exact = np.broadcast_to(w[:, c] / (h * wd), grads[i].shape)
            np.testing.assert_allclose(grads[i], exact, rtol=1e-4, atol=1e-9)
        # maps inside the nested base (a lower cut point): the gradient flows through the blocks above
        lower = cuts.cut_points(cuts.base_of(model))[-3]
        heat, _ = explain.grad_cam(model, images, layer_name=lower)
        assert heat.shape[0] == 2 and np.isfinite(heat).all() and heat.max() > 0
        print("{backend}", {backend}.__version__, "grad-cam ok")
    """)


def _python_with_jax() -> str | None:
    """This interpreter if it has JAX, else the project's ``.venv-jax`` if there is one."""
    import importlib.util

    if importlib.util.find_spec("jax") is not None:
        return sys.executable
    venv = ROOT / ".venv-jax" / "bin" / "python"
    return str(venv) if venv.is_file() else None


@pytest.mark.slow
def test_grad_cam_really_runs_under_jax():
    python = _python_with_jax()
    if python is None:
        pytest.skip("JAX is not installed here and there is no .venv-jax (pip install -r requirements-jax.txt)")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [python, "-c", grad_cam_script("jax")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "grad-cam ok" in result.stdout


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
    from helpers.data.folders import load_image

    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    model = backbones.build_backbone("mobilenet_0.25", weights="imagenet", include_top=True)
    tiger = sorted((shared_photos / "val" / "tiger").glob("*.jpg"))[0]
    image = load_image(tiger, 224)[None].astype("float32")
    heatmaps, classes = explain.grad_cam(model, image)
    assert explain.last_conv_layer(model) == "conv_pw_13_relu"
    assert heatmaps.shape == (1, 7, 7) and heatmaps.max() == pytest.approx(1.0)
    assert classes[0] == model.predict(image, verbose=0).argmax()
