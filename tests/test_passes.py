"""Forward-pass accounting (helpers/passes.py): records append whole lines, summaries count right."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from helpers import passes

MOBILE = {"backbone": "mobilenet_v2", "image_size": 96, "weights": "imagenet"}


def test_record_is_a_no_op_without_the_log_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(passes.LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    passes.record(MOBILE, ["a"], 1)
    assert list(tmp_path.iterdir()) == []


def test_summarise_groups_by_key_and_kind_and_counts_distinct_photos(monkeypatch, tmp_path):
    log = tmp_path / "passes.jsonl"
    monkeypatch.setenv(passes.LOG_ENV, str(log))
    monkeypatch.setenv(passes.SOURCE_ENV, "03_train_the_head")
    passes.record(MOBILE, ["a", "b", "c"], 3)
    passes.record(dict(reversed(MOBILE.items())), ["b", "c", "d"], 1)  # same key, other order: same group
    passes.record({**MOBILE, "image_size": 224}, ["a"], 1)
    passes.record(MOBILE, ["a", "b"], 2, kind="fine_tune")
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["source"] == "03_train_the_head"
    summary = passes.summarise(log)
    assert summary == [
        {"key": MOBILE, "kind": "frozen", "distinct": 4, "computed": 4, "ratio": 1.0},
        {"key": {**MOBILE, "image_size": 224}, "kind": "frozen", "distinct": 1, "computed": 1, "ratio": 1.0},
        {"key": MOBILE, "kind": "fine_tune", "distinct": 2, "computed": 2, "ratio": 1.0},
    ]
    passes.record(MOBILE, ["a", "b", "c", "d"], 4)  # everything again: two passes per photo
    assert passes.summarise(log)[0] == {"key": MOBILE, "kind": "frozen", "distinct": 4, "computed": 8, "ratio": 2.0}


def test_summarise_of_nothing_and_of_a_torn_line(tmp_path):
    assert passes.summarise(tmp_path / "missing.jsonl") == []
    log = tmp_path / "passes.jsonl"
    log.write_text("\n")
    assert passes.summarise(log) == []
    log.write_text('{"key": {"backbone": "x"}, "kind": "frozen", "photo_ids": ["a"], "computed": 1}\n{"key": {"bac\n')
    with pytest.raises(ValueError, match=r"passes.jsonl:2: not a pass record"):
        passes.summarise(log)


def test_record_refuses_a_negative_count(monkeypatch, tmp_path):
    monkeypatch.setenv(passes.LOG_ENV, str(tmp_path / "passes.jsonl"))
    with pytest.raises(ValueError):
        passes.record(MOBILE, ["a"], -1)


def _append_many(log: str, worker: int) -> None:
    import os

    os.environ[passes.LOG_ENV] = log
    for i in range(200):  # long lines (~5 kB), as from a big photo folder
        passes.record(MOBILE, [f"{worker}-{i}-{j}-" + "f" * 40 for j in range(80)], 80)


def test_several_processes_append_whole_lines(tmp_path):
    log = tmp_path / "passes.jsonl"
    workers = [multiprocessing.get_context("spawn").Process(target=_append_many, args=(str(log), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 800 and all(len(json.loads(line)["photo_ids"]) == 80 for line in lines)
    assert passes.summarise(log) == [
        {"key": MOBILE, "kind": "frozen", "distinct": 64000, "computed": 64000, "ratio": 1.0}
    ]
