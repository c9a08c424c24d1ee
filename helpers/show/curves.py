"""Training curves: loss and accuracy per epoch, drawn while training runs (notebooks 03–05).

:class:`LivePlot` is a Keras callback. In JupyterLab it shows one figure and redraws it
in place after every epoch (an IPython display handle, so the notebook does not fill up
with a figure per epoch). Outside a notebook kernel (a script, pytest) it draws nothing
while training and leaves a static matplotlib figure at the end (``.figure``), saved to
``path`` if one is given. Under papermill the kernel is a notebook kernel too: the
stored output is the final figure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
from IPython.display import Image, display
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from helpers import files
from helpers.show.plots import figure_png, in_notebook, show
from helpers.store.numbers import record

__all__ = ["LivePlot", "best_epoch", "draw_history", "figure_png", "in_notebook", "plot_history", "verdict"]


def plot_history(history: dict[str, list[float]], title: str = ""):
    """Loss and accuracy per epoch, two panels, shown in a notebook (the rule of :mod:`helpers.show.plots`).

    ``history`` is ``keras.callbacks.History.history`` or the same shape of dict; the epoch
    with the lowest validation loss is marked. Returns the figure.
    """
    return show(draw_history(history, title))


def draw_history(history: dict[str, list[float]], title: str = "", figure=None):
    """The figure of :func:`plot_history`, drawn but not shown (what :class:`LivePlot` redraws).

    Draws on ``figure`` if given (cleared first), else on a new ``matplotlib.figure.Figure``
    (no pyplot state, so it works headless and in threads).
    """
    fig = figure if figure is not None else Figure(figsize=(9, 3.4))
    fig.clear()
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "o-"), (f"val_{metric}", "s--")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)  # a fixed range: 99.5% → 100% must not look like a leap
        if history.get("val_loss"):
            kept = best_epoch(history)
            ax.axvline(kept, color="grey", lw=1, ls=":", label=f"kept: epoch {kept}")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def best_epoch(history: dict[str, list[float]]) -> int:
    """The epoch (from 1) with the lowest validation loss: the one ``fit_keep_best`` keeps."""
    values = history["val_loss"]
    return min(range(len(values)), key=values.__getitem__) + 1


def verdict(before: float, after: float, before_seconds: float, extra_seconds: float, n_photos: int) -> str:
    """One honest sentence on whether a training step was worth its time, from measured numbers.

    A change smaller than one photo of ``n_photos`` is reported as no change.
    """
    record(accuracy_before=float(before), accuracy_after=float(after), photos=n_photos)  # for the book (notebook 04)
    change = after - before
    cost = f"{extra_seconds:.1f} s more ({(before_seconds + extra_seconds) / max(before_seconds, 1e-9):.1f}× the time)"
    if round(abs(change) * n_photos) < 1:
        return (
            f"No visible difference on {n_photos} test photos ({before:.1%} → {after:.1%}) for {cost}: "
            "on these photos the head alone is enough."
        )
    direction = "better" if change > 0 else "worse"
    return f"{abs(change):.1%} {direction} on {n_photos} test photos ({before:.1%} → {after:.1%}) for {cost}."


class LivePlot(keras.callbacks.Callback):
    """Keras callback: loss/accuracy curves that update in place as the epochs end.

    ``live=None`` (default) updates live only inside a notebook kernel, at most once every ``every``
    seconds (and once more at the end): a head on stored features runs an epoch in milliseconds, and
    drawing a figure after each one took longer than the training. ``path`` saves the final figure as
    PNG (atomically) when training ends.
    """

    def __init__(
        self, title: str = "", live: bool | None = None, path: str | os.PathLike | None = None, every: float = 1.0
    ):
        super().__init__()
        self.title = title
        self.live = in_notebook() if live is None else live
        self.path = Path(path) if path is not None else None
        self.every = every
        self.history: dict[str, list[float]] = {}
        self.figure = None
        self._handle = None
        self._shown_at: float | None = None

    def on_train_begin(self, logs=None):
        self.history = {}
        self._handle = None
        self._shown_at = None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.live and (self._shown_at is None or time.monotonic() - self._shown_at >= self.every):
            self._show()

    def on_train_end(self, logs=None):
        self.figure = draw_history(self.history, self.title, self.figure)
        if self.path is not None:
            with files.atomic_path(self.path) as tmp:
                tmp.write_bytes(figure_png(self.figure))
        if self.live:
            self._show()

    def _show(self) -> None:
        self.figure = draw_history(self.history, self.title, self.figure)
        image = Image(data=figure_png(self.figure), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self._shown_at = time.monotonic()
