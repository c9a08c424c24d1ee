"""Figures of a run's results: the confusion matrix and galleries of notebook 06, the comparison of notebook 07.

The run's helpers (:mod:`helpers.run.evaluate`, :mod:`helpers.run.compare`) compute the numbers; these draw them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics

from helpers.data import folders as data_mod
from helpers.run.compare import BackboneResult
from helpers.run.evaluate import Evaluation
from helpers.show.plots import show

# -- notebook 06 --------------------------------------------------------------------------------


def confusion_matrix(result: Evaluation, ax=None, normalize: str | None = None):
    """The confusion matrix as a figure (scikit-learn's ``ConfusionMatrixDisplay``)."""
    display = metrics.ConfusionMatrixDisplay(
        result.confusion()
        if normalize is None
        else metrics.confusion_matrix(
            result.labels, result.predictions, labels=list(range(len(result.class_names))), normalize=normalize
        ),
        display_labels=result.class_names,
    )
    display.plot(ax=ax, cmap="Blues", colorbar=False)
    display.ax_.set_title(f"accuracy {result.accuracy:.1%} on {len(result.labels)} photos")
    return display.figure_ if ax is not None else show(display.figure_)  # a caller's axes: theirs to show


def gallery(
    result: Evaluation, indices: list[int], images: np.ndarray | None = None, columns: int = 4, title: str = ""
):
    """Photos with their true class, the predicted class and its probability."""
    if not indices:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        return show(fig)
    rows = (len(indices) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        image = images[i] if images is not None else data_mod.load_image(result.paths[i], 160)
        ax.imshow(image)
        true, pred = result.class_names[result.labels[i]], result.class_names[result.predictions[i]]
        colour = "green" if true == pred else "red"
        ax.set_title(f"true {true}\npredicted {pred} {result.confidence[i]:.0%}", color=colour, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return show(fig)


# -- notebook 07 --------------------------------------------------------------------------------


def comparison(results: list[BackboneResult]):
    """Bars for accuracy, training time, inference time, parameters and file size (measured rows)."""
    ok = [r for r in results if r.ok]
    skipped = [r.backbone for r in results if not r.ok]
    panels = [
        ("test_accuracy", "test accuracy", 1.0),
        *([("few_accuracy", f"{ok[0].few_per_class} photos/class (mean)", 1.0)] if ok and ok[0].few_accuracy else []),
        ("train_seconds", "head training (s)", 1.0),
        ("inference_ms", "inference (ms / image)", 1.0),
        ("parameters", "parameters (M)", 1e-6),
        ("file_mb", ".keras file (MB)", 1.0),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    names = [r.backbone for r in ok]
    for ax, (key, title, scale) in zip(axes, panels):
        values = [np.mean(getattr(r, key)) * scale for r in ok]
        ax.bar(range(len(ok)), values, color="tab:blue")
        if key == "few_accuracy":  # worst to best draw
            low = [values[i] - min(r.few_accuracy) for i, r in enumerate(ok)]
            high = [max(r.few_accuracy) - values[i] for i, r in enumerate(ok)]
            ax.errorbar(range(len(ok)), values, yerr=[low, high], fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(range(len(ok)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key in ("test_accuracy", "few_accuracy"):
            ax.set_ylim(0, 1.05)
    if skipped:
        fig.text(0.5, -0.02, "skipped (no weights): " + ", ".join(skipped), ha="center", fontsize=8)
    fig.tight_layout()
    return show(fig)
