"""Figures: the network as a stack of blocks (notebook 02) and photo grids (notebooks 01 and 03).

The block diagram puts the input at the bottom and the classifier at the top, so that
"popping the top" is literally what happens to the picture.

**One rule for every plot helper of the workbook** (this module, ``curves``, ``evaluate``,
``explain``, ``compare``, ``small_data``): a helper draws its figure and ends with
``return plots.show(fig)``. Inside a notebook kernel (JupyterLab, papermill, nbval)
:func:`show` displays the figure once, as a PNG, right away, and closes it in pyplot: it
appears whichever matplotlib backend is active, whether the figure was made with pyplot or
not, and pyplot's inline backend does not show it a second time. Elsewhere (scripts,
tests) nothing is displayed. The figure is returned either way, for saving or testing; in a
notebook, end the call with ``;`` (or assign it) so that the returned figure is not shown
again as the cell's value. ``tests/test_notebooks.py`` checks every executed notebook for
figures that appear only as text.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
from matplotlib.patches import FancyBboxPatch

from helpers.model import cuts
from helpers.settings import in_notebook
from helpers.store.numbers import record

COLOURS = {
    "pretrained": "#cfd8e3",  # a layer as it came from ImageNet
    "frozen": "#9db4cf",  # kept, not learning
    "trainable": "#f6b26b",  # kept, learning
    "new": "#93c47d",  # the new head
    "popped": "#f4cccc",  # removed
}


def figure_png(fig, dpi: int = 80, tight: bool = False) -> bytes:
    """A figure rendered to PNG bytes (``tight``: cropped to what is drawn, text outside the axes included)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def show(fig):
    """Display ``fig`` once as a PNG inside a notebook kernel, and close it there; return it.

    The end of every plot helper (see the module's doc). Outside a notebook it does nothing.
    """
    if in_notebook():
        display(Image(data=figure_png(fig, dpi=100, tight=True), format="png"))
        plt.close(fig)  # pyplot's inline backend would show it again at the end of the cell
    return fig


@dataclass
class Box:
    """One box of the block diagram: a block (or a single layer) of the network."""

    label: str
    layer_names: list[str]
    weights: int
    shape: str
    state: str  # a key of COLOURS
    layers: list = field(default_factory=list, repr=False, compare=False)  # the layer objects themselves

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)


def _shape(layer: keras.layers.Layer) -> str:
    shape = layer.output.shape if hasattr(layer, "output") else None
    if shape is None:
        return ""
    return "×".join(str(d) for d in shape[1:])


def _count(layers) -> int:
    return int(sum(math.prod(int(d) for d in w.shape) for layer in layers for w in layer.weights))


def _training_state(layers, show_training: bool) -> str:
    if not show_training:
        return "pretrained"
    learns = any(layer.trainable and layer.trainable_weights for layer in layers)
    return "trainable" if learns else "frozen"


