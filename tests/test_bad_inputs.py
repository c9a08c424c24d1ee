"""Issue 17: inputs a demanding user gave the command line, each of which once broke it.

Photo sizes a backbone cannot take or memory cannot hold; features that are all zero (a NaN
model saved with exit 0); photos named alike in every class (an empty validation or test
split); FIFOs, sockets, devices and dangling links among the photos (a hang); a class with
one photo (silently dropped); ``--out`` inside ``--data`` (the second run refused). Real
files, real models, the command line in subprocesses (``tests/test_faults.py``'s helpers) where
its exit code, its one-line errors or a hang are what is tested; elsewhere (set-up runs, runs whose
model, metrics or messages are checked) its ``main`` in this process, saving TensorFlow's start-up.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, make_photo
from test_faults import cli, errors, in_process, metrics, train_args

CLASSES = sorted(COLOURS)


def flat(root: Path, counts: dict[str, int], name=lambda c, i: f"{c}_{i}.jpg") -> Path:
    """``root/<class>/…jpg``, ``counts[class]`` generated photos each."""
    for c, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            make_photo(root / cls / name(cls, i), COLOURS.get(cls, (90, 90, 90)), seed=100 * c + i)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """``train/`` 8 and ``val/`` 4 generated photos per class."""
    root = tmp_path_factory.mktemp("inputs") / "photos"
    for split, n in (("train", 8), ("val", 4)):
        for c, (cls, colour) in enumerate(COLOURS.items()):
            for i in range(n):
                make_photo(root / split / cls / f"{cls}_{i}.jpg", colour, seed=1000 * (split == "val") + 100 * c + i)
    return root


# --------------------------------------------------------------------------- 1: photo sizes


@pytest.mark.parametrize("size", [0, 16, 5000])
def test_a_size_the_backbone_cannot_take_or_memory_cannot_hold_is_refused_before_any_work(photos, tmp_path, size):
    out = tmp_path / "run"
    started = time.perf_counter()
    result = cli(
        "train", "--data", photos, "--backbone", "mobilenet_v2", "--weights", "none",
        "--image-size", size, "--epochs", 1, "--out", out, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert result.returncode == 2, (size, result.stdout[-1000:], result.stderr[-2000:])
    [line] = errors(result)
    assert f"--image-size {size}" in line, line
    assert ("at least 32 px" in line) if size < 32 else ("of memory" in line and "pass " in line), line
    assert not (out / "run.json").exists() and "new run" not in result.stdout  # before any work
    assert seconds < 60, seconds


def test_bench_and_gpu_check_refuse_the_same_sizes(photos):
    result = cli("bench", "--data", photos, "--backbone", "inception_v3", "--image-size", 70, "--images", 6)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = errors(result)
    assert "--image-size 70" in line and "inception_v3" in line and "at least 75 px" in line, line
    result = cli("gpu-check", "--allow-cpu", "--image-size", 50)
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-2000:]
    [line] = errors(result)
    assert "--image-size 50" in line and "at least 75 px" in line, line


def test_the_memory_rule_grows_with_the_square_of_the_side_and_names_a_size_that_fits():
    from helpers.run import runs

    gib = 1 << 30
    assert runs.batch_bytes("mobilenet_v2", 448, 32) == 4 * runs.batch_bytes("mobilenet_v2", 224, 32)
    assert runs.image_size_problem("mobilenet_v2", 224, 32, 32, available=4 * gib) is None
    problem = runs.image_size_problem("mobilenet_v2", 2000, 32, 32, available=4 * gib)
    suggested = int(problem.split("pass ")[1].split()[0])
    assert runs.image_size_problem("mobilenet_v2", suggested, 32, 32, available=4 * gib) is None
    assert runs.image_size_problem("mobilenet_v2", suggested + 1, 32, 32, available=4 * gib) is not None
    assert runs.image_size_problem("mobilenet_v2", suggested, 32, 64, available=4 * gib) is not None  # bigger batch


def test_the_peak_activation_table_matches_each_backbone():
    """``runs.PEAK_FLOATS_PER_PIXEL`` is each backbone's largest layer output per input pixel, rounded up."""
    from helpers.model.backbones import BACKBONES, keras_class
    from helpers.run import runs

    assert set(runs.PEAK_FLOATS_PER_PIXEL) == set(BACKBONES)
    for name, spec in BACKBONES.items():
        model = keras_class(spec)(include_top=False, weights=None, input_shape=(224, 224, 3), **spec.kwargs)
        peak = max(math.prod(layer.output.shape[1:]) for layer in model.layers) / 224**2
        assert runs.PEAK_FLOATS_PER_PIXEL[name] == math.ceil(peak), (name, peak)


