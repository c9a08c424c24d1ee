"""The bottleneck cache: run the frozen part of a network once, train what is above the cut.

Notebook 05 ("small data, short time") teaches this. While the base is frozen, a plain
Keras ``fit`` runs the whole frozen network again over every photo in every epoch. Here we
*cut* the model at a cut point (:func:`helpers.lesson.split_at`, :func:`helpers.cuts.split_at`): the **bottom** (frozen, below the cut)
runs once per photo and its output — the *activations* at the cut — is kept; the **top**
(above the cut: the head, plus any unfrozen blocks) then trains on the stored activations.
The top shares its layers with the full model, so training the top trains the model.

Any cut point works: ``pool`` (the pooled features, for head training), or a block
output such as InceptionV3's ``mixed8`` for fine-tuning ``mixed9``–``mixed10`` + head.

On disk (:class:`BottleneckCache`), one ``.npy`` file per photo (no pickle), written
atomically, under a folder whose name is a hash of everything that changes the activations:
the bottom's architecture and weight *values* (so the weights file, the backbone, the cut
point, the image size and the preprocessing layer are all covered), the storage dtype and
the pixel loader. Each photo's file name is a hash of the photo's *content* (plus the
augmentation copy it is). Change any of these and the activations are recomputed.

Augmentation and caching conflict: a cached activation is one fixed view of a photo. The
honest options here are ``augment_copies=0`` (no augmentation while training on the cache)
or ``augment_copies=K`` (K extra, fixed, seeded random views per photo — flips and
crops — computed once; the network sees the same K+1 views every epoch instead of a new
random view each time).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from . import files
from .data import load_images

CACHE_ENV = "WORKBOOK_CACHE"
DEFAULT_DTYPE = "float16"
FORMAT_VERSION = 1
LOADER = "helpers.data.load_image/v1"  # bump when load_image changes its pixels
AUGMENT = "flip+crop/v1"  # bump when augment_pixels changes


def default_root() -> Path:
    """Where bottleneck caches live: ``$WORKBOOK_CACHE``, else ``~/.cache/transfer-workbook``."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-workbook" / "bottlenecks"


# --------------------------------------------------------------------------- in memory

def activations(bottom: keras.Model, pixels: np.ndarray, batch_size: int = 32,
                dtype: str = DEFAULT_DTYPE, verbose: int = 0) -> np.ndarray:
    """Run ``bottom`` once over in-memory ``pixels`` and return its output as ``dtype``."""
    out = bottom.predict(pixels, batch_size=batch_size, verbose=verbose)
    return np.asarray(out).astype(dtype, copy=False)


def augment_pixels(pixels: np.ndarray, rng: np.random.Generator, max_zoom: float = 0.15) -> np.ndarray:
    """One random view of a photo: maybe mirrored, cropped by up to ``max_zoom`` and resized back.

    Deterministic for a seeded ``rng``, so a cached augmented copy can be recomputed exactly.
    """
    from PIL import Image

    size = pixels.shape[0]
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    crop = int(round(size * (1 - rng.uniform(0, max_zoom))))
    top, left = rng.integers(0, size - crop + 1, size=2)
    window = np.ascontiguousarray(pixels[top:top + crop, left:left + crop])
    return np.asarray(Image.fromarray(window).resize((size, size), Image.Resampling.BILINEAR), np.uint8)


# --------------------------------------------------------------------------- keys

def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def model_fingerprint(bottom: keras.Model) -> str:
    """A hash of ``bottom``'s architecture (every layer's class and config) and weight values.

    Covers the backbone, the preprocessing layer, the image size, the cut point and the
    weights (whichever file they came from, and whether anything changed them since).
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([list(t.shape) for t in bottom.inputs] + [list(bottom.output.shape)]).encode())
    for layer in bottom.layers:  # in graph order; names left out (Keras numbers unnamed layers per process)
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        h.update(f"{type(layer).__name__}:{json.dumps(config, sort_keys=True, default=str)}".encode())
        for variable in layer.weights:
            h.update(f"{variable.shape}{variable.dtype}".encode())
            h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """A hash of a file's bytes: the identity of one photo."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GB"


# --------------------------------------------------------------------------- on disk

@dataclass
class CacheStats:
    """What the last :meth:`BottleneckCache.activations` call did."""

    hits: int = 0
    computed: int = 0
    seconds: float = 0.0
    folder: Path | None = None


