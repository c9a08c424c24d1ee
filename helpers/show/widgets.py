"""Interactive controls for the notebooks (notebook 04 chooses what to fine-tune with one).

Every control works headless: under papermill nobody moves it, so its value stays the
initial one taken from the notebook's ``parameters`` cell, and nothing waits for input.
The CSS classes (``workbook-…``) are stable so a browser test can find the controls.
"""

from __future__ import annotations

import html

import ipywidgets as W
import keras

from helpers.model import cuts
from helpers.model.lesson import unfreeze_above

HEAD_ONLY = "head only"
CHOOSER_CLASS = "workbook-freeze-chooser"
SLIDER_CLASS = "workbook-freeze-slider"
COUNT_CLASS = "workbook-trainable-count"


def count_text(report: cuts.TrainableReport) -> str:
    """The line the chooser shows, e.g. ``trainable weights: 3,843 of 2,261,827 (0.2%) · …``."""
    return str(report)


class FreezeChooser(W.VBox):
    """A slider over the base's blocks, bottom to top, plus "head only"; it freezes as it moves.

    Moving it to block B runs notebook 04's ``unfreeze_above(base, cut)`` with ``cut`` the
    block output below B (``HEAD_ONLY``: ``base.trainable = False``). ``fine_tune_from`` is
    the chosen block, ``cut`` the cut point below it (None for head only), and ``report``
    the :class:`~helpers.model.cuts.TrainableReport` the label shows.
    """

    def __init__(self, model: keras.Model, initial: str | int | None = None, **kwargs):
        self.model = model
        self.base = cuts.base_of(model)
        options = cuts.cut_points(self.base)[1:] + [HEAD_ONLY]
        below = cuts.resolve_block(self.base, None if initial == HEAD_ONLY else initial)
        start = cuts.block_above(self.base, below) if below else HEAD_ONLY
        self.slider = W.SelectionSlider(
            options=options,
            value=start,
            description="fine-tune from",
            continuous_update=True,
            readout=True,
            style={"description_width": "initial"},
            layout=W.Layout(width="95%"),
        )
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

    @property
    def cut(self) -> str | None:
        """The block output below the chosen block: ``unfreeze_above(base, cut)`` (None: head only)."""
        return cuts.resolve_block(self.base, self.fine_tune_from)

    def _update(self, change=None) -> None:
        if self.cut is None:
            self.base.trainable = False
        else:
            unfreeze_above(self.base, self.cut)
        self.report = cuts.trainable_report(self.model)
        above = f" · fine-tunes above {self.cut}" if self.cut else ""  # the name the next cells use
        self.count.value = f"<b>{html.escape(count_text(self.report))}</b>{html.escape(above)}"

    def __repr__(self) -> str:  # what papermill stores as text/plain for a headless run
        shown = count_text(self.report) if getattr(self, "report", None) else "not ready"
        if getattr(self, "report", None) is None or self.cut is None:
            return f"FreezeChooser(head only) — {shown}"
        return f"FreezeChooser(fine-tune from {self.fine_tune_from!r} up, i.e. above {self.cut!r}) — {shown}"


def freeze_chooser(model: keras.Model, initial: str | int | None = None) -> FreezeChooser:
    """The notebook-04 control: choose the block to fine-tune from and watch the trainable count.

    ``initial`` is ``FINE_TUNE_FROM`` from the parameters cell (see :func:`helpers.model.cuts.resolve_block`).
    The model is frozen accordingly right away, and again each time the slider moves.
    """
    return FreezeChooser(model, initial)
