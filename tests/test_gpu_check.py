"""``python -m helpers gpu-check``: a clear failure without a GPU, and the same measurements on the CPU."""

from __future__ import annotations

import json

import pytest

from helpers.tools import cli, gpu_check


def test_no_gpu_is_a_clear_failure(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "find_gpus", lambda: [])
    assert cli.main(["gpu-check"]) == 3
    err = capsys.readouterr().err
    assert "no GPU found for the Keras backend" in err and "--allow-cpu" in err and "Traceback" not in err


@pytest.mark.slow
def test_allow_cpu_measures_the_same_things_small(capsys):
    assert (
        cli.main(
            ["gpu-check", "--allow-cpu", "--image-size", "75", "--images", "8", "--batch-size", "4", "--epochs", "1"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])  # one JSON line
    assert result["model"] == "inception_v3" and result["image_size"] == 75 and result["images"] == 8
    assert result["device"] == ("GPU" if gpu_check.find_gpus() else "CPU")
    for key in (
        "forward_images_per_second",
        "train_step_images_per_second",
        "plain_over_cached",
        "frozen_train_step_images_per_second",
    ):
        assert result[key] > 0, key
    assert set(result["compile_seconds"]) == {"forward", "head_train_step", "frozen_train_step", "fine_tune_train_step"}
    assert result["fine_tune_cut"] == "mixed8" and result["fine_tune_loss_finite"]