class BottleneckCache:
    """Activations at a cut point, one ``.npy`` per photo, keyed by everything that changes them.

    >>> cache = BottleneckCache()                      # doctest: +SKIP
    >>> bottom, top = split_at(model, "pool")          # doctest: +SKIP
    >>> feats = cache.activations(bottom, paths)       # computed once, then read back
    """

    def __init__(self, root: str | os.PathLike | None = None, dtype: str = DEFAULT_DTYPE,
                 progress: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.dtype = np.dtype(dtype).name
        self.progress = progress
        self.last = CacheStats()

    def folder_for(self, bottom: keras.Model, weights_source: str | None = None) -> Path:
        """The folder holding ``bottom``'s activations (created with a ``meta.json``)."""
        fingerprint = model_fingerprint(bottom)
        meta = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "dtype": self.dtype, "loader": LOADER,
                "cut": bottom.layers[-1].name,
                "image_size": int(bottom.inputs[0].shape[1]), "output_shape": list(bottom.output.shape[1:]),
                "model": bottom.name}
        key = _digest(fingerprint, self.dtype, LOADER, str(FORMAT_VERSION))
        folder = self.root / f"{meta['cut']}-{meta['image_size']}px-{key[:24]}"
        meta_file = folder / "meta.json"
        if meta_file.exists():
            stored = json.loads(meta_file.read_text())
            if stored.get("fingerprint") != fingerprint or stored.get("dtype") != self.dtype:
                raise RuntimeError(f"bottleneck cache {folder} belongs to another model; delete the folder")
        else:
            meta["weights_source"] = _describe_source(weights_source)
            files.write_json(meta_file, meta)
        return folder

    def activations(self, bottom: keras.Model, paths: Sequence[str | os.PathLike], augment_copies: int = 0,
                    seed: int = 0, batch_size: int = 32, weights_source: str | None = None) -> np.ndarray:
        """``bottom``'s output for every photo in ``paths`` (and K augmented copies of each).

        Returns an array of ``len(paths) * (1 + augment_copies)`` rows: all originals first,
        then copy 1 of every photo, and so on. Missing activations are computed (with a
        progress bar, after printing a size estimate) and stored; the rest are read back.
        """
        start = time.perf_counter()
        paths = [Path(p) for p in paths]
        folder = self.folder_for(bottom, weights_source)
        size = int(bottom.inputs[0].shape[1])
        digests = [file_digest(p) for p in paths]
        wanted = [(i, copy) for copy in range(augment_copies + 1) for i in range(len(paths))]
        tag = AUGMENT.replace("/", "")
        names = {(i, c): digests[i] + ("" if c == 0 else f"-{tag}-s{seed}-c{c}") + ".npy" for i, c in wanted}
        missing = [ic for ic in wanted if not (folder / names[ic]).exists()]
        if missing:
            self._compute(bottom, paths, digests, missing, names, folder, size, seed, batch_size)
        out = np.stack([np.load(folder / names[ic], allow_pickle=False) for ic in wanted]) if wanted else \
            np.zeros((0, *bottom.output.shape[1:]), self.dtype)
        self.last = CacheStats(len(wanted) - len(missing), len(missing), time.perf_counter() - start, folder)
        return out

    def _compute(self, bottom, paths, digests, missing, names, folder, size, seed, batch_size) -> None:
        from tqdm.auto import tqdm

        per_item = math.prod(int(d) for d in bottom.output.shape[1:]) * np.dtype(self.dtype).itemsize
        print(f"bottleneck cache: computing {len(missing)} activations at {folder.name.split('-')[0]} "
              f"({tuple(bottom.output.shape[1:])} {self.dtype}, {_human(per_item)} each) "
              f"≈ {_human(per_item * len(missing))} in {folder}", flush=True)
        bar = tqdm(total=len(missing), desc="bottleneck", unit="img", disable=not self.progress)
        try:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start:start + batch_size]
                originals = load_images([paths[i] for i, _ in chunk], size)
                pixels = np.stack([
                    pix if c == 0 else augment_pixels(pix, np.random.default_rng(_rng_seed(digests[i], seed, c)))
                    for pix, (i, c) in zip(originals, chunk)])
                out = np.asarray(bottom.predict_on_batch(pixels)).astype(self.dtype)
                for row, ic in zip(out, chunk):
                    with files.atomic_path(folder / names[ic]) as tmp:
                        with open(tmp, "wb") as fh:
                            np.save(fh, row, allow_pickle=False)
                bar.update(len(chunk))
        finally:
            bar.close()

    def size_bytes(self) -> int:
        """How much disk the cached activations under :attr:`root` take."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0

    def describe(self) -> str:
        """Where the cache lives, how big it is, and how to clear it."""
        folders = [p for p in self.root.iterdir() if p.is_dir()] if self.root.exists() else []
        return (f"activation cache: {self.root} — {_human(self.size_bytes())} in {len(folders)} folder(s); "
                "clear it with `python -m helpers cache --clear`")

    def clear(self) -> None:
        """Delete every cached activation under :attr:`root` (your photos are never touched)."""
        import shutil

        if self.root.exists():
            shutil.rmtree(self.root)


def _rng_seed(digest: str, seed: int, copy: int) -> int:
    return int(_digest(digest, str(seed), str(copy))[:15], 16)


def _describe_source(source: str | None) -> str | None:
    """A weights file as path + size + mtime (for people reading meta.json; the key hashes values)."""
    if source is None:
        return None
    path = Path(str(source))
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})"
    return str(source)


__all__ = ["BottleneckCache", "CacheStats", "activations", "augment_pixels", "default_root", "file_digest",
           "model_fingerprint"]
