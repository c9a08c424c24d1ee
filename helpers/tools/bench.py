"""The speed benchmark behind ``python -m helpers bench`` (numbers quoted in notebook 05 and README).

Everything is measured in ONE run, on the same photos, the same model and the same
machine, and printed as ratios (``RATIO name value (target …)``) — never asserted on time:

1. **F**: one forward pass of the frozen base over the training photos (the floor).
2. **Head training, E epochs**: the Keras-guide recipe (frozen base inside the model,
   ``fit`` on pixels) versus the cached recipe (F once, then ``fit`` the head on the
   stored features), for each E; with the validation accuracy each reaches.
3. **Fine-tuning the top K blocks, one epoch** (steady state, after tracing): the frozen
   part runs every step versus training on cached cut-point activations.
4. **Input pipeline**: ``predict`` fed by :func:`helpers.data.pipeline.photo_dataset` (decoding
   the files) versus ``predict`` on photos already decoded in memory.
5. **Peak memory** (resident set size) during each of the above.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from helpers.data import folders as data
from helpers.model import cuts
from helpers.model.backbones import get_spec
from helpers.model.lesson import compile_model, split_at
from helpers.run import device, train
from helpers.store import cache

TARGETS = {  # issue "Speed": what this machine should show
    "cached_head_over_F": ("<=", 1.15),
    "guide_over_cached_E20": (">=", 15.0),
    "fine_tune_plain_over_cached": (">=", 3.0),
    "pipeline_over_in_memory": (">=", 0.95),
}


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measure:
    """Wall time and peak resident memory of one step of the benchmark."""

    seconds: float = 0.0
    peak_mb: float = 0.0
    info: dict = field(default_factory=dict)


@contextmanager
def measured(interval: float = 0.02) -> Iterator[Measure]:
    """``with measured() as m:`` times the block and samples peak RSS in a thread."""
    result = Measure()
    peak = [_rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        result.peak_mb = max(peak[0], _rss_bytes()) / 2**20


class EpochClock(keras.callbacks.Callback):
    """Records each epoch's wall time; at chosen epochs scores validation (not counted)."""

    def __init__(self, score_at: Sequence[int] = (), score=None):
        super().__init__()
        self.score_at, self.score = set(score_at), score
        self.epoch_seconds: list[float] = []
        self.elapsed: dict[int, float] = {}
        self.accuracy: dict[int, float] = {}

    def on_train_begin(self, logs=None):
        self._clock = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self._clock += seconds
        if epoch + 1 in self.score_at:
            self.elapsed[epoch + 1] = self._clock
            if self.score is not None:
                self.accuracy[epoch + 1] = self.score()


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Share of photos whose most probable class is right."""
    return float(np.mean(model.predict(x, batch_size=batch_size, verbose=0).argmax(-1) == y))


def _fit(model: keras.Model, x, y, epochs: int, batch_size: int, learning_rate: float, callbacks=()) -> None:
    """Exactly ``epochs`` epochs of the lesson's recipe (``compile_model``; no early stop: timed)."""
    compile_model(model, learning_rate)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks), verbose=0)


