"""The network diagram of notebook 02 and the photo grids of notebooks 01 and 03."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers.model import backbones, cuts
from helpers.model.lesson import add_head, unfreeze_above
from helpers.show import plots

CLASSES = ["bear", "lion", "tiger"]


@pytest.fixture(scope="module")
def full():
    """A small MobileNetV2 with its 1000-class top (random weights: the picture needs no weights)."""
    return keras.applications.MobileNetV2(alpha=0.35, weights=None)


@pytest.fixture(scope="module")
def transferred(full):
    base = keras.Model(full.input, full.get_layer("block_14_add").output, name="popped")  # popped to block_14_add
    base.trainable = False
    return add_head(base, CLASSES, backbones.preprocess_layer("mobilenet_v2"))


def _all_layers(model):
    return [
        name
        for layer in model.layers
        for name in (_all_layers(layer) if isinstance(layer, keras.Model) else [layer.name])
    ]


def test_every_layer_is_in_exactly_one_box(full, transferred):
    for model in (full, transferred):
        boxes = plots.network_boxes(model)
        names = [name for box in boxes for name in box.layer_names]
        wanted = _all_layers(model)
        if model is transferred:  # the nested base's own input layer is drawn as the outer input
            wanted = [n for n in wanted if n != cuts.base_of(model).layers[0].name]
        assert sorted(names) == sorted(wanted)


def test_boxes_run_from_input_to_head(transferred):
    labels = [box.label for box in plots.network_boxes(transferred)]
    assert labels[:3] == ["input (image)", "preprocess", "stem … block_1_project_BN"]
    assert labels[-4:] == ["block_14_add", "pool", "dropout", "predictions"]


def test_before_marks_popped_blocks_after_marks_new_head(full, transferred):
    before = plots.network_boxes(full, transferred, popped=True, show_training=False)
    popped = [box.label for box in before if box.state == "popped"]
    # Keras numbers auto-named layers per session ("global_average_pooling2d_4"): match the stem
    assert popped[:3] == ["block_15_add", "block_16_project_BN", "out_relu"]
    assert popped[3].startswith("global_average_pooling2d")
    assert popped[4:] == ["predictions"]  # the old 1000-way layer, although the new head reuses its name
    assert {box.state for box in before} == {"pretrained", "popped"}
    after = plots.network_boxes(transferred, full)
    new = ["input (image)", "preprocess", "pool", "dropout", "predictions"]
    assert [box.label for box in after if box.state == "new"] == new
    assert {box.state for box in after if box.state != "new"} == {"frozen"}  # only the new head learns


def _ids(layers) -> set[int]:
    return {id(layer) for layer in layers}


SURGERIES = {  # backbone: (constructor with weights=None and its 1000-way top, the cut it is popped to)
    "inception_v3": (lambda: keras.applications.InceptionV3(weights=None), "mixed7"),
    "mobilenet_v2": (lambda: keras.applications.MobileNetV2(weights=None), "block_14_add"),
}


@pytest.mark.parametrize("name", sorted(SURGERIES))
def test_the_picture_marks_exactly_the_layers_popped_kept_and_added(name):
    """Judged on layer identity: popped = the original's layers not in the new model, new = the reverse."""
    build, cut = SURGERIES[name]
    original = build()
    for end in (original.layers[-3].name, cut):  # popped twice (include_top=False), and further down
        base = keras.Model(original.input, original.get_layer(end).output, name=f"popped_to_{end}")
        base.trainable = False
        model = add_head(base, CLASSES, backbones.preprocess_layer(name))
        in_model, in_original = _ids(cuts.flat_layers(model)), _ids(original.layers)

        before = plots.network_boxes(original, model, popped=True, show_training=False)
        assert _ids(layer for box in before for layer in box.layers) == in_original  # every layer, once
        popped = _ids(layer for box in before if box.state == "popped" for layer in box.layers)
        assert popped == in_original - in_model
        assert id(original.layers[-1]) in popped and id(original.layers[0]) not in popped  # the 1000-way top; input
        assert {box.state for box in before if box.state != "popped"} == {"pretrained"}

        after = plots.network_boxes(model, original)
        drawn = _ids(layer for box in after for layer in box.layers)
        assert drawn == in_model - {id(base.layers[0])}  # the base's input is drawn as the model's input
        new = _ids(layer for box in after if box.state == "new" for layer in box.layers)
        assert new == in_model - in_original
        assert new == _ids(model.get_layer(n) for n in ("image", "preprocess", "pool", "dropout", "predictions"))
        frozen = [layer for box in after if box.state == "frozen" for layer in box.layers]
        assert _ids(frozen) == drawn - new and not any(layer.trainable_weights for layer in frozen)


