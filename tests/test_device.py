"""Devices: the report notebook 00 prints, mixed precision, and the mirrored (multi-device) path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers.model import cuts
from helpers.model.lesson import compile_model
from helpers.run import device, train

ROOT = Path(__file__).resolve().parent.parent


def test_describe_says_what_runs_where(monkeypatch):
    report = device.describe()
    for words in ("tensorflow", "keras", "GPUs:", "precision policy:", "XLA", "distribution:"):
        assert words in report
    monkeypatch.setattr(device, "gpus", lambda: [])
    assert "GPUs: none - everything runs on the CPU" in device.describe()
    monkeypatch.setattr(device, "gpus", lambda: ["/physical_device:GPU:0"])
    report = device.describe()
    assert "GPUs: /physical_device:GPU:0" in report and "everything runs on the CPU" not in report


@pytest.fixture
def restore_policy():
    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_softmax_in_float32(policy, restore_policy):
    assert device.use_mixed_precision(policy) == policy
    model = train.build_classifier(["a", "b", "c"], "mobilenet_v2_0.35", weights=None, image_size=32)
    conv = cuts.base_of(model).get_layer("Conv1")
    assert conv.compute_dtype == policy.split("_")[1]
    assert conv.variable_dtype == "float32"  # weights stay float32
    assert model.get_layer("predictions").compute_dtype == "float32"
    probs = model.predict(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)), verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if policy == "mixed_bfloat16":  # and it trains (bfloat16 maths is native on this CPU)
        compile_model(model, 1e-3)
        history = model.fit(np.zeros((6, 32, 32, 3), "float32"), np.arange(6) % 3, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_auto_policy_is_float32_on_a_cpu_and_mixed_on_a_gpu(restore_policy, monkeypatch):
    monkeypatch.setattr(device, "gpus", lambda: [])
    assert device.use_mixed_precision("auto") == "float32"
    monkeypatch.setattr(device, "gpus", lambda: ["/physical_device:GPU:0"])
    assert device.use_mixed_precision("auto") == "mixed_float16"  # mixed_bfloat16 under JAX


def test_strategy_choice_and_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert device.workers_in_tf_config() == 0
    if len(device.gpus()) < 2:
        assert device.choose_strategy("auto").num_replicas_in_sync == 1
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})
    )
    assert device.workers_in_tf_config() == 2
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        device.workers_in_tf_config()
    with pytest.raises(ValueError, match="mirrored"):
        device.choose_strategy("several")
    device.choose_strategy("default")


MIRRORED = textwrap.dedent("""
    import json, sys
    from helpers.run import device
    from helpers.run import train
    cpus = device.split_cpu(2)           # before TensorFlow touches a device
    strategy = device.choose_strategy("auto" if len(device.gpus()) > 1 else "mirrored")
    results = {"cpus": len(cpus), "replicas": device.replicas(strategy), "strategy": type(strategy).__name__,
               "describe": device.describe(strategy)}
    for cache in (True, False):
        # random MobileNetV2-0.35 weights with calibrated BatchNorm (conftest's random_backbone_weights)
        # keep the activations O(1), so the head really learns -- at a fraction of ResNet50's cost
        config = train.RunConfig(sys.argv[1], backbone="mobilenet_v2_0.35", weights=sys.argv[3], image_size=48,
                                 epochs=4, cache=cache, fine_tune_from="block_16_project_BN" if cache else None,
                                 fine_tune_epochs=1, cache_dir=sys.argv[2] + "/cache")
        m = train.train_classifier(config, sys.argv[2] + f"/run{cache}", strategy=strategy)
        results[f"cache={cache}"] = {"val_accuracy": m["val_accuracy"], "loss": m["phases"]["head"]["history"]["loss"]}
    print("RESULT " + json.dumps(results))
""")


def test_mirrored_strategy_trains_on_two_logical_cpus(tiny_photos, tmp_path, random_backbone_weights):
    """MirroredStrategy over the CPU split in two: both recipes train with 2 replicas in sync."""
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tiny_photos), str(tmp_path), str(random_backbone_weights)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(text for text in result.stdout.splitlines() if text.startswith("RESULT "))
    found = json.loads(line[len("RESULT ") :])
    assert found["cpus"] == 2 and found["replicas"] == 2 and found["strategy"] == "MirroredStrategy"
    assert "MirroredStrategy with 2 replica(s)" in found["describe"]
    for recipe in ("cache=True", "cache=False"):
        loss = found[recipe]["loss"]
        assert all(np.isfinite(loss)) and loss[-1] < loss[0], (recipe, loss)  # it learns on both replicas
        assert 0.0 <= found[recipe]["val_accuracy"] <= 1.0


def test_gpu_advice_names_the_route_for_each_system():
    from helpers.run import device

    linux = device.gpu_advice("Linux", "x86_64", nvidia=False)
    assert "tensorflow[and-cuda]" in linux and "jax[cuda12]" in linux and "install the NVIDIA driver" in linux
    assert "install the NVIDIA driver" not in device.gpu_advice("Linux", "x86_64", nvidia=True)
    windows = device.gpu_advice("Windows", "AMD64", nvidia=True)
    assert "no GPU support on native Windows" in windows and "KERAS_BACKEND=torch" in windows and "WSL2" in windows
    mac = device.gpu_advice("Darwin", "arm64", nvidia=False)
    assert "unverified" in mac and "mps" in mac
    assert all(text.startswith("this machine: ") for text in (linux, windows, mac))
