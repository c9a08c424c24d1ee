"""Computing activations: in memory, for augmented views of a photo, with a progress line, counted.

The pieces :class:`helpers.store.cache.BottleneckCache` runs when an entry is missing.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from IPython.display import display
from PIL import Image
from tqdm import tqdm

from helpers import settings
from helpers.model import cuts
from helpers.store import counting, keys, passes

DEFAULT_DTYPE = "float16"


def activations(
    bottom: keras.Model, pixels: np.ndarray, batch_size: int = 32, dtype: str = DEFAULT_DTYPE, verbose: int = 0
) -> np.ndarray:
    """Run ``bottom`` once over in-memory ``pixels`` and return its output as ``dtype``."""
    out = bottom.predict(pixels, batch_size=batch_size, verbose=verbose)
    return np.asarray(out).astype(dtype, copy=False)


def forward(model: keras.Model, batch: np.ndarray, batch_size: int, pad: bool | None = None) -> np.ndarray:
    """``model.predict_on_batch(batch)``; with ``pad``, a short batch is padded to ``batch_size`` rows (dropped after).

    ``pad=None``: under JAX only. JAX compiles the forward pass again for every new batch shape (0.3–0.5 s for
    MobileNetV2 at 224 px, each), so the short last batch of each fetch cost one more compilation. TensorFlow
    traces a second shape once, with the batch size left open, and reuses that trace; PyTorch compiles nothing:
    there the padding rows would only add work. Rows are independent in inference mode, so the real rows come
    out as without padding.
    """
    n = len(batch)
    if pad is None:
        pad = keras.backend.backend() == "jax"
    if pad and n < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
    return np.asarray(model.predict_on_batch(batch))[:n]


def augment_pixels(pixels: np.ndarray, rng: np.random.Generator, max_zoom: float = 0.15) -> np.ndarray:
    """One random view of a photo: maybe mirrored, cropped by up to ``max_zoom`` and resized back.

    Deterministic for a seeded ``rng``, so a cached augmented copy can be recomputed exactly.
    """
    size = pixels.shape[0]
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    crop = int(round(size * (1 - rng.uniform(0, max_zoom))))
    top, left = rng.integers(0, size - crop + 1, size=2)
    window = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
    return np.asarray(Image.fromarray(window).resize((size, size), Image.Resampling.BILINEAR), np.uint8)


class NotebookProgress:
    """A progress line that a notebook updates in place (a display handle), unlike a tqdm widget,
    whose stored text stays at 0% in a headless run: what is kept is the last state, "15/15"."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.handle = display(self._text(), raw=True, display_id=True)

    def _text(self) -> dict:
        seconds = time.perf_counter() - self.start
        return {"text/plain": f"bottleneck: {self.done}/{self.total} photos, {seconds:.1f} s"}

    def update(self, n: int) -> None:
        self.done += n
        self.handle.update(self._text(), raw=True)

    def close(self) -> None:
        pass


def progress(total: int, enabled: bool):
    """tqdm in a terminal; in a notebook kernel a line updated in place; nothing when not ``enabled``."""
    if enabled and settings.in_notebook():
        return NotebookProgress(total)
    return tqdm(total=total, desc="bottleneck", unit="img", disable=not enabled)


def view(pixels: np.ndarray, photo_digest: str, seed: int, copy: int) -> np.ndarray:
    """A photo itself (``copy`` 0) or its seeded augmented view number ``copy`` (the same every time)."""
    if copy == 0:
        return pixels
    return augment_pixels(pixels, np.random.default_rng(keys.rng_seed(photo_digest, seed, copy)))


def count_passes(job, direct: list, continued: list, via: cuts.Cut | None) -> None:
    """Record in the pass log what this fetch ran through the network (:mod:`helpers.store.passes`)."""
    cut, key = job.point.layer, counting.network_key(job.bottom)
    passes.record(key, job.digests, sum(1 for _, c in direct if c == 0), kind=f"frozen, up to {cut}")
    if continued:
        photos = [job.digests[i] for i, _ in continued]
        passes.record(key, photos, len(continued), kind=f"{passes.CONTINUED_PREFIX} {via.name}, up to {cut}")
    if any(c > 0 for _, c in job.wanted):
        views = [f"{d}-views-s{job.seed}" for d in job.digests]
        passes.record(key, views, sum(1 for _, c in direct if c > 0), kind=f"augmented views, up to {cut}")
