"""Classify your own photo (notebook 08): the upload control, driven the way the browser drives it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from helpers.ship import export
from helpers.show import upload

NAMES = ["bear", "lion", "tiger"]
NOW = datetime.now(timezone.utc)


def test_classify_bytes_gives_the_same_answer_as_predicting_the_file(tiny_trained_run):
    from helpers.run.evaluate import predict_files

    model = export.load_model(tiny_trained_run / "model.keras")
    photo = sorted((tiny_trained_run / "photos" / "val" / "lion").glob("*.jpg"))[0]
    pixels, best = upload.classify_bytes(model, NAMES, photo.read_bytes(), photo.name)
    assert pixels.shape == (48, 48, 3)
    [expected] = predict_files(model, [photo], NAMES)
    assert [name for name, _ in best] == [name for name, _ in expected.top]
    assert [p for _, p in best] == pytest.approx([p for _, p in expected.top], abs=1e-6)


def test_an_upload_that_is_not_a_photo_names_the_file(tiny_trained_run):
    model = export.load_model(tiny_trained_run / "model.keras")
    with pytest.raises(ValueError, match="notes.txt: not an image"):
        upload.classify_bytes(model, NAMES, b"hello", "notes.txt")


def test_the_control_classifies_each_uploaded_file_and_reports_bad_ones(tiny_trained_run):
    model = export.load_model(tiny_trained_run / "model.keras")
    box = upload.photo_classifier(model, NAMES)
    button, output = box.children
    assert upload.UPLOAD_CLASS in box._dom_classes
    photo = sorted((tiny_trained_run / "photos" / "val" / "tiger").glob("*.jpg"))[0]
    # what the browser sends when a learner picks two files (ipywidgets 8 value format)
    button.value = (
        {
            "name": photo.name,
            "type": "image/jpeg",
            "size": 1,
            "content": memoryview(photo.read_bytes()),
            "last_modified": NOW,
        },
        {"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"), "last_modified": NOW},
    )
    texts = "".join(o.get("text", "") for o in output.outputs if o.get("output_type") == "stream")
    images = [o for o in output.outputs if "image/png" in o.get("data", {})]
    assert "notes.txt: not an image" in texts
    assert f"{photo.name}: " in texts and "%" in texts
    assert len(images) == 1  # the photo is shown, the text file is not