def test_a_block_cut_inside_is_drawn_as_its_kept_and_its_popped_part(full):
    end = full.get_layer("block_16_project").name  # inside the block that ends in block_16_project_BN
    base = keras.Model(full.input, full.get_layer(end).output)
    model = add_head(base, CLASSES, backbones.preprocess_layer("mobilenet_v2"))
    boxes = {box.label: box for box in plots.network_boxes(full, model, popped=True, show_training=False)}
    assert boxes["block_16_project_BN"].state == "pretrained"
    assert boxes["block_16_project_BN"].layers[-1] is full.get_layer(end)
    assert boxes["block_16_project_BN (popped part)"].state == "popped"
    assert [layer.name for layer in boxes["block_16_project_BN (popped part)"].layers] == ["block_16_project_BN"]


def test_draw_surgery_refuses_models_that_share_no_layer(full, transferred):
    other = keras.applications.MobileNetV2(alpha=0.35, weights=None)  # the same architecture, other objects
    with pytest.raises(ValueError, match="shares no layer"):
        plots.draw_surgery(other, transferred)


def test_fine_tuned_blocks_are_drawn_trainable(transferred):
    base = cuts.base_of(transferred)
    unfreeze_above(base, "block_12_add")
    try:
        states = {box.label: box.state for box in plots.network_boxes(transferred)}
    finally:
        base.trainable = False
    assert states["block_12_add"] == "frozen"
    assert states["block_13_project_BN"] == states["block_14_add"] == "trainable"
    assert states["predictions"] == "trainable"


def test_box_weights_add_up_to_the_model(transferred):
    boxes = plots.network_boxes(transferred)
    assert sum(box.weights for box in boxes) == transferred.count_params()
    assert boxes[-1].shape == "3"


def test_draw_surgery_writes_a_readable_png(full, transferred, tmp_path):
    fig = plots.draw_surgery(full, transferred)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"pool", "predictions", "block_14_add", "block_15_add"} <= texts
    assert len(fig.axes) == 2
    path = tmp_path / "surgery.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    width, height = plt.imread(path).shape[1::-1]
    assert width > 400 and height > 400


def test_show_photos_colours_right_and_wrong():
    images = np.zeros((4, 8, 8, 3), np.uint8)
    fig = plots.show_photos(images, ["a", "b", "c", "d"], ok=[True, False, True, True], ncols=3)
    assert len(fig.axes) == 6  # 2 rows × 3 columns, the last two empty
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 1, 1, 0, 0]
    colours = [ax._left_title.get_color() for ax in fig.axes[:4]]
    assert colours[1] != colours[0] == colours[2]
    plt.close(fig)
    with pytest.raises(ValueError, match="no photos"):
        plots.show_photos(np.zeros((0, 8, 8, 3)))


def test_show_predictions_picks_spread_photos_and_names_the_guess():
    images = np.zeros((10, 8, 8, 3), np.uint8)
    probabilities = np.tile([0.1, 0.7, 0.2], (10, 1))
    labels = np.array([1] * 5 + [0] * 5)
    fig = plots.show_predictions(images, probabilities, CLASSES, labels, n=4)
    captions = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert len(captions) == 4
    assert captions[0] == "true: lion\nlion 0.70\ntiger 0.20"
    assert captions[-1].startswith("true: bear\nlion 0.70")
    plt.close(fig)
    with pytest.raises(ValueError, match="probabilities"):
        plots.show_predictions(images, probabilities[:3], CLASSES)


def test_the_comparison_figure_draws_the_measured_rows_and_names_the_skipped():
    """Notebook 07's bars (helpers.show.results.comparison): a panel per measure, the few-photo one with its spread."""
    from helpers.run.compare import BackboneResult
    from helpers.show import results

    def row(name, accuracy, few):
        return BackboneResult(name, "ok", "", 96, "imagenet", accuracy, 0.5, 1.0, 3.0, 2_000_000, 8.0, 1, few, 30)

    rows = [row("mobilenet_v2", 0.9, [0.6, 0.8]), row("resnet50", 0.8, [0.5, 0.7]), BackboneResult("vgg16", "skipped")]
    fig = results.comparison(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["test accuracy", "1 photos/class (mean)", "head training (s)", "inference (ms / image)",
                      "parameters (M)", ".keras file (MB)"]  # fmt: skip
    assert [bar.get_height() for bar in fig.axes[0].patches] == pytest.approx([0.9, 0.8])
    assert [bar.get_height() for bar in fig.axes[4].patches] == pytest.approx([2.0, 2.0])
    assert "skipped (no weights): vgg16" in [t.get_text() for t in fig.texts]
    plt.close(fig)
