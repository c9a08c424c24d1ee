"""Grad-CAM's figures (notebook 06): each photo above, its heatmap laid over it below.

The heatmaps themselves are computed by :mod:`helpers.model.explain`.
"""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import numpy as np

from helpers.model import explain
from helpers.show import plots


def plot_heatmaps(images: np.ndarray, heatmaps, titles: list[str] | None = None, title: str = ""):
    """A column per photo: the photo above, its heatmap laid over it below."""
    heatmaps = explain.normalise(heatmaps)
    fig, axes = plt.subplots(2, len(images), figsize=(2.6 * len(images), 5.4), squeeze=False)
    for j, (image, heat) in enumerate(zip(images, heatmaps)):
        axes[0, j].imshow(np.asarray(image).astype(np.uint8))
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=9)
        axes[1, j].imshow(explain.overlay(np.asarray(image), heat))
        for ax in axes[:, j]:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return plots.show(fig)


def plot_grad_cam(
    model: keras.Model,
    images: np.ndarray,
    class_names: list[str] | None = None,
    class_index=None,
    layer_name: str | None = None,
    title: str = "",
):
    """A column per photo: the photo and its Grad-CAM overlay, titled with the class explained."""
    heatmaps, chosen = explain.grad_cam(model, images, class_index, layer_name)
    probs = np.asarray(model.predict(np.asarray(images, np.float32), verbose=0))
    titles = [f"{class_names[c] if class_names is not None else c} {probs[j, c]:.0%}" for j, c in enumerate(chosen)]
    return plot_heatmaps(images, heatmaps, titles, title)
