"""Notebook 05's picture: test accuracy against the number of training photos per class.

The numbers come from :func:`helpers.run.small_data.accuracy_vs_photos`; this module only draws them
(and notes the key ones for the book).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from helpers.run.small_data import PhotosResult
from helpers.show import plots
from helpers.store.numbers import record


def book_numbers(rows: list[PhotosResult]) -> dict[str, float]:
    """Notebook 05's key numbers: each approach's mean test accuracy with the fewest and the most photos."""
    numbers = {}
    for row in (rows[0], rows[-1]) if rows else ():
        n = f"{row.per_class}_per_class" if row.per_class else "all_photos"
        numbers[f"transfer_accuracy_{n}"] = float(np.mean(row.transfer_accuracy))
        if row.scratch_accuracy:
            numbers[f"scratch_accuracy_{n}"] = float(np.mean(row.scratch_accuracy))
    return numbers


def accuracy_vs_photos(rows: list[PhotosResult], n_classes: int, backbone: str = "pretrained base"):
    """Test accuracy against photos per class: mean over seeds, worst-to-best band, log axis.

    A pyplot figure, as the other plots of the notebooks: Jupyter shows it at the end of the cell
    (notebook 05 ends the call with ``;``), so it is in the executed notebook and in the book.
    The fewest and the most photos' mean accuracies are recorded for the book's index (:func:`book_numbers`).
    """
    record(**book_numbers(rows))
    xs = [r.per_class or r.photos / n_classes for r in rows]
    labels = [str(r.per_class) if r.per_class else f"all\n({r.photos // n_classes})" for r in rows]
    fig = plt.figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for key, style, label in (
        ("transfer_accuracy", "o-", f"transfer ({backbone} + new head)"),
        ("scratch_accuracy", "s--", "small CNN from scratch"),
    ):
        values = [getattr(r, key) for r in rows]
        (line,) = ax.plot(xs, [np.mean(v) for v in values], style, label=label)
        ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.15)
    ax.axhline(1 / n_classes, color="grey", lw=0.8, ls=":", label=f"guessing ({n_classes} classes)")
    ax.set_xscale("log")
    ax.set_xticks(xs, labels)
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training photos per class")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.show(fig)


__all__ = ["accuracy_vs_photos", "book_numbers"]
