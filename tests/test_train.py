"""Training: the ``train`` recipe writes a model and metrics, repeats exactly, and uses its cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_faults import in_process

from helpers.data.folders import load_folder, load_images
from helpers.model import cuts
from helpers.model.lesson import compile_model, fit_keep_best
from helpers.run import train
from helpers.run.restart import restart
from helpers.store import cache

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["bear", "lion", "tiger"]
TINY = dict(backbone="mobilenet_v2_0.35", weights=None, image_size=48, epochs=3, fine_tune_epochs=1)


def test_train_classifier_writes_model_and_metrics(tiny_photos, tmp_path):
    kw = dict(TINY, fine_tune_from="block_16_project_BN", cache_dir=tmp_path / "cache")
    metrics = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val_accuracy"] == pytest.approx(metrics["val_accuracy"])
    assert saved["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert {"val_accuracy", "test_accuracy", "train_seconds", "class_names", "n_train"} <= saved.keys()
    assert 0.0 <= saved["val_accuracy"] <= 1.0 and 0.0 <= saved["test_accuracy"] <= 1.0
    assert saved["class_names"] == ["bear", "lion", "tiger"]
    # the 12 val photos are split by file-name hash into val (chooses the epoch) and test (reported)
    assert saved["n_train"] == 24 and saved["n_val"] + saved["n_test"] == 12
    assert saved["n_val"] > 0 and saved["n_test"] > 0
    assert set(saved["phases"]) == {"head", "fine_tune"}
    assert saved["phases"]["head"]["cut"] == "pool"
    assert saved["phases"]["fine_tune"]["cut"] == "block_15_add"
    for phase in saved["phases"].values():
        assert 1 <= phase["best_epoch"] <= phase["epochs"]
    n = saved["n_train"] + saved["n_val"]
    assert saved["phases"]["head"]["cache_computed"] == n and saved["phases"]["head"]["cache_hits"] == 0
    # the head's pass kept the activations below the fine-tuned block: fine-tuning reads them back
    assert saved["phases"]["fine_tune"]["cache_computed"] == 0 and saved["phases"]["fine_tune"]["cache_hits"] == n
    model = keras.models.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert model.output.shape == (None, 3)


def test_the_same_seed_gives_the_same_model(tiny_photos, tmp_path, random_backbone_weights):
    kw = dict(TINY, weights=str(random_backbone_weights), fine_tune_epochs=0)
    # the two seed-7 runs each compute their activations from scratch; the seed-8 run reads run 0's (they do not
    # depend on the seed: the photos and the frozen base decide them), so only the seed can make it differ
    runs = [
        train.train_classifier(
            train.RunConfig(tiny_photos, seed=seed, cache_dir=tmp_path / f"cache{cache}", **kw), tmp_path / f"run{i}"
        )
        for i, (seed, cache) in enumerate(((7, 0), (7, 1), (8, 0)))
    ]
    a, b, c = (keras.models.load_model(tmp_path / f"run{i}" / "model.keras") for i in range(3))
    assert runs[0]["val_accuracy"] == runs[1]["val_accuracy"]
    assert runs[0]["phases"]["head"]["history"] == runs[1]["phases"]["head"]["history"]
    np.testing.assert_array_equal(
        a.get_layer("predictions").get_weights()[0], b.get_layer("predictions").get_weights()[0]
    )
    assert not np.array_equal(
        a.get_layer("predictions").get_weights()[0], c.get_layer("predictions").get_weights()[0]
    )  # the seed matters


def test_a_model_cut_in_two_computes_the_same_function(tiny_photos, random_backbone_weights):
    folder = load_folder(tiny_photos)
    x = load_images(folder.train.paths, 48)
    model = train.build_classifier(CLASSES, "mobilenet_v2_0.35", str(random_backbone_weights), 48)

    def run(m, inputs):  # called directly on a few photos: predict would first trace a graph for each part
        return keras.ops.convert_to_numpy(m(inputs))

    whole = run(model, x)
    assert np.ptp(whole, axis=0).max() > 1e-3  # the output depends on the photo: numbers worth comparing
    for cut in ["block_5_add", "block_15_add", cuts.POOL]:
        part = cuts.split_at(model, cut)
        acts = run(part.bottom, x)
        assert np.abs(acts).mean() > 1e-3, cut
        np.testing.assert_allclose(run(part.top, acts), whole, atol=1e-5)
    assert cuts.resolve_block(cuts.base_of(model), "block_16_project_BN") == "block_15_add"
    with pytest.raises(ValueError, match="cut points"):
        cuts.split_at(model, "block_5_expand")  # inside a residual block: not a cut


def test_training_above_a_cut_on_cached_activations_equals_training_the_full_model(tiny_photos):
    """Same start, same data, no dropout: the fine-tuned block + head end up with the same weights."""
    folder = load_folder(tiny_photos)
    x, y = load_images(folder.train.paths, 32), np.asarray(folder.train.labels)
    keras.utils.set_random_seed(0)
    # a random ResNet50 keeps its activations O(1) even untrained, so the numbers mean something
    full = train.build_classifier(CLASSES, "resnet50", weights=None, image_size=32, dropout=0.0)
    cached = train.build_classifier(CLASSES, "resnet50", weights=None, image_size=32, dropout=0.0)
    cached.set_weights(full.get_weights())
    base = cuts.base_of(full)
    before = base.get_layer("conv5_block3_3_conv").get_weights()[0].copy()
    cut = train.freeze_for(full, "conv5_block3_out")  # the last residual block + head learn
    assert train.freeze_for(cached, "conv5_block3_out") == cut == "conv5_block2_out"
    part = cuts.split_at(cached, cut)
    acts = cache.activations(part.bottom, x, dtype="float32")
    assert np.abs(acts).mean() > 0.1  # real numbers flow through the cut
    # one batch per epoch, so the order of the photos cannot make a difference
    compile_model(full, 1e-4)
    full.fit(x, y, epochs=3, batch_size=len(x), verbose=0)
    compile_model(part.top, 1e-4)
    part.top.fit(acts, y, epochs=3, batch_size=len(x), verbose=0)
    assert not np.allclose(base.get_layer("conv5_block3_3_conv").get_weights()[0], before), "the block did not train"
    for a, b in zip(full.get_weights(), cached.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(full.predict(x, verbose=0), cached.predict(x, verbose=0), atol=1e-4)


def test_restart_trains_bit_for_bit_as_a_new_compile_without_tracing_again():
    """Several draws and rates on one head (what the comparisons do): ``restart`` against ``compile_model``."""
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 64), np.float32), rng.integers(0, 3, 20)
    validation = (rng.random((30, 64), np.float32), rng.integers(0, 3, 30))

    def head():
        keras.utils.set_random_seed(1)  # the same weights and the same dropout seed for both heads
        inputs = keras.Input((64,))
        hidden = keras.layers.Dropout(0.3)(keras.layers.Dense(16, name="hidden")(inputs))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))

    def trainings(start):
        model, results, steps = head(), [], []  # the step functions themselves: a freed one's id can come again
        first = model.get_weights()
        for seed, rate in [(0, 1e-3), (1, 1e-2), (2, 1e-3)]:
            model.set_weights(first)
            keras.utils.set_random_seed(seed)
            start(model, rate)
            history = fit_keep_best(model, x, y, validation, 12, patience=3)
            results.append((history.best_epoch, [w.copy() for w in model.get_weights()]))
            steps.append(model.train_function)
        return model, results, steps

    _, compiled, compiled_steps = trainings(compile_model)
    model, restarted, restarted_steps = trainings(restart)
    distinct = [len({id(step) for step in steps}) for steps in (compiled_steps, restarted_steps)]
    assert distinct == [3, 1]  # traced once, not once per training
    assert {epoch for epoch, _ in compiled} != {None}
    for (epoch_a, weights_a), (epoch_b, weights_b) in zip(compiled, restarted):
        assert epoch_a == epoch_b
        for a, b in zip(weights_a, weights_b):
            np.testing.assert_array_equal(a, b)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    optimizer = model.optimizer
    model.get_layer("hidden").trainable = False  # other weights to train: compiled again
    restart(model, 1e-3)
    assert model.optimizer is not optimizer and model.train_function is None


def test_a_model_cut_again_at_the_same_point_gives_the_same_halves(random_backbone_weights):
    model = train.build_classifier(CLASSES, "mobilenet_v2_0.35", str(random_backbone_weights), 48)
    for cut in ["block_15_add", cuts.POOL]:
        assert cuts.split_at(model, cut) is cuts.split_at(model, cut)
    other = train.build_classifier(CLASSES, "mobilenet_v2_0.35", str(random_backbone_weights), 48)
    assert cuts.split_at(other, cuts.POOL).top is not cuts.split_at(model, cuts.POOL).top


def test_cli_train_on_tiny_photos(tiny_photos, tmp_path):
    """The command line's ``main`` in this process (what ``python -m helpers`` runs after starting Keras; its
    process, exit codes and one-line errors are tests/test_faults.py's and tests/test_bad_inputs.py's)."""
    out = tmp_path / "cli"

    def command(to):
        return [
            "train",
            "--data",
            str(tiny_photos),
            "--backbone",
            "mobilenet_v2_0.35",
            "--weights",
            "none",
            "--image-size",
            "48",
            "--epochs",
            "2",
            "--out",
            str(to),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]

    result = in_process(*command(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_accuracy" in result.stdout
    first = json.loads((out / "metrics.json").read_text())
    assert (out / "model.keras").is_file() and first["n_train"] == 24
    assert first["phases"]["head"]["cache_computed"] == first["n_train"] + first["n_val"]
    # --cache-dir is where the activations went (that a second run reads them back, computing nothing,
    # is tests/test_cache.py's test_train_classifier_uses_the_disk_cache_on_the_second_run)
    store = tmp_path / "cache"
    assert first["cache_dir"] == str(store)
    assert Path(first["phases"]["head"]["cache_folder"]).parent == store and any(store.glob("pool-*"))


def test_cli_train_explains_a_missing_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.shared
def test_ten_photos_per_class_reach_97_percent(shared_photos, shared_weights_dir, tmp_path):
    """The workbook's promise, on real photos and genuine ImageNet weights (MobileNetV2)."""
    weights = shared_weights_dir / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    result = in_process(  # the command line's main, in this process: the promise is the model's, not the process'
        *[
            "train",
            "--data",
            str(shared_photos),
            "--backbone",
            "mobilenet_v2",
            "--weights",
            str(weights),
            "--per-class",
            "10",
            "--out",
            str(tmp_path / "real"),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert metrics["n_train"] == 30 and metrics["n_val"] + metrics["n_test"] == 180
    assert metrics["n_test"] >= 60  # about half of val/, photos that chose nothing
    assert metrics["test_accuracy"] >= 0.97, metrics


def test_cli_without_photos_says_how_to_give_them(tmp_path):
    import os

    # like the notebooks, the CLI falls back to the CIFAR-100 default; with the download unreachable
    # (a dead proxy, an empty Keras cache) it must say how to give photos, in one line
    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_DATA"}
    env.update(
        KERAS_HOME=str(tmp_path / "keras"),
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "check-data"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode != 0
    assert "could not get CIFAR-100" in result.stderr and "WORKBOOK_DATA" in result.stderr
    assert "--data" in result.stderr and "Traceback" not in result.stderr


def test_few_photos_per_class_also_train_the_head_on_their_mirror_images(
    tiny_photos, tmp_path, random_backbone_weights, monkeypatch
):
    """8 photos per class (<= MIRROR_UP_TO): the head's training rows are the photos and their mirrors."""
    kw = dict(TINY, weights=str(random_backbone_weights), fine_tune_epochs=0, cache_dir=tmp_path / "cache")
    with_mirrors = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "mirror")
    head = with_mirrors["phases"]["head"]
    assert head["mirror_views"] == with_mirrors["n_train"] == 24 and head["start"] == "class means"
    assert head["cache_computed"] == with_mirrors["n_train"] + with_mirrors["n_val"]
    # the mirror images go through the activation cache too: computed once, read back by the next run
    assert head["mirror_computed"] == 24
    again = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "again")["phases"]["head"]
    assert again["mirror_views"] == 24 and again["mirror_computed"] == 0 and again["cache_computed"] == 0
    # more photos per class than MIRROR_UP_TO: no mirrors
    monkeypatch.setattr(train, "MIRROR_UP_TO", 7)
    many = train.train_classifier(train.RunConfig(tiny_photos, **kw), tmp_path / "many")
    assert "mirror_views" not in many["phases"]["head"]


def test_mirror_features_are_the_features_of_the_mirrored_photos(tiny_photos, tmp_path, random_backbone_weights):
    from PIL import Image

    model = train.build_classifier(CLASSES, "mobilenet_v2_0.35", str(random_backbone_weights), 48)
    bottom = cuts.split_at(model, cuts.POOL).bottom
    paths = sorted((tiny_photos / "train" / "lion").glob("*.jpg"))[:3]
    mirrored_files = []
    for path in paths:  # the mirror image written as a lossless file, then read like any photo
        target = tmp_path / (path.stem + "_mirror.png")
        Image.fromarray(load_images([path], 48)[0][:, ::-1]).save(target)
        mirrored_files.append(target)
    expected = bottom.predict(load_images(mirrored_files, 48), verbose=0)
    got, seen = train.mirror_features(cache.BottleneckCache(tmp_path / "cache", dtype="float32"), bottom, paths)
    assert seen.computed == len(paths)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, bottom.predict(load_images(paths, 48), verbose=0), atol=1e-4)


