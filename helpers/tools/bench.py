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

import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

try:
    import psutil
except ImportError:  # optional: /proc/self/statm on Linux
    psutil = None

from helpers.data import folders as data
from helpers.data.pipeline import has_tensorflow, photo_dataset
from helpers.files import write_json
from helpers.model import cuts
from helpers.model.lesson import split_at
from helpers.run import device, train
from helpers.run.config import FINE_TUNE_LEARNING_RATE, HEAD_LEARNING_RATE, BenchConfig, Recipe
from helpers.store import cache

TARGETS = {  # issue "Speed": what this machine should show
    "cached_head_over_F": ("<=", 1.15),
    "guide_over_cached_E20": (">=", 15.0),
    "fine_tune_plain_over_cached": (">=", 3.0),
    "pipeline_over_in_memory": (">=", 0.95),
}


def _rss_bytes() -> int:
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    with open("/proc/self/statm") as fh:  # Linux without psutil
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


def _fit(model: keras.Model, x, y, recipe: Recipe, callbacks=()) -> None:
    """Exactly ``recipe.epochs`` epochs of the package's loop (:func:`helpers.run.train.fit`; no early stop: timed)."""
    train.fit(model, x, y, dataclasses.replace(recipe, callbacks=tuple(callbacks)))


def _pick(folder: data.ImageFolder, images: int, seed: int) -> data.Split:
    per_class = max(1, images // len(folder.class_names))
    return data.sample_per_class(folder.train, per_class, seed)


class _Bench:
    """One benchmark run's photos, model and numbers; each step of the module doc is a method."""

    def __init__(self, config: BenchConfig, print_fn=print):
        self.config, self.p = config, print_fn
        keras.utils.set_random_seed(config.seed)
        size, bs = config.size, config.batch_size
        folder = data.load_folder(config.data_dir, seed=config.seed)
        self.split = _pick(folder, config.images, config.seed)
        val_split = (
            data.sample_per_class(folder.val, max(1, config.val_images // len(folder.class_names)), config.seed)
            if len(folder.val)
            else self.split
        )
        self.x, self.y = data.load_images(self.split.paths, size), np.asarray(self.split.labels, np.int32)
        self.xv, self.yv = data.load_images(val_split.paths, size), np.asarray(val_split.labels, np.int32)
        with device.strategy_scope():
            self.model = train.build_classifier(folder.class_names, config.backbone, config.weights, size)
        self.start_weights = [w.copy() for w in self.model.get_weights()]
        self.out: dict = {
            "backbone": config.backbone,
            "weights": str(config.weights),
            "image_size": size,
            "images": len(self.x),
            "val_images": len(self.xv),
            "batch_size": bs,
            "device": device.describe().splitlines()[3],
        }
        self.peaks: dict[str, float] = {}
        self.p(
            f"benchmark: {config.backbone} at {size}px, {len(self.x)} training photos ({len(self.xv)} to score), "
            f"batch {bs}, weights {config.weights}"
        )
        self.p(device.describe())
        # the lesson's cut (notebook 05): pixels → pooled features → head
        self.bottom, self.top = split_at(self.model, cuts.POOL)
        self.bottom.predict(self.x, batch_size=bs, verbose=0)  # trace once: F is the steady-state forward pass

    def reset(self, fine_tune_from: str | None = None) -> None:
        self.model.set_weights(self.start_weights)
        keras.utils.set_random_seed(self.config.seed)
        train.freeze_for(self.model, fine_tune_from)

    def val_accuracy(self) -> float:
        return _accuracy(self.model, self.xv, self.yv, self.config.batch_size)

    def forward(self) -> np.ndarray:
        """1. F: the frozen base over the training photos, once."""
        x = self.x
        with measured() as f:
            feats = cache.activations(self.bottom, x, self.config.batch_size, dtype="float32")
        self.F = f.seconds
        self.peaks["F"] = f.peak_mb
        self.out["F"] = {"seconds": self.F, "images_per_second": len(x) / self.F, "peak_mb": f.peak_mb}
        self.p(
            f"\n1. F = forward pass of the frozen base over {len(x)} photos: {self.F:.2f} s "
            f"({len(x) / self.F:.1f} images/s), peak {f.peak_mb:.0f} MB"
        )
        return feats

    def head(self, feats: np.ndarray) -> None:
        """2. head training, E epochs: on the cached features, then the Keras guide's recipe (pixels)."""
        config, epochs = self.config, self.config.epochs
        self.p("\n2. head training, same epochs, same batches:")
        self.out["cached_head"] = {}
        for e in sorted(set(epochs) | {config.max_cached_epochs}):
            self.reset()
            with measured() as m:
                _fit(self.top, feats, self.y, config.recipe(HEAD_LEARNING_RATE, e))
            acc, total, peak = self.val_accuracy(), self.F + m.seconds, max(m.peak_mb, self.peaks["F"])
            self.out["cached_head"][e] = {
                "seconds": total,
                "fit_seconds": m.seconds,
                "val_accuracy": acc,
                "peak_mb": peak,
            }
            self.p(
                f"   cached   E={e:3d}: {total:7.2f} s (F + fit {m.seconds:.2f} s)  val {acc:.1%}  peak {peak:.0f} MB"
            )
        self.reset()
        clock = EpochClock(score_at=epochs, score=self.val_accuracy)
        with measured() as g:
            _fit(self.model, self.x, self.y, config.recipe(HEAD_LEARNING_RATE, max(epochs)), [clock])
        self.peaks["guide head"] = g.peak_mb
        self.out["guide_head"] = {}
        for e in epochs:
            seconds, acc = clock.elapsed[e], clock.accuracy[e]
            self.out["guide_head"][e] = {"seconds": seconds, "val_accuracy": acc, "peak_mb": g.peak_mb}
            self.p(f"   guide    E={e:3d}: {seconds:7.2f} s  val {acc:.1%}  peak {g.peak_mb:.0f} MB")

    def fine_tune(self) -> None:
        """3. fine-tuning the top K blocks, one epoch after tracing: plain against cached cut activations."""
        base = cuts.base_of(self.model)
        names = cuts.cut_points(base)  # each block is named by the cut point that ends it
        k = min(self.config.fine_tune_blocks, len(names) - 1)
        fine_tune_from, ft_cut = names[-k], cuts.resolve_block(base, k)  # the cut point below the top k blocks
        self.p(
            f"\n3. fine-tuning the top {k} block(s) (from {fine_tune_from}; cut at {ft_cut}), one epoch after tracing:"
        )
        recipe = self.config.recipe(FINE_TUNE_LEARNING_RATE, 2)
        self.reset(fine_tune_from)
        plain_clock = EpochClock()
        with measured() as fp:
            _fit(self.model, self.x, self.y, recipe, [plain_clock])
        self.reset(fine_tune_from)
        part = cuts.split_at(self.model, ft_cut)
        with measured() as build:
            acts = cache.activations(part.bottom, self.x, self.config.batch_size)
        cached_clock = EpochClock()
        with measured() as fc:
            _fit(part.top, acts, self.y, recipe, [cached_clock])
        plain, cached = plain_clock.epoch_seconds[-1], cached_clock.epoch_seconds[-1]
        self.peaks["fine-tune plain"], self.peaks["fine-tune cached"] = fp.peak_mb, max(fc.peak_mb, build.peak_mb)
        self.out["fine_tune"] = {
            "from": fine_tune_from,
            "cut": ft_cut,
            "plain_epoch_seconds": plain,
            "cached_epoch_seconds": cached,
            "cache_build_seconds": build.seconds,
            "cache_mb": acts.nbytes / 2**20,
            "plain_peak_mb": fp.peak_mb,
            "cached_peak_mb": self.peaks["fine-tune cached"],
        }
        self.p(f"   plain    {plain:7.2f} s/epoch  peak {fp.peak_mb:.0f} MB")
        self.p(
            f"   cached   {cached:7.2f} s/epoch  peak {self.peaks['fine-tune cached']:.0f} MB "
            f"(one-off: {build.seconds:.2f} s to cache {acts.nbytes / 2**20:.1f} MB of {ft_cut} activations)"
        )

    def pipeline(self) -> None:
        """4. ``predict`` fed from the files by the input pipeline against decoded arrays in memory."""
        self.reset()
        x, bs = self.x, self.config.batch_size
        best = {"memory": 0.0, "pipeline": 0.0}
        peaks = {"memory": 0.0, "pipeline": 0.0}
        for _ in range(2):  # alternate, best of two: both see the same machine state
            with measured() as mm:
                self.bottom.predict(x, batch_size=bs, verbose=0)
            with measured() as mp:
                self.bottom.predict(photo_dataset(self.split.paths, self.config.size, batch_size=bs), verbose=0)
            best["memory"] = max(best["memory"], len(x) / mm.seconds)
            best["pipeline"] = max(best["pipeline"], len(x) / mp.seconds)
            peaks["memory"], peaks["pipeline"] = max(peaks["memory"], mm.peak_mb), max(peaks["pipeline"], mp.peak_mb)
        self.peaks["pipeline"], self.peaks["in-memory"] = peaks["pipeline"], peaks["memory"]
        self.out["pipeline"] = {
            "pipeline_images_per_second": best["pipeline"],
            "memory_images_per_second": best["memory"],
            "pipeline_peak_mb": peaks["pipeline"],
            "memory_peak_mb": peaks["memory"],
        }
        self.p(
            f"\n4. predict fed by {'tf.data' if has_tensorflow() else 'a Keras PyDataset'} from the files: "
            f"{best['pipeline']:.1f} images/s "
            f"(peak {peaks['pipeline']:.0f} MB);"
            f" on decoded arrays in memory: {best['memory']:.1f} images/s (peak {peaks['memory']:.0f} MB)"
        )

    def ratios(self) -> None:
        """The ratios (with their targets) and 5., the peak memory of each step."""
        out, epochs = self.out, self.config.epochs
        ratios = {f"cached_head_over_F_E{e}": v["seconds"] / self.F for e, v in out["cached_head"].items()}
        ratios["cached_head_over_F"] = max(ratios.values())
        for e in epochs:
            ratios[f"guide_over_cached_E{e}"] = out["guide_head"][e]["seconds"] / out["cached_head"][e]["seconds"]
        ft, pipe = out["fine_tune"], out["pipeline"]
        ratios["fine_tune_plain_over_cached"] = ft["plain_epoch_seconds"] / ft["cached_epoch_seconds"]
        ratios["pipeline_over_in_memory"] = pipe["pipeline_images_per_second"] / pipe["memory_images_per_second"]
        out["ratios"] = ratios
        self.p("\nratios (one run, same photos, same machine):")
        for name, value in ratios.items():
            target = TARGETS.get(name)
            verdict = ""
            if target is not None:
                ok = value <= target[1] if target[0] == "<=" else value >= target[1]
                verdict = f"  (target {target[0]} {target[1]}: {'met' if ok else 'NOT met'})"
            self.p(f"RATIO {name} {value:.3f}{verdict}")
        peaks = dict(self.peaks, **{"cached head": max(v["peak_mb"] for v in out["cached_head"].values())})
        order = ("F", "guide head", "cached head", "fine-tune plain", "fine-tune cached", "pipeline", "in-memory")
        self.p("\n5. peak memory (MB): " + ", ".join(f"{name} {peaks[name]:.0f}" for name in order))


def run(config: BenchConfig, print_fn=print) -> dict:
    """Run the whole benchmark once and print its ratios; returns every number as a dict."""
    bench = _Bench(config, print_fn)
    bench.head(bench.forward())
    bench.fine_tune()
    bench.pipeline()
    bench.ratios()
    return bench.out


def write(result: dict, target: str | os.PathLike) -> Path:
    """Save the benchmark's numbers as JSON (atomically)."""
    return write_json(target, result)
