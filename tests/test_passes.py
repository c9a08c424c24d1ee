"""Forward-pass accounting (helpers/store/passes.py): records append whole lines, summaries count right."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from helpers.store import passes

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


def test_totals_add_every_cut_and_plain_call_per_network_but_not_augmented_or_continued_views(tmp_path, monkeypatch):
    log = tmp_path / "passes.jsonl"
    monkeypatch.setenv(passes.LOG_ENV, str(log))
    passes.record(MOBILE, ["a", "b", "c", "d"], 4, kind="frozen, up to pool")
    passes.record(MOBILE, ["a", "b"], 2, kind="frozen, up to block_15_add")
    passes.record(MOBILE, ["a-views"], 3, kind="augmented views, up to pool")
    passes.record(MOBILE, ["c", "d"], 2, kind=f"{passes.CONTINUED_PREFIX} block_15_add, up to pool")
    passes.record(MOBILE, [], 6, kind=passes.PLAIN_KIND)
    passes.record({**MOBILE, "image_size": 224}, ["a"], 1, kind="frozen, up to pool")
    assert passes.totals(log) == [
        {
            "key": MOBILE,
            "distinct": 4,
            "computed": 12,
            "ratio": 3.0,
            "kinds": {"frozen, up to pool": 4, "frozen, up to block_15_add": 2, passes.PLAIN_KIND: 6},
            "continued": {f"{passes.CONTINUED_PREFIX} block_15_add, up to pool": 2},  # reported, not counted
        },
        {
            "key": {**MOBILE, "image_size": 224},
            "distinct": 1,
            "computed": 1,
            "ratio": 1.0,
            "kinds": {"frozen, up to pool": 1},
            "continued": {},
        },
    ]


COUNTING = r"""
import json, os, sys
import numpy as np
import helpers
import keras
from helpers.store import passes

plain_fit = keras.Model.fit  # import helpers alone counts nothing (tests/test_layout.py)
exec(helpers.tools.kernel.EXEC_LINE)  # what the runner's kernels run first: with $WORKBOOK_PASS_LOG, Keras counted
assert keras.Model.fit is not plain_fit
from helpers.store.cache import BottleneckCache
from helpers.model.cuts import split_at
from helpers.model.lesson import add_head

base = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
base.trainable = False
model = add_head(base, ["a", "b", "c"], keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess"))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
x, y = np.random.default_rng(0).uniform(0, 255, (10, 32, 32, 3)).astype("float32"), np.arange(10) % 3
model.fit(x, y, validation_data=(x[:4], y[:4]), epochs=3, batch_size=4, verbose=0)  # 10 × 3 + 4 × 3
model.predict(x[:5], verbose=0)  # 5
model.evaluate(x[:4], y[:4], verbose=0)  # 4
cut = split_at(model, "pool")
cut.top.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
cut.top.fit(np.zeros((10, cut.top.input_shape[-1]), "float32"), y, epochs=2, verbose=0)  # the head alone: 0
paths = sys.argv[1:]
# 3 photos, recorded by the cache: up to its checkpoint (block_15_add), then on to pool from there
BottleneckCache(os.environ["CACHE"]).activations(cut.bottom, paths)
print(json.dumps(passes.totals(passes.log_path())))
"""


def test_plain_keras_calls_are_counted_with_the_cache_under_one_network_key(tmp_path):
    """In a fresh process (the wrapping is process-wide): fit, its validation, predict, evaluate; heads not."""
    import os
    import subprocess
    import sys

    from conftest import make_photo

    photos = [make_photo(tmp_path / f"p{i}.jpg", (40 * i, 90, 200), size=40, seed=i) for i in range(3)]
    log = tmp_path / "passes.jsonl"
    env = dict(os.environ, WORKBOOK_PASS_LOG=str(log), CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", COUNTING, *map(str, photos)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [network] = json.loads(done.stdout.strip().splitlines()[-1])
    assert network["key"]["backbone"].startswith("mobilenetv2_0.35") and network["key"]["image_size"] == 32
    assert network["kinds"] == {
        passes.PLAIN_KIND: 30 + 12 + 5 + 4,
        "frozen, up to block_15_add": 3,  # the photos went through the frozen part once
        "frozen, up to pool": 0,  # … and on from the stored block_15_add: not counted again
    }
    assert network["distinct"] == 3 and network["computed"] == 54
