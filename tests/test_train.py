"""Training: the ``train`` recipe writes a model and metrics, repeats exactly, and resumes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import surgery, train

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(backbone="mobilenet_v2_0.35", weights=None, image_size=48, epochs=3, fine_tune_epochs=1)


def test_train_classifier_writes_model_and_metrics(tiny_photos, tmp_path):
    metrics = train.train_classifier(tiny_photos, tmp_path / "run", fine_tune_from="block_16_project_BN", **TINY)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val_accuracy"] == pytest.approx(metrics["val_accuracy"])
    assert {"val_accuracy", "train_seconds", "class_names", "n_train"} <= saved.keys()
    assert saved["class_names"] == ["bear", "lion", "tiger"]
    assert saved["n_train"] == 24 and saved["n_val"] == 12
    assert set(saved["phases"]) == {"head", "fine_tune"}
    model = keras.models.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert model.output.shape == (None, 3)


def test_the_same_seed_gives_the_same_model(tiny_photos, tmp_path):
    runs = [train.train_classifier(tiny_photos, tmp_path / f"run{i}", seed=7, **TINY) for i in range(2)]
    a, b = (keras.models.load_model(tmp_path / f"run{i}" / "model.keras") for i in range(2))
    assert runs[0]["val_accuracy"] == runs[1]["val_accuracy"]
    np.testing.assert_array_equal(a.get_layer("head_predictions").get_weights()[0],
                                  b.get_layer("head_predictions").get_weights()[0])


class Interrupt(keras.callbacks.Callback):
    """Simulates Ctrl-C after a given epoch."""

    def __init__(self, after_epoch: int):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (12, 48, 48, 3)).astype("float32"), np.arange(12) % 3
    model = surgery.build_classifier(["a", "b", "c"], "mobilenet_v2_0.35", weights=None, image_size=48)
    train.compile_model(model, 1e-3)
    cbs = train.callbacks_for(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x, y), epochs=4, callbacks=cbs + [Interrupt(1)], verbose=0)
    assert (tmp_path / "ckpt" / "backup").exists()
    seen = []
    resumed = train.callbacks_for(tmp_path / "ckpt")
    resumed.append(keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch)))
    model.fit(x, y, validation_data=(x, y), epochs=4, callbacks=resumed, verbose=0)
    assert seen == [2, 3]  # epochs 0 and 1 were not repeated
    assert (tmp_path / "ckpt" / "best.weights.h5").exists()


def test_cli_train_on_tiny_photos(tiny_photos, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "train", "--data", str(tiny_photos), "--backbone", "mobilenet_v2_0.35",
         "--weights", "none", "--image-size", "48", "--epochs", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_accuracy" in result.stdout
    assert (out / "model.keras").is_file() and json.loads((out / "metrics.json").read_text())["n_train"] == 24


def test_cli_train_explains_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--data", str(tmp_path / "nowhere"),
                             "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.shared
def test_ten_photos_per_class_reach_97_percent(shared_photos, shared_weights_dir, tmp_path):
    """The workbook's promise, on real photos and genuine ImageNet weights (MobileNetV2)."""
    weights = shared_weights_dir / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "train", "--data", str(shared_photos), "--backbone", "mobilenet_v2",
         "--weights", str(weights), "--per-class", "10", "--out", str(tmp_path / "real")],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert metrics["n_train"] == 30 and metrics["n_val"] == 180
    assert metrics["val_accuracy"] >= 0.97, metrics


def test_cli_without_photos_says_how_to_give_them(tmp_path):
    import os

    # like the notebooks, the CLI falls back to the CIFAR-100 default; with the download unreachable
    # (a dead proxy, an empty Keras cache) it must say how to give photos, in one line
    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_DATA"}
    env.update(KERAS_HOME=str(tmp_path / "keras"), http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "helpers", "check-data"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0
    assert "could not get CIFAR-100" in result.stderr and "WORKBOOK_DATA" in result.stderr
    assert "--data" in result.stderr and "Traceback" not in result.stderr