def _pick(folder: data.ImageFolder, images: int, seed: int) -> data.Split:
    per_class = max(1, images // len(folder.class_names))
    return data.sample_per_class(folder.train, per_class, seed)


def run(
    data_dir: str | os.PathLike,
    backbone: str = "mobilenet_v2",
    weights: str | None = "imagenet",
    image_size: int | None = None,
    images: int = 480,
    epochs: Sequence[int] = (10, 20),
    max_cached_epochs: int = 50,
    fine_tune_blocks: int = 2,
    val_images: int = 90,
    batch_size: int = 32,
    seed: int = 0,
    print_fn=print,
) -> dict:
    """Run the whole benchmark once and print its ratios; returns every number as a dict."""
    keras.utils.set_random_seed(seed)
    size = image_size or get_spec(backbone).default_size
    folder = data.load_folder(data_dir, seed=seed)
    split = _pick(folder, images, seed)
    val_split = (
        data.sample_per_class(folder.val, max(1, val_images // len(folder.class_names)), seed)
        if len(folder.val)
        else split
    )
    x, y = data.load_images(split.paths, size), np.asarray(split.labels, np.int32)
    xv, yv = data.load_images(val_split.paths, size), np.asarray(val_split.labels, np.int32)
    with device.strategy_scope():
        model = train.build_classifier(folder.class_names, backbone, weights, size)
    start_weights = [w.copy() for w in model.get_weights()]

    def reset() -> None:
        model.set_weights(start_weights)
        keras.utils.set_random_seed(seed)

    out: dict = {
        "backbone": backbone,
        "weights": str(weights),
        "image_size": size,
        "images": len(x),
        "val_images": len(xv),
        "batch_size": batch_size,
        "device": device.describe().splitlines()[3],
    }
    p = print_fn
    p(
        f"benchmark: {backbone} at {size}px, {len(x)} training photos ({len(xv)} to score), batch {batch_size}, "
        f"weights {weights}"
    )
    p(device.describe())
    bottom, top = split_at(model, cuts.POOL)  # the lesson's cut (notebook 05): pixels → pooled features → head
    bottom.predict(x, batch_size=batch_size, verbose=0)  # trace once: F is the steady-state forward pass

    # 1. F
    with measured() as f:
        feats = cache.activations(bottom, x, batch_size, dtype="float32")
    F = f.seconds
    out["F"] = {"seconds": F, "images_per_second": len(x) / F, "peak_mb": f.peak_mb}
    p(
        f"\n1. F = forward pass of the frozen base over {len(x)} photos: {F:.2f} s "
        f"({len(x) / F:.1f} images/s), peak {f.peak_mb:.0f} MB"
    )

    # 2. head training: Keras-guide recipe vs cached
    p("\n2. head training, same epochs, same batches:")
    cached_epochs = sorted(set(epochs) | {max_cached_epochs})
    out["cached_head"] = {}
    for e in cached_epochs:
        reset()
        train.freeze_for(model, None)
        with measured() as m:
            _fit(top, feats, y, e, batch_size, train.HEAD_LEARNING_RATE)
        acc = _accuracy(model, xv, yv, batch_size)
        total = F + m.seconds
        out["cached_head"][e] = {
            "seconds": total,
            "fit_seconds": m.seconds,
            "val_accuracy": acc,
            "peak_mb": max(m.peak_mb, f.peak_mb),
        }
        p(
            f"   cached   E={e:3d}: {total:7.2f} s (F + fit {m.seconds:.2f} s)  val {acc:.1%}  "
            f"peak {max(m.peak_mb, f.peak_mb):.0f} MB"
        )
    reset()
    train.freeze_for(model, None)
    clock = EpochClock(score_at=epochs, score=lambda: _accuracy(model, xv, yv, batch_size))
    with measured() as g:
        _fit(model, x, y, max(epochs), batch_size, train.HEAD_LEARNING_RATE, callbacks=[clock])
    out["guide_head"] = {}
    for e in epochs:
        out["guide_head"][e] = {"seconds": clock.elapsed[e], "val_accuracy": clock.accuracy[e], "peak_mb": g.peak_mb}
        p(f"   guide    E={e:3d}: {clock.elapsed[e]:7.2f} s  val {clock.accuracy[e]:.1%}  peak {g.peak_mb:.0f} MB")

    # 3. fine-tuning the top K blocks, one epoch
    names = cuts.cut_points(cuts.base_of(model))  # each block is named by the cut point that ends it
    k = min(fine_tune_blocks, len(names) - 1)
    fine_tune_from = names[-k]
    ft_cut = cuts.resolve_block(cuts.base_of(model), k)  # the cut point below the top k blocks
    p(f"\n3. fine-tuning the top {k} block(s) (from {fine_tune_from}; cut at {ft_cut}), one epoch after tracing:")
    reset()
    train.freeze_for(model, fine_tune_from)
    plain_clock = EpochClock()
    with measured() as fp:
        _fit(model, x, y, 2, batch_size, train.FINE_TUNE_LEARNING_RATE, callbacks=[plain_clock])
    reset()
    train.freeze_for(model, fine_tune_from)
    part = cuts.split_at(model, ft_cut)
    with measured() as build:
        acts = cache.activations(part.bottom, x, batch_size)
    cached_clock = EpochClock()
    with measured() as fc:
        _fit(part.top, acts, y, 2, batch_size, train.FINE_TUNE_LEARNING_RATE, callbacks=[cached_clock])
    plain_epoch, cached_epoch = plain_clock.epoch_seconds[-1], cached_clock.epoch_seconds[-1]
    out["fine_tune"] = {
        "from": fine_tune_from,
        "cut": ft_cut,
        "plain_epoch_seconds": plain_epoch,
        "cached_epoch_seconds": cached_epoch,
        "cache_build_seconds": build.seconds,
        "cache_mb": acts.nbytes / 2**20,
        "plain_peak_mb": fp.peak_mb,
        "cached_peak_mb": max(fc.peak_mb, build.peak_mb),
    }
    p(f"   plain    {plain_epoch:7.2f} s/epoch  peak {fp.peak_mb:.0f} MB")
    p(
        f"   cached   {cached_epoch:7.2f} s/epoch  peak {max(fc.peak_mb, build.peak_mb):.0f} MB "
        f"(one-off: {build.seconds:.2f} s to cache {acts.nbytes / 2**20:.1f} MB of {ft_cut} activations)"
    )

    # 4. input pipeline vs in-memory arrays
    from helpers.data.pipeline import has_tensorflow, photo_dataset

    reset()
    best = {"memory": 0.0, "pipeline": 0.0}
    peaks = {"memory": 0.0, "pipeline": 0.0}
    for _ in range(2):  # alternate, best of two: both see the same machine state
        with measured() as mm:
            bottom.predict(x, batch_size=batch_size, verbose=0)
        with measured() as mp:
            bottom.predict(photo_dataset(split.paths, size, batch_size=batch_size), verbose=0)
        best["memory"] = max(best["memory"], len(x) / mm.seconds)
        best["pipeline"] = max(best["pipeline"], len(x) / mp.seconds)
        peaks["memory"], peaks["pipeline"] = max(peaks["memory"], mm.peak_mb), max(peaks["pipeline"], mp.peak_mb)
    out["pipeline"] = {
        "pipeline_images_per_second": best["pipeline"],
        "memory_images_per_second": best["memory"],
        "pipeline_peak_mb": peaks["pipeline"],
        "memory_peak_mb": peaks["memory"],
    }
    p(
        f"\n4. predict fed by {'tf.data' if has_tensorflow() else 'a Keras PyDataset'} from the files: "
        f"{best['pipeline']:.1f} images/s "
        f"(peak {peaks['pipeline']:.0f} MB);"
        f" on decoded arrays in memory: {best['memory']:.1f} images/s (peak {peaks['memory']:.0f} MB)"
    )

    # ratios
    ratios = {f"cached_head_over_F_E{e}": out["cached_head"][e]["seconds"] / F for e in cached_epochs}
    ratios["cached_head_over_F"] = max(ratios.values())
    for e in epochs:
        ratios[f"guide_over_cached_E{e}"] = out["guide_head"][e]["seconds"] / out["cached_head"][e]["seconds"]
    ratios["fine_tune_plain_over_cached"] = plain_epoch / cached_epoch
    ratios["pipeline_over_in_memory"] = best["pipeline"] / best["memory"]
    out["ratios"] = ratios
    p("\nratios (one run, same photos, same machine):")
    for name, value in ratios.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            ok = value <= target[1] if target[0] == "<=" else value >= target[1]
            verdict = f"  (target {target[0]} {target[1]}: {'met' if ok else 'NOT met'})"
        p(f"RATIO {name} {value:.3f}{verdict}")
    p(
        "\n5. peak memory (MB): "
        + ", ".join(
            [
                f"F {f.peak_mb:.0f}",
                f"guide head {g.peak_mb:.0f}",
                f"cached head {max(v['peak_mb'] for v in out['cached_head'].values()):.0f}",
                f"fine-tune plain {fp.peak_mb:.0f}",
                f"fine-tune cached {max(fc.peak_mb, build.peak_mb):.0f}",
                f"pipeline {peaks['pipeline']:.0f}",
                f"in-memory {peaks['memory']:.0f}",
            ]
        )
    )
    return out


def write(result: dict, target: str | os.PathLike) -> Path:
    """Save the benchmark's numbers as JSON (atomically)."""
    from helpers.files import write_json

    return write_json(target, result)