def test_a_default_size_run_says_the_backbones_size_in_run_json_and_metrics_json(tiny_photos, tmp_path, monkeypatch):
    """One configuration, resolved once: run.json and metrics.json both say InceptionV3's own 299 px."""
    from helpers.run.config import RunConfig

    config = RunConfig(tiny_photos, backbone="inception_v3", cache_dir=tmp_path / "cache")
    assert config.image_size is None
    assert config.record()["image_size"] == config.summary()["image_size"] == 299
    assert config.summary()["cache_dir"] == str(tmp_path / "cache")
    # no --cache-dir: the activation store's own default, read in one place ($WORKBOOK_CACHE here)
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "env"))
    assert RunConfig(tiny_photos).resolved().cache_dir == tmp_path / "env"
    assert RunConfig(tiny_photos, cache=False).summary()["cache_dir"] is None
    with pytest.raises(ValueError, match="at least 75 px"):
        RunConfig(tiny_photos, backbone="inception_v3", image_size=40).resolved()


@pytest.mark.parametrize("command", ["train", "cache"])
def test_the_cache_folders_help_says_where_it_is(command, capsys):
    """The activation cache is on disk: both commands' help name the same default folder, none says 'in memory'."""
    from helpers.tools import cli

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$WORKBOOK_CACHE, else ~/.cache/transfer-workbook/bottlenecks" in text and "in memory" not in text
