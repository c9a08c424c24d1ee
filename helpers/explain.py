"""Grad-CAM: where in the photo did the model look? (notebook 06)

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of a late convolutional block
by how much each map raises the class score, and keeps the positive part: a coarse
heatmap of the evidence for that class. The models of :mod:`helpers.backbones` are flat,
so the last *cut point* (e.g. ``mixed10``, ``out_relu``, ``conv_pw_13_relu``) splits them
into a *bottom* (pixels → feature maps) and a *top* (feature maps → class scores); the
gradient is taken through the top only. The same code explains the ImageNet model with
its top and our transferred Lion/Tiger/Bear model.

Everything is ``keras.ops`` except the one gradient call, which each backend spells its
own way (:func:`_gradient`).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .backbones import cut_points


def last_conv_layer(model: keras.Model) -> str:
    """The name of the highest cut point whose output is a 4-D feature map."""
    names = [n for n in cut_points(model) if len(model.get_layer(n).output.shape) == 4]
    if not names:
        raise ValueError(f"{model.name} has no convolutional cut point to explain")
    return names[-1]


def _split(model: keras.Model, layer_name: str) -> tuple[keras.Model, keras.Model, keras.layers.Layer]:
    """(pixels → feature maps, feature maps → input of the last layer, the last layer)."""
    feature_maps = model.get_layer(layer_name).output
    last = model.layers[-1]
    bottom = keras.Model(model.inputs, feature_maps)
    top = keras.Model(feature_maps, last.input)
    return bottom, top, last


def _logits(last: keras.layers.Layer, x):
    """Class scores *before* the softmax: Grad-CAM wants logits, not saturated probabilities."""
    if isinstance(last, keras.layers.Dense):
        return ops.matmul(x, last.kernel) + last.bias
    if isinstance(last, keras.layers.Activation):  # ImageNet tops end in Activation("softmax")
        return x
    return ops.log(last(x) + 1e-12)  # unknown layer: fall back to log-probabilities


def _gradient(fn, x):
    """``(value, d sum(fn(x)) / dx)`` with the current backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x)
    if backend == "jax":
        import jax

        return jax.value_and_grad(lambda v: ops.sum(fn(v)))(x)
    if backend == "torch":
        x = ops.convert_to_tensor(x).detach().requires_grad_(True)
        y = fn(x)
        ops.sum(y).backward()
        return y, x.grad
    raise NotImplementedError(f"Grad-CAM needs gradients; backend {backend!r} is not supported")


def grad_cam(model: keras.Model, images, class_index: int | list[int] | None = None,
             layer_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps for a batch of raw 0–255 images.

    ``class_index`` is one class for all images, one per image, or None (each image's
    predicted class). Returns ``(heatmaps, class_indices)``: heatmaps are N × h × w in
    [0, 1] at the feature-map resolution (use :func:`overlay` to put them on the photo).
    """
    layer_name = layer_name or last_conv_layer(model)
    bottom, top, last = _split(model, layer_name)
    x = ops.convert_to_tensor(np.asarray(images, np.float32))
    maps = bottom(x, training=False)
    logits = _logits(last, top(maps, training=False))
    n = int(maps.shape[0])
    if class_index is None:
        chosen = ops.convert_to_numpy(ops.argmax(logits, axis=-1))
    else:
        chosen = np.broadcast_to(np.asarray(class_index, dtype=int), (n,))
    mask = ops.one_hot(ops.convert_to_tensor(chosen.astype("int32")), int(logits.shape[-1]))

    def class_score(feature_maps):
        return ops.sum(_logits(last, top(feature_maps, training=False)) * mask, axis=-1)

    _, grads = _gradient(class_score, maps)
    weights = ops.mean(grads, axis=(1, 2), keepdims=True)            # one weight per channel
    cam = ops.relu(ops.sum(weights * maps, axis=-1))                 # N × h × w
    peak = ops.max(cam, axis=(1, 2), keepdims=True)
    cam = ops.where(peak > 0, cam / ops.maximum(peak, 1e-12), ops.zeros_like(cam))
    return ops.convert_to_numpy(cam), chosen.copy()


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A heatmap resized (bilinear) to ``size × size``."""
    resized = ops.image.resize(np.asarray(heatmap, np.float32)[..., None], (size, size), interpolation="bilinear")
    return np.clip(ops.convert_to_numpy(resized)[..., 0], 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The photo with the heatmap laid over it in the ``jet`` colours, as uint8 RGB."""
    from matplotlib import colormaps

    heat = upsample(heatmap, image.shape[0])
    colours = colormaps["jet"](heat)[..., :3] * 255.0
    mixed = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours
    return np.clip(mixed, 0, 255).astype(np.uint8)


def plot_grad_cam(model: keras.Model, images: np.ndarray, class_names: list[str] | None = None,
                  class_index=None, layer_name: str | None = None, title: str = ""):
    """A row per photo: the photo and its Grad-CAM overlay, titled with the class explained."""
    import matplotlib.pyplot as plt

    heatmaps, chosen = grad_cam(model, images, class_index, layer_name)
    probs = np.asarray(model.predict(np.asarray(images, np.float32), verbose=0))
    fig, axes = plt.subplots(2, len(images), figsize=(2.6 * len(images), 5.4), squeeze=False)
    for j, (image, heat, c) in enumerate(zip(images, heatmaps, chosen)):
        name = class_names[c] if class_names is not None else str(c)
        axes[0, j].imshow(image.astype(np.uint8))
        axes[0, j].set_title(f"{name} {probs[j, c]:.0%}", fontsize=9)
        axes[1, j].imshow(overlay(image, heat))
        for ax in axes[:, j]:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