def _groups(model: keras.Model) -> list[tuple[str, list]]:
    """``(label, layers)`` bottom to top: a nested base is expanded into its blocks."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    outer = model.layers if nested else [model]
    groups: list[tuple[str, list]] = []
    for layer in outer:
        if layer is not (nested[0] if nested else model):
            groups.append(
                (f"input ({layer.name})" if isinstance(layer, keras.layers.InputLayer) else layer.name, [layer])
            )
            continue
        base = layer
        for number, (name, layers) in enumerate(cuts.blocks(base)):
            if number == 0 and not nested:
                groups.append((f"input ({base.layers[0].name})", [base.layers[0]]))
            if len(layers[-1].output.shape) != 4:  # pooling, classifier: one box per layer
                groups.extend((one.name, [one]) for one in layers)
            else:
                groups.append((f"stem … {name}" if number == 0 else name, layers))
    return groups


def layer_ids(model: keras.Model) -> set[int]:
    """The identities (``id``) of every layer of ``model``, nested models' layers included.

    Surgery is judged on identity, not names: a second InceptionV3 numbers its unnamed layers
    anew (``conv2d_94``), and a new head may reuse a name (``predictions``) for a new layer.
    """
    return {id(layer) for layer in cuts.flat_layers(model)}


def network_boxes(
    model: keras.Model, reference: keras.Model | None = None, popped: bool = False, show_training: bool = True
) -> list[Box]:
    """The boxes of :func:`draw_network`, bottom (input) to top (output).

    Input and preprocessing get their own boxes; each block of the base
    (:func:`helpers.model.cuts.blocks`) is one box; pooling and the head are one layer per box.
    With ``reference`` (the model after surgery, or before it), layers that are not layers of
    ``reference`` -- the same objects, not the same names -- are marked ``popped``
    (``popped=True``: ``model`` is the original) or ``new`` (``popped=False``: ``model`` is the
    result). A block only partly in ``reference`` is drawn as two boxes, its kept part below.
    """
    ref = layer_ids(reference) if reference is not None else None
    boxes = []
    for label, layers in _groups(model):
        parts = [(label, layers, None)]
        if ref is not None:
            kept = [layer for layer in layers if id(layer) in ref]
            gone = [layer for layer in layers if id(layer) not in ref]
            mark = "popped" if popped else "new"
            if kept and gone:
                parts = [(label, kept, None), (f"{label} ({mark} part)", gone, mark)]
            elif gone:
                parts = [(label, gone, mark)]
        for text, part, state in parts:
            boxes.append(
                Box(
                    text,
                    [layer.name for layer in part],
                    _count(part),
                    _shape(part[-1]),
                    state or _training_state(part, show_training),
                    list(part),
                )
            )
    return boxes


def _human(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,}"


def draw_network(
    model: keras.Model,
    ax=None,
    reference: keras.Model | None = None,
    popped: bool = False,
    show_training: bool = True,
    title: str | None = None,
    n_rows: int | None = None,
):
    """Draw ``model`` as a stack of blocks, input at the bottom (notebook 02).

    Each box says the block's name, its number of layers and weights and its output
    shape. Colours: frozen, trainable, new (head) and popped, see :data:`COLOURS`.
    ``n_rows`` pads the stack so two diagrams side by side line up.
    """
    boxes = network_boxes(model, reference, popped, show_training)
    rows = max(n_rows or 0, len(boxes))
    own = ax is None
    if own:
        _, ax = plt.subplots(figsize=(4.8, 0.34 * rows + 0.8))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, rows - 0.2)
    ax.axis("off")
    for i, box in enumerate(boxes):
        patch = FancyBboxPatch(
            (0.02, i - 0.32),
            0.96,
            0.64,
            boxstyle="round,pad=0.0,rounding_size=0.08",
            facecolor=COLOURS[box.state],
            edgecolor="#555555",
            linestyle="--" if box.state == "popped" else "-",
            linewidth=0.8,
        )
        ax.add_patch(patch)
        detail = f"{box.n_layers} layer{'s' if box.n_layers != 1 else ''}"
        if box.weights:
            detail += f", {_human(box.weights)} weights"
        colour = "#888888" if box.state == "popped" else "black"
        ax.text(0.05, i, box.label, va="center", ha="left", fontsize=8, color=colour, fontweight="bold")
        ax.text(0.95, i, f"{detail} → {box.shape}", va="center", ha="right", fontsize=7, color=colour)
        if i:
            ax.annotate(
                "",
                xy=(0.5, i - 0.32),
                xytext=(0.5, i - 0.68),
                arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.0},
            )
    if title:
        ax.set_title(title, fontsize=10)
    if own:
        show(ax.figure)
    return ax


def draw_surgery(before: keras.Model, after: keras.Model, titles: tuple[str, str] | None = None):
    """Two diagrams side by side: the network before surgery (popped parts dashed) and after.

    ``after`` must be built from ``before``'s own layers (``keras.Model(before.input,
    before.get_layer(cut).output)``, then a head): what is popped, kept and new is read from
    the layer objects the two models share, not from their names.
    """
    if not layer_ids(before) & layer_ids(after):
        raise ValueError(
            f"{after.name} shares no layer with {before.name}: build it from {before.name}'s own layers "
            f"(keras.Model({before.name}.input, {before.name}.get_layer(cut).output)), so that the picture "
            "can tell what was kept"
        )
    left = network_boxes(before, after, popped=True, show_training=False)
    right = network_boxes(after, before, popped=False)
    rows = max(len(left), len(right))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.34 * rows + 1.4))
    titles = titles or (
        f"before: {before.name}, {len(before.layers)} layers",
        f"after: {after.name}, {len(right)} boxes",
    )
    draw_network(before, axes[0], after, popped=True, show_training=False, title=titles[0], n_rows=rows)
    draw_network(after, axes[1], before, popped=False, title=titles[1], n_rows=rows)
    used = {b.state for b in left + right}
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=COLOURS[s], edgecolor="#555555") for s in COLOURS if s in used]
    fig.legend(
        handles, [s for s in COLOURS if s in used], loc="lower center", ncol=len(handles), fontsize=8, frameon=False
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return show(fig)


def show_photos(
    images, captions: list[str] | None = None, ok: list[bool] | None = None, ncols: int = 3, size: float = 2.6
):
    """A grid of photos with a caption under each (green when ``ok``, red when not)."""
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("no photos to show")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    lines = max((c.count("\n") + 1 for c in captions), default=0) if captions is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.2 + 0.16 * lines) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].astype(np.uint8))
        if captions is not None:
            colour = "black" if ok is None else ("#1b7a1b" if ok[i] else "#b22222")
            ax.set_title(captions[i], fontsize=8, color=colour, loc="left")
    fig.tight_layout()
    return show(fig)


def prediction_captions(top: list[list[tuple[str, float]]], truth: list[str] | None = None) -> list[str]:
    """Captions like ``"true: lion\\nlion 0.93 · tiger 0.04"`` from decoded predictions."""
    captions = []
    for i, row in enumerate(top):
        text = "\n".join(f"{name} {p:.2f}" for name, p in row)
        captions.append((f"true: {truth[i]}\n" if truth is not None else "") + text)
    return captions


def show_predictions(
    images, probabilities, class_names: list[str], labels=None, n: int = 9, top: int = 2, ncols: int = 3
):
    """``n`` photos spread evenly over ``images`` with the model's top guesses (notebook 03).

    Captions are green where the top guess is the true label, red where it is not.
    """
    probabilities = np.asarray(probabilities)
    if len(images) != len(probabilities):
        raise ValueError(f"{len(images)} images but {len(probabilities)} rows of probabilities")
    picks = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int))
    ranked = [
        [(class_names[j], float(probabilities[i, j])) for j in probabilities[i].argsort()[::-1][:top]] for i in picks
    ]
    truth = [class_names[int(labels[i])] for i in picks] if labels is not None else None
    ok = [row[0][0] == t for row, t in zip(ranked, truth)] if truth is not None else None
    if labels is not None:  # the key number of notebook 03, for the book's index (helpers.tools.book)
        record(accuracy=float(np.mean(probabilities.argmax(-1) == np.asarray(labels))), photos=len(labels))
    return show_photos(np.asarray(images)[picks], prediction_captions(ranked, truth), ok, ncols=ncols)