# --------------------------------------------------------------------------- 2: non-finite models


def test_all_zero_features_start_the_head_at_finite_weights():
    import keras

    from helpers.model.lesson import start_at_class_means

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(inputs))
    features = np.zeros((6, 4), np.float32)
    features[0] = 1.0  # one photo with features: its class gets a direction, the rest stay 0
    start_at_class_means(model, features, np.array([0, 0, 1, 1, 2, 2]))
    kernel, bias = model.get_layer("predictions").get_weights()
    assert np.isfinite(kernel).all() and np.isfinite(bias).all()
    assert np.allclose(kernel[:, 0], 30 * 0.5 / np.linalg.norm([0.5] * 4)) and not kernel[:, 1:].any()


def test_zero_cached_features_give_a_finite_model_and_say_why(photos, random_backbone_weights, tmp_path):
    from helpers.store.cache import write_entry

    cache_dir = tmp_path / "cache"
    first = in_process(*train_args(photos, tmp_path / "z0", random_backbone_weights, cache_dir, 2))  # set-up
    assert first.returncode == 0, first.stderr[-2000:]
    entries = list(cache_dir.glob("pool-*/*.npy"))
    assert len(entries) == 36 + 24  # every photo, and the 24 training photos' mirror images (cached as well)
    for entry in entries:
        write_entry(entry, np.zeros(np.load(entry).shape, np.float16))
    out = tmp_path / "z1"
    result = cli(*train_args(photos, out, random_backbone_weights, cache_dir, 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RuntimeWarning" not in result.stderr
    assert any(f"{n} of {n}" in result.stderr for n in (24, 48)), result.stderr[-2000:]  # training photos (+ mirrors)
    assert "all-zero activations" in result.stderr
    saved = metrics(out)
    assert saved["val_accuracy"] is not None and math.isfinite(saved["val_accuracy"])
    photo = sorted((photos / "val" / "bear").glob("*.jpg"))[0]
    predicted = in_process("predict", "--model", out / "model.keras", photo)
    assert predicted.returncode == 0 and "nan" not in predicted.stdout, predicted.stdout + predicted.stderr[-1000:]


@pytest.fixture
def nan_backbone_weights(random_backbone_weights, tmp_path) -> Path:
    """The calibrated random MobileNetV2-0.35 weights with one kernel set to NaN: a broken network."""
    import h5py

    path = tmp_path / "nan.weights.h5"
    shutil.copy(random_backbone_weights, path)
    with h5py.File(path, "r+") as f:
        kernels = []
        f.visititems(lambda name, obj: kernels.append(name) if getattr(obj, "ndim", 0) == 4 else None)
        data = f[kernels[0]]
        data[...] = np.full(data.shape, np.nan, data.dtype)
    return path


def test_train_never_saves_a_model_with_non_finite_weights(photos, nan_backbone_weights, tmp_path):
    out = tmp_path / "run"
    result = cli(*train_args(photos, out, nan_backbone_weights, tmp_path / "cache", 1, "--no-cache"))
    assert result.returncode == 1, result.stdout[-1000:] + result.stderr[-2000:]
    [line] = [line for line in errors(result) if line.startswith("error")]
    assert "Traceback" not in result.stderr and line == errors(result)[-1]
    assert "non-finite weights" in line and "nothing was saved" in line, line
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


@pytest.fixture
def nan_model(tiny_trained_run, tmp_path) -> Path:
    """The session's tiny model with its head's kernel set to NaN, saved with its metrics.json (class names)."""
    from helpers.files import save_model
    from helpers.run.evaluate import open_model

    model = open_model(tiny_trained_run / "model.keras")
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([np.full_like(kernel, np.nan), bias])
    folder = tmp_path / "nan_run"
    save_model(model, folder / "model.keras")
    shutil.copy(tiny_trained_run / "metrics.json", folder / "metrics.json")
    return folder / "model.keras"


def test_predict_and_evaluate_refuse_non_finite_probabilities(nan_model, tiny_trained_run, tmp_path):
    photo = sorted((tiny_trained_run / "photos" / "val" / "bear").glob("*.jpg"))[0]
    predicted = cli("predict", "--model", nan_model, photo)
    assert predicted.returncode != 0 and "nan" not in predicted.stdout.lower(), predicted.stdout
    [line] = errors(predicted)
    assert "non-finite probabilities" in line and "train it again" in line, line
    evaluated = cli("evaluate", "--model", nan_model, "--data", tiny_trained_run / "photos", "--out", tmp_path / "ev")
    assert evaluated.returncode != 0 and "accuracy" not in evaluated.stdout, evaluated.stdout
    assert any("non-finite probabilities" in line for line in errors(evaluated)), errors(evaluated)
    assert not (tmp_path / "ev" / "evaluation.json").exists()


# --------------------------------------------------------------------------- 3: splits


def numbered(root: Path, n: int = 8) -> Path:
    """Every class's photos named ``001.jpg`` … (as a camera or a download names them)."""
    return flat(root, {c: n for c in CLASSES}, name=lambda c, i: f"{i + 1:03d}.jpg")


@pytest.mark.parametrize("seed", range(4))
def test_photos_named_alike_in_every_class_still_fill_every_split_of_every_class(tmp_path, seed):
    from helpers.data.folders import load_folder
    from helpers.data.photos import splits

    parts = splits(load_folder(numbered(tmp_path / "num"), seed=seed), seed)
    for name in ("train", "val", "test"):
        assert all(n >= 1 for n in parts[name].counts(3)), (seed, name, parts[name].counts(3))
    assert sum(len(p) for p in parts.values()) == 24


@pytest.mark.parametrize(
    "n, expected", [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (8, (6, 1, 1)), (10, (8, 1, 1))]
)
def test_each_class_is_split_by_quota(tmp_path, n, expected):
    from helpers.data.folders import load_folder
    from helpers.data.photos import splits

    root = flat(tmp_path / "p", {"bear": n, "lion": 10, "tiger": 10})
    parts = splits(load_folder(root), 0)
    assert tuple(parts[s].counts(3)[0] for s in ("train", "val", "test")) == expected


def test_check_data_says_when_a_class_has_no_test_photo(tmp_path, capsys):
    from helpers.tools.cli import main

    root = flat(tmp_path / "p", {"bear": 2, "lion": 10, "tiger": 10})
    main(["check-data", str(root)])
    text = capsys.readouterr().out
    assert "class 'bear' has 1 validation photo and none left for the test split" in text
    assert "test photos (no test/ folder" in text and "0 bear, 1 lion, 1 tiger" in text
    assert "\nOK" not in text


def test_numbered_photos_train_with_every_split_measured(tmp_path, random_backbone_weights):
    root = numbered(tmp_path / "num")
    check = in_process("check-data", root)
    assert check.returncode == 0 and "\nOK: training will use the 24" in check.stdout, check.stdout
    out = tmp_path / "run"
    result = in_process(*train_args(root, out, random_backbone_weights, tmp_path / "cache", 2))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = metrics(out)
    assert (saved["n_train"], saved["n_val"], saved["n_test"]) == (18, 3, 3)
    assert math.isfinite(saved["val_accuracy"]) and math.isfinite(saved["test_accuracy"])
    assert len(set(saved["phases"]["head"]["history"]["val_loss"])) > 1  # the validation loss chose an epoch


def test_no_validation_photos_are_said_not_reported_as_nan(photos, tmp_path, random_backbone_weights):
    root = tmp_path / "photos"
    shutil.copytree(photos / "train", root / "train")
    out = tmp_path / "run"
    result = in_process(*train_args(root, out, random_backbone_weights, tmp_path / "cache", 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val_accuracy n/a (no val photos)  test_accuracy n/a (no test photos)" in result.stdout
    assert "nan" not in result.stdout and "no epoch was chosen" in result.stderr
    saved = json.loads((out / "metrics.json").read_text())  # NaN (invalid JSON) would load as nan
    assert saved["val_accuracy"] is None and saved["test_accuracy"] is None


# --------------------------------------------------------------------------- 6: things that are not files


def odd_files(folder: Path) -> dict[str, str]:
    """A FIFO, a socket, a device, a dangling link and a folder, each named like a photo: {name: kind said}."""
    os.mkfifo(folder / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.jpg"))
    sock.close()
    (folder / "null.jpg").symlink_to("/dev/null")
    (folder / "gone.jpg").symlink_to(folder / "no-such-photo.jpg")
    (folder / "album.jpg").mkdir()
    make_photo(folder / "album.jpg" / "inside.jpg", (0, 0, 0))
    return {"pipe.jpg": "FIFO", "sock.jpg": "socket", "null.jpg": "device", "gone.jpg": "does not exist"}


def test_fifos_sockets_devices_and_dangling_links_are_reported_never_opened(photos, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(photos, root)
    said = odd_files(root / "train" / "bear")
    result = cli("check-data", root, timeout=90)  # reading the FIFO would wait forever
    assert result.returncode == 0, result.stderr[-2000:]
    for name, kind in said.items():
        [line] = [line for line in result.stdout.splitlines() if f"bear/{name}:" in line]
        assert kind in line, line
    assert "album.jpg: a folder named like a photo" in result.stdout
    assert "inside.jpg" not in result.stdout
    assert "bear                  8" in result.stdout  # the 8 real bear photos, nothing else


def test_predict_names_a_fifo_and_classifies_the_real_photo(tiny_trained_run, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    photo = sorted((tiny_trained_run / "photos" / "val" / "lion").glob("*.jpg"))[0]
    result = cli("predict", "--model", tiny_trained_run / "model.keras", fifo, photo, timeout=90)
    assert result.returncode == 1, result.stderr[-2000:]
    assert any(str(fifo) in line and "FIFO" in line for line in errors(result)), errors(result)
    assert f"{photo}: " in result.stdout
    model_fifo = tmp_path / "model.keras"
    os.mkfifo(model_fifo)
    refused = cli("predict", "--model", model_fifo, photo, timeout=90)
    assert refused.returncode == 2 and "FIFO" in errors(refused)[0], refused.stderr[-2000:]


def test_train_goes_on_past_a_fifo(photos, random_backbone_weights, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(photos, root)
    os.mkfifo(root / "train" / "lion" / "pipe.jpg")
    out = tmp_path / "run"
    result = cli(*train_args(root, out, random_backbone_weights, tmp_path / "cache", 1), timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("pipe.jpg" in line and "FIFO" in line for line in errors(result))
    assert metrics(out)["n_train"] == 24


# --------------------------------------------------------------------------- 7: dropped classes


def test_a_class_with_one_photo_is_kept_and_trained_on(tmp_path, random_backbone_weights):
    root = flat(tmp_path / "p", {"bear": 8, "lion": 8, "tiger": 1})
    check = in_process("check-data", root)
    assert "dropped" not in check.stdout and "tiger" in check.stdout, check.stdout
    out = tmp_path / "run"
    result = in_process(*train_args(root, out, random_backbone_weights, tmp_path / "cache", 1))
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics(out)["class_names"] == CLASSES
    assert "class 'tiger' has only 1 training photo" in result.stderr


def test_a_dropped_class_fails_the_run_with_its_true_reason_unless_allowed(photos, tmp_path, random_backbone_weights):
    from helpers.data.folders import check_data

    root = tmp_path / "photos"
    shutil.copytree(photos, root)
    shutil.rmtree(root / "train" / "tiger")
    (root / "train" / "tiger").mkdir()
    (root / "train" / "okapi").mkdir()
    (root / "train" / "okapi" / "notes.txt").write_text("to do: photos")
    report = check_data(root)
    assert report.dropped["tiger"] == "has 4 usable photos in val/ but none in train/tiger/ (move some to train/tiger/)"
    assert report.dropped["okapi"].startswith("has none of its 1 file in train/okapi/ usable as a photo")
    (root / "train" / "okapi" / "notes.txt").unlink()
    assert check_data(root).dropped["okapi"].startswith("has no files in train/okapi/")
    out = tmp_path / "run"
    refused = cli(*train_args(root, out, random_backbone_weights, tmp_path / "cache", 1))
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = errors(refused)[-1]
    assert line.startswith("error: class 'okapi' has no files") and "--allow-missing-classes" in line, line
    assert "and 1 more classes" in line and not (out / "model.keras").exists()
    allowed = in_process(
        *train_args(root, out, random_backbone_weights, tmp_path / "cache", 1, "--allow-missing-classes")
    )
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert metrics(out)["class_names"] == ["bear", "lion"]


# --------------------------------------------------------------------------- 9: --out inside --data


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_an_out_folder_and_cache_inside_the_photos_are_not_photos(photos, tmp_path, random_backbone_weights, layout):
    root = tmp_path / "photos"
    if layout == "split":
        shutil.copytree(photos, root)
    else:
        flat(root, {c: 8 for c in CLASSES})
    out, cache_dir = root / "runs", root / "cache"
    first = in_process(*train_args(root, out, random_backbone_weights, cache_dir, 1))  # set-up
    assert first.returncode == 0, first.stderr[-2000:]
    again = cli(*train_args(root, out, random_backbone_weights, cache_dir, 1))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stdout and "changed" not in again.stderr
    notes = [line for line in errors(again) if line.startswith("note: skipped")]
    assert len(notes) == 2 and any("runs: the --out folder of this run" in n for n in notes), notes
    assert any("cache: the activation cache of this run" in n for n in notes), notes
    assert metrics(out)["class_names"] == CLASSES
    check = in_process("check-data", root)  # without the run's settings: known by run.json and the cache's folders
    assert check.returncode == 0 and "\nOK" in check.stdout and "'runs'" not in check.stdout, check.stdout
    assert "runs: the workbook's output folder (holds run.json)" in check.stdout
    assert "cache: the workbook's activation cache" in check.stdout
