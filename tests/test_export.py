"""Export (notebook 08): .keras in safe mode, SavedModel and TFLite agree with the Keras model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from helpers.data import folders as data
from helpers.ship import checks, export

NAMES = ["bear", "lion", "tiger"]
SAVED_MODEL_TOLERANCE = 1e-3  # the bound for the SavedModel
TFLITE_TOLERANCE = 1e-3  # our stated bound for float32 TFLite (measured ~1e-6, see notebook 08)


def export_as_notebook_08(model: keras.Model, class_names: list[str], out: Path) -> export.Exported:
    """Every format, written by the calls notebook 08's cells make (it writes them out as lesson code)."""
    import tensorflow as tf

    keras_file = out / "model.keras"
    model.save(keras_file)
    labels = export.write_labels(class_names, out / export.LABELS_FILE)
    saved_model = out / "saved_model"
    model.export(str(saved_model), format="tf_saved_model", verbose=False)
    tflite = out / "model.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())
    skipped = {"onnx": export.onnx_missing(model)} if export.onnx_missing(model) else {}
    onnx = None if skipped else export.export_onnx(model, out / "model.onnx")
    return export.Exported(keras_file, saved_model, tflite, labels, skipped, onnx)


@pytest.fixture(scope="module")
def exported(tiny_trained_run, tmp_path_factory):
    model = export.load_model(tiny_trained_run / "model.keras")
    return model, export_as_notebook_08(model, NAMES, tmp_path_factory.mktemp("export"))


def val_photos(run) -> np.ndarray:
    folder = data.load_folder(run / "photos")
    return data.load_images(folder.val.paths, 48)


def test_export_writes_every_format_and_a_labels_file(exported):
    _, files = exported
    assert files.keras_file.name == "model.keras" and (files.saved_model / "saved_model.pb").is_file()
    assert files.tflite.read_bytes()[4:8] == b"TFL3"  # the TFLite flatbuffer identifier
    assert export.read_labels(files.labels) == NAMES
    assert export.class_names_for(files.keras_file) == NAMES
    assert all(size > 0 for size in files.sizes().values())


def test_every_reloaded_format_agrees_with_the_keras_model(exported, tiny_trained_run):
    model, files = exported
    images = val_photos(tiny_trained_run)
    probs = model.predict(images.astype("float32"), verbose=0)
    assert probs.max(axis=1).min() > 0.34, "the model must be decisive for the comparison to mean something"
    report = checks.check_exports(files, images, model)
    assert report["keras_reloaded"]["max_abs_diff"] == 0.0
    assert report["saved_model"]["max_abs_diff"] <= SAVED_MODEL_TOLERANCE
    assert report["tflite"]["max_abs_diff"] <= TFLITE_TOLERANCE
    assert report["saved_model"]["top1_agreement"] == report["tflite"]["top1_agreement"] == 1.0


def test_agreement_notices_a_difference():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert checks.agreement(a, b) == {"max_abs_diff": pytest.approx(0.4), "top1_agreement": 0.5}


def test_safe_mode_refuses_a_model_that_carries_python_code(tmp_path):
    inputs = keras.Input((4,))
    risky = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    risky.save(tmp_path / "risky.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        export.load_model(tmp_path / "risky.keras")


def test_loading_something_that_is_not_a_model_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m helpers train"):
        export.load_model(tmp_path / "nothing.keras")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .keras file"):
        export.load_model(tmp_path / "weights.h5")


def test_a_format_that_cannot_be_written_says_why(exported, monkeypatch):
    model, files = exported
    assert (files.onnx is None) == ("onnx" in files.skipped)  # ONNX where Keras' converter is installed
    monkeypatch.setitem(export.ONNX_CONVERTERS, keras.backend.backend(), "no_such_converter_pkg")
    assert "no_such_converter_pkg is not installed" in export.onnx_missing(model)
    with pytest.raises(RuntimeError, match="ONNX export skipped"):
        export.export_onnx(model, "never.onnx")


def test_onnx_under_jax_needs_keras_3_12_or_later(monkeypatch):
    """Known by Keras' version (public), not by probing its private export module."""
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(keras, "__version__", "3.11.3")
    assert "Keras 3.11.3 exports ONNX under JAX through jax2tf and tf2onnx" in export.onnx_missing()
    monkeypatch.setattr(keras, "__version__", "3.12.0")
    monkeypatch.setitem(export.ONNX_CONVERTERS, "jax", "no_such_converter_pkg")
    assert "no_such_converter_pkg is not installed" in export.onnx_missing()


def test_without_another_backend_the_cross_check_is_skipped_with_the_reason(exported, tmp_path, monkeypatch):
    from helpers import settings

    _, files = exported
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)  # no .venv, .venv-jax or .venv-torch there
    monkeypatch.setattr(checks, "BACKEND_PACKAGES", {name: "no_such_backend_pkg" for name in checks.BACKEND_PACKAGES})
    report = checks.check_other_backend(files.keras_file, np.zeros((1, 48, 48, 3), "float32"), np.ones((1, 3)) / 3)
    assert "no other Keras backend installed" in report["skipped"]


def test_a_file_from_a_newer_keras_is_named_with_both_versions(tmp_path):
    """A .keras file that the other environment's older Keras cannot read: the error says which Keras wrote it.

    Seen for real with Python 3.10 (Keras 3.12.4) reading a file written by Keras 3.15's JAX environment:
    ``GlorotUniform.__init__() got an unexpected keyword argument 'input_axes'``. Made here the same way: a real
    file whose metadata names a later Keras and whose config has an argument this Keras does not know.
    """
    import json
    import sys
    import zipfile

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    saved = tmp_path / "saved.keras"
    model.save(saved)

    def unreadable(written_by: str) -> str:
        """``saved`` with an argument no Keras here knows, as if Keras ``written_by`` wrote it; the error."""
        copy = tmp_path / f"keras-{written_by}.keras"
        with zipfile.ZipFile(saved) as src, zipfile.ZipFile(copy, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "metadata.json":
                    data = json.dumps(dict(json.loads(data), keras_version=written_by)).encode()
                elif item.filename == "config.json":
                    known = b'"GlorotUniform", "config": {'
                    data = data.replace(known, known + b'"later_axes": 1, ')
                dst.writestr(item, data)
        with pytest.raises(RuntimeError) as raised:
            checks.predict_in_other_backend(copy, np.zeros((1, 2), "float32"), sys.executable, keras.backend.backend())
        assert "later_axes" in str(raised.value)
        return str(raised.value)

    message = unreadable("99.0.0")
    assert f"written by Keras 99.0.0, read by Keras {keras.__version__}" in message, message
    assert "install the same Keras in both environments" in message
    assert "written by" not in unreadable("3.0.0")  # an older file that fails: the versions are not the reason
    checks.predict_in_other_backend(saved, np.zeros((1, 2), "float32"), sys.executable, keras.backend.backend())
