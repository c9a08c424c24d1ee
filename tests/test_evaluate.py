"""Evaluation (notebook 06): accuracy, per-class precision/recall, confusion matrix, galleries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.data import folders as data
from helpers.run import evaluate
from helpers.ship import export
from helpers.show import results

NAMES = ["bear", "lion", "tiger"]


def small_evaluation() -> evaluate.Evaluation:
    """Six photos: two bears right, a lion taken for a tiger (confidently), tigers right and wrong."""
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # bear  -> bear
            [0.6, 0.3, 0.1],  # bear  -> bear
            [0.1, 0.8, 0.1],  # lion  -> lion
            [0.05, 0.05, 0.9],  # lion  -> tiger (confidently wrong)
            [0.2, 0.2, 0.6],  # tiger -> tiger
            [0.4, 0.35, 0.25],
        ]
    )  # tiger -> bear (unsure)
    return evaluate.Evaluation(NAMES, np.array([0, 0, 1, 1, 2, 2]), probs)


def test_accuracy_per_class_and_confusion_matrix():
    result = small_evaluation()
    assert result.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(result.confusion(), [[2, 0, 0], [0, 1, 1], [1, 0, 1]])
    per_class = result.per_class()
    assert per_class["bear"]["precision"] == pytest.approx(2 / 3)  # one tiger called a bear
    assert per_class["bear"]["recall"] == pytest.approx(1.0)
    assert per_class["lion"]["recall"] == pytest.approx(0.5)
    assert per_class["tiger"]["support"] == 2


def test_misclassified_come_most_confident_first_and_least_confident_are_the_unsure():
    result = small_evaluation()
    assert result.misclassified() == [3, 5]
    assert result.least_confident(2) == [5, 1]


def test_to_dict_is_json_ready():
    report = json.loads(json.dumps(small_evaluation().to_dict()))
    assert report["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert [m["true"] for m in report["misclassified"]] == ["lion", "tiger"]


def test_evaluate_model_scores_a_saved_model_and_writes_json_beside_it(tiny_trained_run):
    result = evaluate.evaluate_model(tiny_trained_run / "model.keras", tiny_trained_run / "photos")
    model = export.load_model(tiny_trained_run / "model.keras")
    folder = data.load_folder(tiny_trained_run / "photos")
    expected = model.predict(data.load_images(folder.val.paths, 48).astype("float32"), verbose=0)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    assert result.accuracy == pytest.approx(float(np.mean(expected.argmax(1) == np.array(folder.val.labels))))
    written = json.loads((tiny_trained_run / evaluate.EVALUATION_FILE).read_text())
    assert written["accuracy"] == pytest.approx(result.accuracy)
    assert written["class_names"] == NAMES and np.sum(written["confusion_matrix"]) == 12


def test_evaluate_model_refuses_photos_of_classes_the_model_does_not_know(tiny_trained_run, tmp_path):
    from conftest import make_photo

    for name in ("bear", "zebra"):
        make_photo(tmp_path / "other" / "val" / name / "a.jpg", (10, 10, 10))
        make_photo(tmp_path / "other" / "train" / name / "a.jpg", (10, 10, 10))
    with pytest.raises(ValueError, match="zebra"):
        evaluate.evaluate_model(tiny_trained_run / "model.keras", tmp_path / "other", out=tmp_path)


def test_predict_files_reports_a_broken_file_and_classifies_the_rest(tiny_trained_run, tmp_path):
    model = export.load_model(tiny_trained_run / "model.keras")
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    good = sorted((tiny_trained_run / "photos" / "val" / "tiger").glob("*.jpg"))[0]
    results = evaluate.predict_files(model, [broken, good, tmp_path / "missing.jpg"], NAMES, top=2)
    assert "broken.jpg" in results[0].error and results[0].top == []
    assert results[1].error is None and len(results[1].top) == 2
    assert results[1].top[0][1] >= results[1].top[1][1]
    assert "missing.jpg" in results[2].error
    assert broken.read_text() == "not a photo"  # user files are never touched


def test_figures_draw_without_a_display():
    import matplotlib

    matplotlib.use("Agg")
    result = small_evaluation()
    fig = results.confusion_matrix(result)
    assert "accuracy 66.7%" in fig.axes[0].get_title()
    images = np.zeros((6, 32, 32, 3), np.uint8)
    gallery = results.gallery(result, result.misclassified(), images, title="misclassified")
    titles = [ax.get_title() for ax in gallery.axes if ax.get_title()]
    assert titles == ["true lion\npredicted tiger 90%", "true tiger\npredicted bear 40%"]


def test_evaluate_scores_probabilities_from_stored_activations_like_the_model(tiny_trained_run, tmp_path):
    """06's path: the test photos' stored activations through the top give the whole model's verdict."""
    from helpers.run import train
    from helpers.store.cache import BottleneckCache

    model = export.load_model(tiny_trained_run / "model.keras")
    folder = data.load_folder(tiny_trained_run / "photos")
    x = data.load_images(folder.val.paths, 48).astype("float32")
    recipe = train.Recipe(cache=BottleneckCache(tmp_path / "cache", dtype="float32"))
    stored = train.probabilities(model, folder.val, recipe, "pool")
    np.testing.assert_allclose(stored, model.predict(x, verbose=0), atol=1e-5)
    result = evaluate.evaluate(model, x, folder.val.labels, NAMES, probabilities=stored)
    assert result.accuracy == pytest.approx(float(np.mean(stored.argmax(1) == np.array(folder.val.labels))))
    with pytest.raises(ValueError, match="probabilities of shape"):
        evaluate.evaluate(model, x, folder.val.labels, NAMES, probabilities=stored[:3])


def test_the_mistakes_are_worded_from_the_confusion_matrix():
    assert evaluate.describe_mistakes(small_evaluation()) == (
        "2 of 6 test photos wrong (66.7% right): 1 lion called tiger; 1 tiger called bear."
    )
    right = evaluate.Evaluation(NAMES, np.array([0, 1]), np.eye(3)[[0, 1]])
    assert evaluate.describe_mistakes(right).startswith("Nothing off the diagonal: all 2 test photos right")
