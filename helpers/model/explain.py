"""Grad-CAM: where in the photo did the model look? (notebook 06)

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of a late convolutional block
by how much each map raises the class score, and keeps the positive part: a coarse
heatmap of the evidence for that class. Notebook 06 writes the core lines itself::

    grad_model = keras.Model(model.input, [model.get_layer("pool").input, model.output])
    maps, grads = explain.gradients(grad_model, images)          # d class score / d maps
    # (the notebook writes TensorFlow's GradientTape out; this is the same on every backend)
    weights = keras.ops.mean(grads, axis=(1, 2), keepdims=True)  # one weight per map
    heatmaps = keras.ops.relu(keras.ops.sum(weights * maps, axis=-1))

This module is the machinery around them: :func:`gradients` (the one call each backend
spells its own way, with the class score taken *before* the softmax), :func:`grad_model`
for any model of the workbook (the transferred model, whose feature maps are the input
of its ``pool`` layer, the ImageNet classifier of :func:`helpers.model.backbones.build_backbone`
whose feature maps are inside the nested Keras application, or a plain functional
model), and the overlay of a heatmap on its photo (the figures are
:mod:`helpers.show.heatmaps`). Public Keras API only.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops
from matplotlib import colormaps

from helpers.model import backbones, cuts


def _nested_base(model: keras.Model) -> keras.Model | None:
    try:
        return cuts.base_of(model)
    except ValueError:
        return None


def last_conv_layer(model: keras.Model) -> str:
    """The layer Grad-CAM explains: the backbone's own in the table, else the highest 4-D cut point.

    For a model with a nested base (the workbook's models), the cut point is the base's:
    ``out_relu`` for MobileNetV2, ``mixed10`` for InceptionV3, ``conv_pw_13_relu`` for
    MobileNet with its ImageNet top.
    """
    where = _nested_base(model) or model
    spec = backbones.spec_of_model(where)
    if spec and spec.grad_cam_layer in {layer.name for layer in where.layers}:  # the table's choice
        return spec.grad_cam_layer
    names = [n for n in cuts.cut_points(where) if len(where.get_layer(n).output.shape) == 4]
    if not names:
        raise ValueError(f"{model.name} has no convolutional cut point to explain")
    return names[-1]


def grad_model(model: keras.Model, layer_name: str | None = None) -> keras.Model:
    """``pixels → [feature maps at layer_name, model output]``: what Grad-CAM differentiates.

    For the transferred model and the default layer this is
    ``keras.Model(model.input, [model.get_layer("pool").input, model.output])``.
    """
    layer_name = layer_name or last_conv_layer(model)
    if layer_name in {layer.name for layer in model.layers}:  # a plain functional model
        return keras.Model(model.input, [model.get_layer(layer_name).output, model.output])
    base = cuts.base_of(model)
    if layer_name == base.layers[-1].name and POOL in {layer.name for layer in model.layers}:
        return keras.Model(model.input, [model.get_layer(POOL).input, model.output])
    # the maps are inside the nested base: cut the model there, so that the class scores are
    # computed *from* the maps (every path passes through a cut point)
    part = cuts.split_at(model, layer_name)
    maps = part.bottom(model.input, training=False)
    y = part.top(maps, training=False)
    return keras.Model(model.input, [maps, y], name=f"{model.name}_grad_cam")


POOL = cuts.POOL


def _softmax_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The last layer if it applies a softmax (looking inside a nested last model)."""
    last = model.layers[-1]
    while isinstance(last, keras.Model):
        last = last.layers[-1]
    return last if getattr(last, "activation", None) is keras.activations.softmax else None


@contextlib.contextmanager
def logits(model: keras.Model):
    """While inside, ``model`` outputs class *scores* (logits), not probabilities (notebook 06).

    Grad-CAM wants the class score, not the saturated probability.

    As in Keras' own Grad-CAM example, the last layer's softmax is switched off for the
    duration (and always put back).
    """
    layer = _softmax_layer(model)
    if layer is None:
        yield
        return
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = keras.activations.softmax


def gradients(
    grad_model: keras.Model, images, class_index: int | list[int] | None = None, return_classes: bool = False
):
    """``(maps, d score / d maps)`` for a batch of raw 0–255 images, by the backend's autodiff.

    TensorFlow: ``GradientTape``; PyTorch: ``torch.autograd.grad``; JAX: ``jax.vjp`` of the
    part of the model above the maps (:func:`_jax_gradients`).

    ``grad_model`` maps pixels to ``[feature maps, class scores]`` (:func:`grad_model`);
    the score is that of ``class_index`` (one for all images, one per image) or, with None,
    of each image's top class. With ``return_classes`` also returns the classes explained.
    """
    x = np.asarray(images, np.float32)
    backend = keras.backend.backend()

    def chosen_of(scores):
        if class_index is None:
            return ops.convert_to_numpy(ops.argmax(scores, axis=-1)).astype("int32")
        return np.broadcast_to(np.asarray(class_index, dtype="int32"), (len(x),)).copy()

    with logits(grad_model):
        # each backend's autodiff is imported where it is used: only the running backend is installed for sure
        if backend == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415

            inputs = tf.convert_to_tensor(x)
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                maps, scores = grad_model(inputs, training=False)
                chosen = chosen_of(scores)
                score = tf.reduce_sum(scores * tf.one_hot(chosen, int(scores.shape[-1]), dtype=scores.dtype))
            grads = tape.gradient(score, maps)
        elif backend == "torch":
            import torch  # noqa: PLC0415

            # like tape.watch(inputs): a frozen base's weights do not require grad, so without
            # this the maps below the trainable head would carry no autograd graph at all
            inputs = ops.convert_to_tensor(x).requires_grad_(True)
            with torch.enable_grad():
                maps, scores = grad_model(inputs, training=False)
            chosen = chosen_of(scores)
            score = ops.sum(scores * ops.one_hot(ops.convert_to_tensor(chosen), int(scores.shape[-1])))
            grads = torch.autograd.grad(score, maps)[0]
        elif backend == "jax":
            maps, scores, grads, chosen = _jax_gradients(grad_model, x, chosen_of)
        else:
            raise NotImplementedError(f"Grad-CAM here needs TensorFlow, JAX or PyTorch, not {backend!r}")
    maps, grads = ops.convert_to_numpy(maps), ops.convert_to_numpy(grads)
    return (maps, grads, chosen) if return_classes else (maps, grads)


def _jax_gradients(grad_model: keras.Model, x: np.ndarray, chosen_of):
    """JAX has no tape: differentiate the part of the model *above* the maps, as a function of them.

    ``keras.Model(maps, scores)`` is that part (every path to the scores passes through the
    maps, which is why they are a cut point); ``jax.vjp`` of it at the maps gives
    d score / d maps in one forward and one backward pass.
    """
    import jax  # noqa: PLC0415 (optional backend, as in gradients)

    symbolic_maps, symbolic_scores = grad_model.outputs
    above = keras.Model(symbolic_maps, symbolic_scores)
    maps, _ = grad_model(x, training=False)
    scores, pull_back = jax.vjp(lambda m: above(m, training=False), jax.numpy.asarray(maps))
    chosen = chosen_of(scores)
    (grads,) = pull_back(jax.nn.one_hot(jax.numpy.asarray(chosen), int(scores.shape[-1]), dtype=scores.dtype))
    return maps, scores, grads, chosen


def heatmaps_from(maps, grads) -> np.ndarray:
    """Grad-CAM from feature maps and their gradients: N × h × w, scaled to [0, 1] per image."""
    weights = ops.mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = ops.relu(ops.sum(weights * maps, axis=-1))  # N × h × w
    return normalise(cam)


def normalise(heatmaps) -> np.ndarray:
    """Each heatmap divided by its peak (an all-zero map stays zero)."""
    cam = ops.convert_to_numpy(heatmaps).astype("float32")
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype("float32")


def grad_cam(
    model: keras.Model, images, class_index: int | list[int] | None = None, layer_name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps for a batch of raw 0–255 images.

    ``class_index`` is one class for all images, one per image, or None (each image's
    predicted class). Returns ``(heatmaps, class_indices)``: heatmaps are N × h × w in
    [0, 1] at the feature-map resolution (use :func:`overlay` to put them on the photo).
    """
    maps, grads, chosen = gradients(grad_model(model, layer_name), images, class_index, return_classes=True)
    return heatmaps_from(maps, grads), chosen


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A heatmap resized (bilinear) to ``size × size``."""
    resized = ops.image.resize(np.asarray(heatmap, np.float32)[..., None], (size, size), interpolation="bilinear")
    return np.clip(ops.convert_to_numpy(resized)[..., 0], 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The photo with the heatmap laid over it in the ``jet`` colours, as uint8 RGB."""
    heat = upsample(heatmap, image.shape[0])
    colours = colormaps["jet"](heat)[..., :3] * 255.0
    mixed = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours
    return np.clip(mixed, 0, 255).astype(np.uint8)
