"""The benchmark runs end to end in a tiny configuration and prints its ratios (no timed assertions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATIO = re.compile(r"^RATIO (\w+) (\d+\.\d+)", re.M)


def test_bench_prints_every_ratio_from_one_run(tiny_photos, tmp_path, capsys):
    """In this process (``cli.main``, as ``python -m helpers`` calls it): what it prints and saves, not its exit."""
    from helpers.tools import cli

    out = tmp_path / "bench.json"
    code = cli.main(
        [
            "bench",
            "--data",
            str(tiny_photos),
            "--backbone",
            "mobilenet_v2_0.35",
            "--weights",
            "none",
            "--image-size",
            "48",
            "--images",
            "12",
            "--epochs",
            "1,2",
            "--max-cached-epochs",
            "3",
            "--fine-tune-blocks",
            "2",
            "--json",
            str(out),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout[-3000:]
    ratios = {name: float(value) for name, value in RATIO.findall(stdout)}
    assert {
        "cached_head_over_F",
        "cached_head_over_F_E3",
        "guide_over_cached_E1",
        "guide_over_cached_E2",
        "fine_tune_plain_over_cached",
        "pipeline_over_in_memory",
    } <= ratios.keys(), stdout
    assert all(value > 0 for value in ratios.values())
    assert "(target <= 1.15:" in stdout and "(target >= 15.0:" not in stdout  # E=20 not run here
    assert "peak memory (MB)" in stdout and "1. F = forward pass" in stdout
    saved = json.loads(out.read_text())
    assert saved["images"] == 12 and saved["fine_tune"]["cut"] == "block_15_add"
    # what is printed is what is saved: the same ratios, from the one run
    assert {name: round(value, 3) for name, value in saved["ratios"].items()} == ratios
    assert {"cached_head_over_F_E1", "cached_head_over_F_E2", "cached_head_over_F_E3"} <= ratios.keys()


def test_bench_without_photos_says_what_to_do(tmp_path):
    # like the notebooks, the bench falls back to the CIFAR-100 default; unreachable (a dead proxy,
    # an empty Keras cache), it must say how to give photos, in one line
    env = {k: v for k, v in __import__("os").environ.items() if k != "WORKBOOK_DATA"}
    dead = "http://127.0.0.1:9"
    env.update(KERAS_HOME=str(tmp_path / "keras"), http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead)
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--data" in result.stderr and "WORKBOOK_DATA" in result.stderr
