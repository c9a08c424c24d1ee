"""Interactive controls for the notebooks (notebook 04 chooses what to fine-tune with one).

Every control works headless: under papermill nobody moves it, so its value stays the
initial one taken from the notebook's ``parameters`` cell, and nothing waits for input.
The CSS classes (``workbook-…``) are stable so a browser test can find the controls.
"""
from __future__ import annotations

import html

import ipywidgets as W
import keras

from . import surgery

HEAD_ONLY = "head only"
CHOOSER_CLASS = "workbook-freeze-chooser"
SLIDER_CLASS = "workbook-freeze-slider"
COUNT_CLASS = "workbook-trainable-count"


def resolve_block(model: keras.Model, choice: str | int | None) -> str | None:
    """A block name from a ``FINE_TUNE_FROM`` value.

    ``None`` (or ``0``, or ``"head only"``) trains the head only; a block name unfreezes that
    block and everything above; an integer ``k`` unfreezes the top ``k`` blocks (so one
    value works for every backbone).
    """
    names = surgery.block_names(model)
    if choice is None or choice == HEAD_ONLY or choice == 0:
        return None
    if isinstance(choice, int) and not isinstance(choice, bool):
        if not 0 < choice <= len(names):
            raise ValueError(f"FINE_TUNE_FROM={choice}: {model.name} has {len(names)} blocks; "
                             f"choose 0…{len(names)} or a block name")
        return names[-choice]
    if choice not in names:
        raise ValueError(f"FINE_TUNE_FROM={choice!r} is not a block of {model.name}; choose one of "
                         f"{names}, an integer (how many top blocks to train) or None (head only)")
    return choice


def count_text(report: surgery.TrainableReport) -> str:
    """The line the chooser shows, e.g. ``trainable weights: 3,843 of 2,261,827 (0.2%) · …``."""
    n_blocks = len(report.frozen_blocks) + len([b for b in report.trainable_blocks if b != "head"])
    return (f"trainable weights: {report.trainable_weights:,} of {report.total_weights:,} "
            f"({report.trainable_weights / max(report.total_weights, 1):.1%}) · "
            f"frozen blocks: {len(report.frozen_blocks)} of {n_blocks}")


class FreezeChooser(W.VBox):
    """A slider over the blocks, bottom to top, plus "head only"; it freezes ``model`` as it moves.

    ``fine_tune_from`` is the current choice (a block name, or None for head only);
    ``report`` is the :class:`~helpers.surgery.TrainableReport` for it, and the label below
    the slider shows its count as ``trainable weights: N of M``.
    """

    def __init__(self, model: keras.Model, initial: str | int | None = None, **kwargs):
        self.model = model
        options = surgery.block_names(model) + [HEAD_ONLY]
        start = resolve_block(model, initial) or HEAD_ONLY
        self.slider = W.SelectionSlider(options=options, value=start, description="fine-tune from",
                                        continuous_update=True, readout=True,
                                        style={"description_width": "initial"},
                                        layout=W.Layout(width="95%"))
        self.slider.add_class(SLIDER_CLASS)
        self.count = W.HTML()
        self.count.add_class(COUNT_CLASS)
        super().__init__([self.slider, self.count], **kwargs)
        self.add_class(CHOOSER_CLASS)
        self.report = None
        self.slider.observe(self._update, names="value")
        self._update()

    @property
    def fine_tune_from(self) -> str | None:
        return None if self.slider.value == HEAD_ONLY else self.slider.value

    def _update(self, change=None) -> None:
        surgery.freeze(self.model, fine_tune_from=self.fine_tune_from)
        self.report = surgery.trainable_report(self.model)
        self.count.value = f"<b>{html.escape(count_text(self.report))}</b>"

    def __repr__(self) -> str:  # what papermill stores as text/plain for a headless run
        shown = count_text(self.report) if getattr(self, "report", None) else "not ready"
        return f"FreezeChooser(fine_tune_from={self.fine_tune_from!r}) — {shown}"


def freeze_chooser(model: keras.Model, initial: str | int | None = None) -> FreezeChooser:
    """The notebook-04 control: choose the block to fine-tune from and watch the trainable count.

    ``initial`` is ``FINE_TUNE_FROM`` from the parameters cell (see :func:`resolve_block`).
    The model is frozen accordingly right away, and again each time the slider moves.
    """
    return FreezeChooser(model, initial)
