"""Classify your own photo: an upload control for a trained model (notebook 08).

:func:`photo_classifier` returns an ipywidgets box: a file-upload button and an output
area that shows each uploaded photo with the model's top classes. Nothing waits for an
upload, so a headless run (papermill) just displays the control and moves on. The work
itself is :func:`classify_bytes`, usable without any widget.
"""

from __future__ import annotations

import io

import ipywidgets as W
import keras
import numpy as np
from IPython.display import Image
from PIL import Image as PILImage

from helpers.data.folders import PhotoError, load_image
from helpers.run.evaluate import model_image_size, top_classes

UPLOAD_CLASS = "workbook-photo-upload"


def classify_bytes(
    model: keras.Model, class_names: list[str], content: bytes, name: str = "photo", top: int = 3
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Decode an uploaded file's bytes like any photo and return (pixels, top classes).

    Raises ``ValueError`` naming the file when the bytes are not an image we can read.
    """
    try:
        pixels = load_image(io.BytesIO(bytes(content)), model_image_size(model))
    except (PhotoError, OSError) as exc:  # PIL.UnidentifiedImageError is an OSError
        reason = str(exc).split(": ", 1)[-1] if isinstance(exc, PhotoError) else str(exc)  # it names "the photo"
        raise ValueError(f"{name}: not an image we can read ({reason}); upload a JPEG or PNG photo") from None
    return pixels, top_classes(model, pixels, class_names, top)


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) pairs from a ``FileUpload.value`` (ipywidgets 8: a tuple of dicts)."""
    if isinstance(value, dict):  # ipywidgets 7 kept a dict keyed by file name
        return [(name, item["content"]) for name, item in value.items()]
    return [(item["name"], item["content"]) for item in value]


def photo_classifier(model: keras.Model, class_names: list[str], top: int = 3) -> W.VBox:
    """An upload button; every photo uploaded is shown with the model's top classes."""
    upload = W.FileUpload(accept="image/*", multiple=True, description="Upload a photo")
    output = W.Output()

    def on_upload(change) -> None:
        output.outputs = ()  # show only the latest upload
        for name, content in _uploaded_files(change["new"]):
            try:
                pixels, best = classify_bytes(model, class_names, content, name, top)
            except ValueError as exc:
                output.append_stdout(f"{exc}\n")
                continue
            png = io.BytesIO()
            PILImage.fromarray(pixels).resize((192, 192)).save(png, format="PNG")
            output.append_display_data(Image(data=png.getvalue(), format="png"))
            output.append_stdout(f"{name}: " + ", ".join(f"{label} {p:.1%}" for label, p in best) + "\n")

    upload.observe(on_upload, names="value")
    box = W.VBox([upload, output])
    box.add_class(UPLOAD_CLASS)
    return box
