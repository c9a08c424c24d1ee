"""``python -m helpers evaluate`` and ``python -m helpers predict``, run as a learner would.

What they print and write is checked through the command line's ``main`` in this process (``in_process``:
what ``python -m helpers`` runs once Keras has started); a refusal's exit code and its one line without a
traceback, through a real ``python -m helpers`` (``helpers_cli``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_faults import in_process

ROOT = Path(__file__).resolve().parent.parent


def helpers_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "helpers", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_evaluate_prints_accuracy_and_writes_the_json(tiny_trained_run, tmp_path):
    result = in_process(
        "evaluate",
        "--model",
        tiny_trained_run / "model.keras",
        "--data",
        tiny_trained_run / "photos",
        "--out",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(re.search(r"accuracy (\d\.\d+) on 12 val photos", result.stdout).group(1))
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert abs(report["accuracy"] - accuracy) < 1e-4
    assert report["class_names"] == ["bear", "lion", "tiger"]
    assert "precision" in result.stdout and "recall" in result.stdout


def test_predict_prints_the_top_classes_and_names_an_unreadable_file(tiny_trained_run, tmp_path):
    tiger = sorted((tiny_trained_run / "photos" / "val" / "tiger").glob("*.jpg"))[0]
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("hello")
    result = in_process("predict", "--model", tiny_trained_run / "model.keras", "--top", "2", tiger, not_a_photo)
    assert result.returncode == 1  # one file failed …
    line = next(line for line in result.stdout.splitlines() if line.startswith(str(tiger)))
    pairs = re.findall(r"(bear|lion|tiger) (\d\.\d{3})", line)  # … the other was classified
    assert len(pairs) == 2 and float(pairs[0][1]) >= float(pairs[1][1])
    assert f"{not_a_photo}: not an image" in result.stderr


def test_predict_without_labels_shows_class_numbers(tiny_trained_run, tmp_path):
    shutil.copy(tiny_trained_run / "model.keras", tmp_path / "model.keras")
    bear = sorted((tiny_trained_run / "photos" / "val" / "bear").glob("*.jpg"))[0]
    result = in_process("predict", "--model", tmp_path / "model.keras", bear)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_0" in result.stdout and "no labels.txt" in result.stderr


def test_evaluate_a_missing_model_is_a_clear_error(tmp_path):
    result = helpers_cli("evaluate", "--model", tmp_path / "none.keras", "--data", tmp_path)
    assert result.returncode == 2
    assert "none.keras does not exist" in result.stderr and "Traceback" not in result.stderr


def test_predict_prints_a_file_name_that_is_not_utf8_even_where_stdout_is_strict(tiny_trained_run, tmp_path):
    """A photo named in Latin-1 (``caf\\xe9.jpg``, from an old zip) is classified and its name printed with an
    escape, also where standard output refuses undecodable text (``PYTHONIOENCODING=utf-8:strict``)."""
    tiger = sorted((tiny_trained_run / "photos" / "val" / "tiger").glob("*.jpg"))[0]
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.jpg")
    shutil.copy(tiger, odd)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", PYTHONIOENCODING="utf-8:strict")
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "predict", "--model", str(tiny_trained_run / "model.keras"), odd],
        capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"caf\\udce9.jpg: " in result.stdout and b"tiger" in result.stdout, result.stdout
