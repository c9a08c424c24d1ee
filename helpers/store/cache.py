"""The bottleneck cache: run the frozen part of a network once, train what is above the cut.

Notebook 05 teaches this. While the base is frozen, a plain Keras ``fit`` runs the whole frozen network
again over every photo in every epoch. Here the model is *cut* at a cut point (:func:`helpers.model.cuts.split_at`):
the **bottom** (frozen) runs once per photo and its output, the *activations* at the cut, is kept; the
**top** (the head, plus any unfrozen blocks; its layers are the model's) trains on them. Any cut point
works: ``pool`` for the head, or a block output such as InceptionV3's ``mixed8`` for fine-tuning above it.

On disk (:class:`BottleneckCache`), one ``.npy`` file per photo (no pickle, :mod:`helpers.store.entries`) with a
checksum trailer, written atomically and checked (checksum, shape, dtype, length, finite values) when read,
under a folder whose name is a hash (:mod:`helpers.store.keys`) of everything that changes the activations:
the bottom's architecture and weight *values* (so the weights file, the backbone, the cut
point, the image size and the preprocessing layer are all covered), the storage dtype and
the pixel loader. Each photo's file name is a hash of the photo's *content* (plus the
augmentation copy it is). Change any of these and the activations are recomputed. The cut travels as an object
(:class:`helpers.model.cuts.Cut`, or the record :func:`helpers.model.cuts.cut_point` keeps of a bottom),
never read back from a model's name. What a root holds: :mod:`helpers.store.listing`.

**Checkpoints.** While the store runs photos up to a cut (``pool``), it also keeps, from the
same forward pass, their activations at a *checkpoint* lower down: by default the cut point below
the top two blocks (:data:`CHECKPOINT_BLOCKS`), where fine-tuning starts by default (notebook 04,
``helpers train --fine-tune-from 2``). It runs the photos up to the checkpoint, stores that, and
goes on from the stored activations to the cut. Fine-tuning then reads the checkpoint back: no
photo goes through the frozen layers below it a second time. The price is disk, per photo the
checkpoint's size (``python -m helpers cache --list``); ``checkpoint=None`` keeps only the cut.

Augmentation and caching conflict: a cached activation is one fixed view of a photo. The honest options
here are ``augment_copies=0`` (no augmentation on the cache) or ``augment_copies=K`` (K extra, fixed, seeded
random views per photo, flips and crops, computed once: the same K+1 views every epoch, not a new one).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from helpers import files, settings
from helpers.data.folders import load_images
from helpers.model import cuts
from helpers.store import compute, keys, listing
from helpers.store.compute import DEFAULT_DTYPE, activations, augment_pixels
from helpers.store.entries import (
    ENTRY_TRAILER,
    FORMAT_VERSION,
    TEMP_MAX_AGE,
    BadEntry,
    entry_bytes,
    read_entry,
    remove_stale_temporaries,
    write_entry,
)
from helpers.store.keys import AUGMENT, LOADER, file_digest, model_fingerprint
from helpers.store.listing import CacheFolder

#: By default the store also keeps the activations below the top this-many blocks of the base
#: (the cut notebook 04's ``FINE_TUNE_FROM = 2`` fine-tunes above), computed in the same pass.
CHECKPOINT_BLOCKS = 2


@dataclass
class CacheStats:
    """What one :meth:`BottleneckCache.fetch` call did.

    ``hits`` entries were read back, ``computed`` were computed (among them ``bad``
    entries that were found damaged and recomputed, and ``continued`` ones computed from
    activations stored at the checkpoint, not from pixels), in ``seconds``, in ``folder``.
    """

    hits: int = 0
    computed: int = 0
    seconds: float = 0.0
    folder: Path | None = None
    bad: int = 0
    continued: int = 0


@dataclass
class _Job:
    """One :meth:`BottleneckCache.fetch` call: the photos, where each entry goes, and the rows of the answer.

    ``wanted`` lists ``(photo index, view)`` pairs (view 0: the photo itself), ``out`` gets their
    activations row by row (one copy in memory), ``names`` their file names in ``folder``.
    """

    bottom: keras.Model
    point: cuts.CutPoint
    paths: list[Path]
    digests: list[str]
    wanted: list[tuple[int, int]]
    folder: Path
    out: np.ndarray
    seed: int = 0
    batch_size: int = 32
    weights_source: str | None = None

    def __post_init__(self) -> None:
        self.names = {(i, c): keys.entry_name(self.digests[i], self.seed, c) for i, c in self.wanted}
        self.position = {ic: row for row, ic in enumerate(self.wanted)}


class BottleneckCache:
    """Activations at a cut point, one checked entry per photo, keyed by everything that changes them.

    >>> cache = BottleneckCache()                      # doctest: +SKIP
    >>> bottom, top = split_at(model, "pool")          # doctest: +SKIP
    >>> feats = cache.activations(bottom, paths)       # computed once, then read back
    >>> print(cache.describe())                        # where it lives and how big it is  # doctest: +SKIP

    ``bottom`` is a bottom model (the lesson's ``split_at``) or a :class:`helpers.model.cuts.Cut`
    (its bottom is used, with its cut point). Several processes may share one root: entries are
    written atomically and checked when read, so a reader never sees half an entry; a damaged
    entry is named and recomputed.

    ``checkpoint``: where below a higher cut the store also keeps activations, from the same
    pass (see the module's doc): a number of top blocks (default :data:`CHECKPOINT_BLOCKS`),
    a cut point's name, or None (only the cut asked for).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        dtype: str = DEFAULT_DTYPE,
        progress: bool = True,
        checkpoint: int | str | None = CHECKPOINT_BLOCKS,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else settings.cache_root()
        self.dtype = np.dtype(dtype).name
        self.progress = progress
        self.checkpoint = checkpoint
        self.announce = progress  # the line before a computation (off for the checkpoint under an announced one)

    def quiet(self) -> BottleneckCache:
        """The same store, without its log line and progress bar: for a loop that prints its own summary."""
        quiet = copy.copy(self)
        quiet.progress = quiet.announce = False
        return quiet

    # -- what is there (helpers.store.listing) ------------------------------------------

    def folders(self) -> list[CacheFolder]:
        """Every cache folder under :attr:`root` (folders with a ``meta.json``), by name."""
        return listing.folders(self.root)

    @property
    def total_bytes(self) -> int:
        """Bytes used by every cache folder under :attr:`root`."""
        return sum(f.bytes for f in self.folders())

    def describe(self) -> str:
        """One line: where the cache lives and how big it is."""
        return listing.describe(self.root)

    def clear(self) -> int:
        """Delete every cache folder under :attr:`root` (only those the cache made); return the bytes freed."""
        return listing.clear(self.root)

    # -- one model's folder -------------------------------------------------------------

    def folder_for(
        self, bottom: keras.Model | cuts.Cut, weights_source: str | None = None, cut: str | None = None
    ) -> Path:
        """The folder holding ``bottom``'s activations (created with a ``meta.json``).

        ``cut`` names the cut point for the folder's name; by default the bottom's own
        (:func:`helpers.model.cuts.cut_point`).
        """
        bottom, point = _bottom_and_point(bottom)
        fingerprint = model_fingerprint(bottom)
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "dtype": self.dtype,
            "loader": LOADER,
            "cut": cut or point.layer,
            "image_size": int(bottom.inputs[0].shape[1]),
            "output_shape": list(bottom.output.shape[1:]),
            "model": bottom.name,
        }
        key = keys.digest(fingerprint, self.dtype, LOADER, str(FORMAT_VERSION))
        folder = self.root / f"{meta['cut']}-{meta['image_size']}px-{key[:24]}"
        stored = listing.read_meta(folder / "meta.json")
        if stored is None:
            meta["weights_source"] = listing.describe_source(weights_source)
            files.write_json(folder / "meta.json", meta)
        elif stored.get("fingerprint") != fingerprint or stored.get("dtype") != self.dtype:
            raise RuntimeError(
                f"bottleneck cache {folder} belongs to another model; delete the folder "
                f"(python -m helpers cache --clear clears the whole cache)"
            )
        remove_stale_temporaries(folder)
        return folder

    def activations(
        self,
        bottom: keras.Model | cuts.Cut,
        paths: Sequence[str | os.PathLike],
        augment_copies: int = 0,
        seed: int = 0,
        batch_size: int = 32,
        weights_source: str | None = None,
    ) -> np.ndarray:
        """``bottom``'s output for every photo in ``paths``: :meth:`fetch` without its stats."""
        return self.fetch(bottom, paths, augment_copies, seed, batch_size, weights_source)[0]

    def fetch(
        self,
        bottom: keras.Model | cuts.Cut,
        paths: Sequence[str | os.PathLike],
        augment_copies: int = 0,
        seed: int = 0,
        batch_size: int = 32,
        weights_source: str | None = None,
    ) -> tuple[np.ndarray, CacheStats]:
        """``bottom``'s output for every photo in ``paths`` (and K augmented copies of each), and what it took.

        Returns an array of ``len(paths) * (1 + augment_copies)`` rows — all originals first,
        then copy 1 of every photo, and so on — and the :class:`CacheStats` of this call
        (read back, computed, damaged, seconds, folder). Stored entries are read back and
        checked; missing or damaged ones (each damaged one named in one line) are computed —
        with a progress bar, after a size estimate — and stored.
        """
        start = time.perf_counter()
        model, point = _bottom_and_point(bottom)
        paths = [Path(p) for p in paths]
        wanted = [(i, copy) for copy in range(augment_copies + 1) for i in range(len(paths))]
        out = np.empty((len(wanted), *(int(d) for d in model.output.shape[1:])), self.dtype)
        folder = self.folder_for(model, weights_source, point.layer)
        job = _Job(model, point, paths, [file_digest(p) for p in paths], wanted, folder, out, seed, batch_size)
        job.weights_source = weights_source
        missing, bad = self._read_back(job)
        via = self.checkpoint_for(bottom) if any(c == 0 for _, c in missing) else None
        continued = [ic for ic in missing if ic[1] == 0] if via is not None else []
        direct = [ic for ic in missing if not (continued and ic[1] == 0)]  # augmented views: from pixels
        if continued:
            self._continue(job, via, continued)
        if direct:
            self._compute(job, direct)
        compute.count_passes(job, direct, continued, via)
        seconds = time.perf_counter() - start
        return out, CacheStats(len(wanted) - len(missing), len(missing), seconds, folder, bad, len(continued))

    def _read_back(self, job: _Job) -> tuple[list[tuple[int, int]], int]:
        """Fill ``job.out`` with the stored entries; return the missing or damaged ones, and how many were damaged."""
        shape = job.out.shape[1:]
        missing, bad = [], 0
        for ic in job.wanted:
            try:
                job.out[job.position[ic]] = read_entry(job.folder / job.names[ic], shape, self.dtype)
            except FileNotFoundError:
                missing.append(ic)
            except (BadEntry, OSError) as exc:
                bad += 1
                missing.append(ic)
                print(
                    f"bottleneck cache: {job.folder / job.names[ic]} (photo {job.paths[ic[0]]}) is damaged: {exc}; "
                    "recomputing it",
                    file=sys.stderr,
                    flush=True,
                )
        return missing, bad

    def checkpoint_for(self, bottom: keras.Model | cuts.Cut) -> cuts.Cut | None:
        """``bottom`` cut at the store's checkpoint, when that lies below ``bottom``'s own cut; else None.

        Needs the lesson's shape (one nested base, :func:`helpers.model.cuts.base_of`). A number of top
        blocks is counted on the whole base, so it applies to bottoms that hold all of it (cut at
        ``pool``); a checkpoint given by name also applies to bottoms cut higher inside the base.
        """
        bottom, point = _bottom_and_point(bottom)
        if self.checkpoint is None:
            return None
        try:
            base = cuts.base_of(bottom)
        except ValueError:
            return None
        if isinstance(self.checkpoint, str):
            at = self.checkpoint
        elif point.inside:  # part of a base: its top blocks are not the base's top blocks
            return None
        else:
            try:
                at = cuts.resolve_block(base, self.checkpoint)
            except ValueError:  # a base with too few blocks
                return None
        if at not in cuts.cut_points(base)[:-1]:
            return None
        return cuts.split_at(bottom, at)

    def _continue(self, job: _Job, via: cuts.Cut, wanted: list[tuple[int, int]]) -> None:
        """The ``wanted`` photos from their activations at the checkpoint (read back, or computed and stored),
        in chunks, so memory holds one chunk of checkpoint activations, never all of them."""
        how = f", on from their activations at {via.name} (stored as well: fine-tuning above it reads them back)"
        self._announce(via.top, len(wanted), job.folder, how)
        below_store = copy.copy(self)
        below_store.announce = False  # the line above said it: one line per computation, then its progress bar
        chunk_size = max(job.batch_size, 512)
        for start in range(0, len(wanted), chunk_size):
            chunk = wanted[start : start + chunk_size]
            photos = [job.paths[i] for i, _ in chunk]
            below = below_store.activations(via, photos, batch_size=job.batch_size, weights_source=job.weights_source)
            for b in range(0, len(chunk), job.batch_size):
                rows = compute.forward(via.top, below[b : b + job.batch_size].astype("float32"), job.batch_size)
                self._store(job, rows, chunk[b : b + job.batch_size])

    def _announce(self, model: keras.Model, n: int, folder: Path, how: str = "") -> None:
        """Say, before the work starts, how many activations are computed, how big, and where they go."""
        if not self.announce:  # progress off, or below a computation already announced
            return
        per_item = math.prod(int(d) for d in model.output.shape[1:]) * np.dtype(self.dtype).itemsize
        where = "" if settings.in_notebook() else f" in {folder}"  # a notebook: no hashed folder names
        print(
            f"bottleneck cache: computing {n} activations at {folder.name.split('-')[0]} "
            f"({tuple(model.output.shape[1:])} {self.dtype}, {listing.human(per_item)} each) "
            f"≈ {listing.human(per_item * n)}{where}{how}",
            flush=True,
        )

    def _store(self, job: _Job, rows, chunk: list[tuple[int, int]]) -> None:
        """Check and store one batch of computed activations, and put them in ``job.out``."""
        for row, ic in zip(np.asarray(rows).astype(self.dtype), chunk):
            if not np.isfinite(row).all():
                raise ValueError(
                    f"the activations of {job.paths[ic[0]]} at {job.point.layer} are "
                    f"not finite (NaN or inf) in {self.dtype}: the weights are broken, or the "
                    "values overflow float16 (use dtype='float32')"
                )
            write_entry(job.folder / job.names[ic], row)
            job.out[job.position[ic]] = row

    def _compute(self, job: _Job, missing: list[tuple[int, int]]) -> None:
        """Run the bottom over the ``missing`` photos in batches; store each entry and put it in ``job.out``."""
        self._announce(job.bottom, len(missing), job.folder)
        size = int(job.bottom.inputs[0].shape[1])
        bar = compute.progress(len(missing), self.progress)
        try:
            for start in range(0, len(missing), job.batch_size):
                chunk = missing[start : start + job.batch_size]
                originals = load_images([job.paths[i] for i, _ in chunk], size)
                pixels = np.stack(
                    [compute.view(pix, job.digests[i], job.seed, c) for pix, (i, c) in zip(originals, chunk)]
                )
                self._store(job, compute.forward(job.bottom, pixels, job.batch_size), chunk)
                bar.update(len(chunk))
        finally:
            bar.close()


def _bottom_and_point(part: keras.Model | cuts.Cut) -> tuple[keras.Model, cuts.CutPoint]:
    """A bottom and where it ends: a :class:`~helpers.model.cuts.Cut` says so, a bottom model has its record."""
    if isinstance(part, cuts.Cut):
        return part.bottom, part.point
    return part, cuts.cut_point(part)


def list_caches(root: str | os.PathLike | None = None) -> str:
    """What ``python -m helpers cache --list`` prints: the root, then one line per folder."""
    cache = BottleneckCache(root)
    lines = [cache.describe()]
    lines += [f"  {f.describe()}" for f in cache.folders()]
    return "\n".join(lines)


__all__ = [
    "AUGMENT",
    "CHECKPOINT_BLOCKS",
    "ENTRY_TRAILER",
    "TEMP_MAX_AGE",
    "entry_bytes",
    "BadEntry",
    "BottleneckCache",
    "CacheFolder",
    "CacheStats",
    "list_caches",
    "read_entry",
    "write_entry",
    "activations",
    "augment_pixels",
    "file_digest",
    "model_fingerprint",
]
