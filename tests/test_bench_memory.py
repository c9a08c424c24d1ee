"""benchmarks/bench_memory.py builds its large folder from variants: distinct bytes AND pixels, no leakage."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "bench_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_distinct_photos_in_their_own_split(tiny_photos, tmp_path):
    bench = _bench()
    real = bench._real_photos(tiny_photos)  # 8 train + 4 val real photos per class
    counts = bench.build_folder(real, 90, tmp_path / "out")  # 24 train + 6 val per class: 3x the real ones
    assert counts == {f"{s}/{c}": n for c in ("bear", "lion", "tiger") for s, n in (("train", 24), ("val", 6))}
    written = sorted((tmp_path / "out").rglob("*.jpg"))
    assert len(written) == 90
    assert len({hashlib.sha1(p.read_bytes()).hexdigest() for p in written}) == 90  # the cache's key differs
    pixels = {np.asarray(Image.open(p).convert("RGB").resize((16, 16))).tobytes() for p in written}
    assert len(pixels) == 90  # and so does the content
    for split in ("train", "val"):  # variants stay in their split
        for c in ("bear", "lion", "tiger"):
            sources = {p.stem for p in real[(split, c)]}
            assert {p.stem.rsplit("_v", 1)[0] for p in (tmp_path / "out" / split / c).glob("*.jpg")} == sources
