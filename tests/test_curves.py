"""Live training curves (notebooks 03–05): one figure, updated in place, static when headless."""

from __future__ import annotations

import keras
import nbformat
import numpy as np
from nbclient import NotebookClient

from helpers.settings import PROJECT_ROOT as ROOT
from helpers.show import curves


def tiny_fit(callback: keras.callbacks.Callback, epochs: int = 3) -> keras.callbacks.History:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(x, y, validation_split=0.25, epochs=epochs, verbose=0, callbacks=[callback])


def test_headless_liveplot_leaves_a_static_figure_and_saves_it(tmp_path):
    plot = curves.LivePlot(title="head", path=tmp_path / "curves.png")
    assert plot.live is False  # pytest is not a notebook kernel
    history = tiny_fit(plot)
    assert plot.history["loss"] == history.history["loss"]
    assert set(plot.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_axis = plot.figure.axes[0]
    assert loss_axis.get_title() == "loss" and len(loss_axis.lines) == 3  # train, val, and the epoch kept
    assert list(loss_axis.lines[0].get_ydata()) == history.history["loss"]
    kept = curves.best_epoch(history.history)
    assert kept == 1 + int(np.argmin(history.history["val_loss"]))
    assert (
        list(loss_axis.lines[2].get_xdata()) == [kept, kept] and f"kept: epoch {kept}" in loss_axis.lines[2].get_label()
    )
    assert plot.figure.axes[1].get_ylim() == (0, 1.02)  # accuracy on a fixed scale
    assert all(float(t).is_integer() for t in loss_axis.get_xticks())  # whole epochs


def test_in_a_notebook_kernel_the_figure_updates_in_place(tmp_path):
    """A real kernel: three epochs give ONE image output (updated twice), not three."""
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from test_curves import tiny_fit\n"
        "from helpers.show.curves import LivePlot\n"
        "plot = LivePlot()\n"
        "_ = tiny_fit(plot)\n"
        "print(plot.live, len(plot.history['loss']))"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 1, outputs
    assert any("True 3" in o.get("text", "") for o in outputs if o.output_type == "stream")


def test_live_updates_come_at_most_once_per_interval_and_once_at_the_end(monkeypatch):
    """Epochs of milliseconds (a head on stored features) are not each drawn: the first, then one per
    ``every`` seconds, then the end; with ``every=0`` every epoch is drawn."""
    drawn = {}
    for every in (3600, 0):
        plot = curves.LivePlot(live=True, every=every)
        shown = []

        def show(plot=plot, shown=shown):
            shown.append(len(plot.history["loss"]))
            plot._shown_at = curves.time.monotonic()

        monkeypatch.setattr(plot, "_show", show)
        tiny_fit(plot, epochs=5)
        drawn[every] = shown
    assert drawn[3600] == [1, 5]  # the first epoch, then the end
    assert drawn[0] == [1, 2, 3, 4, 5, 5]  # every epoch, then the end
