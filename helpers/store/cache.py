"""The bottleneck cache: run the frozen part of a network once, train what is above the cut.

Notebook 05 ("small data, short time") teaches this. While the base is frozen, a plain
Keras ``fit`` runs the whole frozen network again over every photo in every epoch. Here we
*cut* the model at a cut point (:func:`helpers.model.lesson.split_at`, :func:`helpers.model.cuts.split_at`):
the **bottom** (frozen, below the cut) runs once per photo and its output — the *activations*
at the cut — is kept; the **top** (above the cut: the head, plus any unfrozen blocks) then
trains on the stored activations.
The top shares its layers with the full model, so training the top trains the model.

Any cut point works: ``pool`` (the pooled features, for head training), or a block
output such as InceptionV3's ``mixed8`` for fine-tuning ``mixed9``–``mixed10`` + head.

On disk (:class:`BottleneckCache`), one ``.npy`` file per photo (no pickle) with a checksum
trailer, written atomically and checked (checksum, shape, dtype, length, finite values) when read,
under a folder whose name is a hash of everything that changes the activations:
the bottom's architecture and weight *values* (so the weights file, the backbone, the cut
point, the image size and the preprocessing layer are all covered), the storage dtype and
the pixel loader. Each photo's file name is a hash of the photo's *content* (plus the
augmentation copy it is). Change any of these and the activations are recomputed.

**Checkpoints.** While the store runs photos up to a cut (``pool``), it also keeps, from the
same forward pass, their activations at a *checkpoint* lower down: by default the cut point below
the top two blocks (:data:`CHECKPOINT_BLOCKS`), where fine-tuning starts by default (notebook 04,
``helpers train --fine-tune-from 2``). It runs the photos up to the checkpoint, stores that, and
goes on from the stored activations to the cut. Fine-tuning then reads the checkpoint back: no
photo goes through the frozen layers below it a second time. The price is disk, per photo the
checkpoint's size (``python -m helpers cache --list``); ``checkpoint=None`` keeps only the cut.

Augmentation and caching conflict: a cached activation is one fixed view of a photo. The
honest options here are ``augment_copies=0`` (no augmentation while training on the cache)
or ``augment_copies=K`` (K extra, fixed, seeded random views per photo — flips and
crops — computed once; the network sees the same K+1 views every epoch instead of a new
random view each time).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
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
from helpers.store import passes

CACHE_ENV = "WORKBOOK_CACHE"
DEFAULT_DTYPE = "float16"
FORMAT_VERSION = 2  # 2: entries carry a checksum trailer
LOADER = "helpers.data.folders.load_image/v1"  # bump when load_image changes its pixels
AUGMENT = "flip+crop/v1"  # bump when augment_pixels changes
#: By default the store also keeps the activations below the top this-many blocks of the base
#: (the cut notebook 04's ``FINE_TUNE_FROM = 2`` fine-tunes above), computed in the same pass.
CHECKPOINT_BLOCKS = 2


def default_root() -> Path:
    """Where bottleneck caches live: ``$WORKBOOK_CACHE``, else ``~/.cache/transfer-workbook``."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-workbook" / "bottlenecks"


# --------------------------------------------------------------------------- in memory


def activations(
    bottom: keras.Model, pixels: np.ndarray, batch_size: int = 32, dtype: str = DEFAULT_DTYPE, verbose: int = 0
) -> np.ndarray:
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
    window = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
    return np.asarray(Image.fromarray(window).resize((size, size), Image.Resampling.BILINEAR), np.uint8)


# --------------------------------------------------------------------------- keys


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _canonical(value):
    """A layer config with every number as a float: ``offset=-1`` and ``offset=-1.0`` are the same layer."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def model_fingerprint(bottom: keras.Model) -> str:
    """A hash of ``bottom``'s architecture (every layer's class and config) and weight values.

    Covers the backbone, the preprocessing layer, the image size, the cut point and the
    weights (whichever file they came from, and whether anything changed them since).
    Nested models (the lesson's base) are hashed layer by layer, and names are left out:
    Keras numbers unnamed layers per process (``conv2d_94`` in a second InceptionV3).
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([list(t.shape) for t in bottom.inputs] + [list(bottom.output.shape)]).encode())
    for layer in cuts.flat_layers(bottom):
        config = _canonical({k: v for k, v in layer.get_config().items() if k != "name"})
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


class _NotebookProgress:
    """A progress line that a notebook updates in place (a display handle), unlike a tqdm widget,
    whose stored text stays at 0% in a headless run: what is kept is the last state, "15/15"."""

    def __init__(self, total: int) -> None:
        from IPython.display import display

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


def _progress(total: int, enabled: bool):
    """tqdm in a terminal; in a notebook kernel a line updated in place; nothing when not ``enabled``."""
    if enabled and settings.in_notebook():
        return _NotebookProgress(total)
    from tqdm import tqdm

    return tqdm(total=total, desc="bottleneck", unit="img", disable=not enabled)


# --------------------------------------------------------------------------- on disk
#
# One entry = one photo's activations: a standard ``.npy`` file (no pickle) followed by a
# 20-byte trailer, ``ENTRY_TRAILER`` + a 16-byte BLAKE2b digest of everything before it.
# ``np.load`` ignores the trailer; :func:`read_entry` checks it, and the shape, dtype,
# length and finiteness, so a truncated, overwritten, foreign or NaN entry is never used.

ENTRY_TRAILER = b"WBK2"
_TRAILER_LEN = len(ENTRY_TRAILER) + 16
TEMP_MAX_AGE = 3600.0
"""Temporary files older than this (seconds) are leftovers of a killed writer and are removed."""


class BadEntry(ValueError):
    """A cache entry that cannot be used; the message says what is wrong with it."""


def entry_bytes(array: np.ndarray) -> bytes:
    """The bytes of one cache entry: ``.npy`` data + trailer with its checksum."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    body = buffer.getvalue()
    return body + ENTRY_TRAILER + hashlib.blake2b(body, digest_size=16).digest()


def write_entry(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one entry atomically: readers see the old file, no file, or the whole new one."""
    with files.atomic_path(path) as tmp:
        tmp.write_bytes(entry_bytes(array))
    return Path(path)


def read_entry(path: str | os.PathLike, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """One entry, checked: raises :class:`BadEntry` (why) or ``FileNotFoundError`` (absent)."""
    data = Path(path).read_bytes()
    body, trailer = data[:-_TRAILER_LEN], data[-_TRAILER_LEN:]
    if len(data) < _TRAILER_LEN or not trailer.startswith(ENTRY_TRAILER):
        raise BadEntry(
            f"incomplete or foreign file ({len(data)} bytes, no checksum trailer): "
            "truncated by an interrupted write, or not written by the workbook"
        )
    if hashlib.blake2b(body, digest_size=16).digest() != trailer[len(ENTRY_TRAILER) :]:
        raise BadEntry("checksum mismatch: the file was changed or damaged after it was written")
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        stored_shape, fortran, stored_dtype = _read_header(stream, version)
    except Exception as exc:  # a bad magic string or header
        raise BadEntry(f"not a .npy array ({exc})") from None
    if tuple(stored_shape) != tuple(shape):
        raise BadEntry(f"holds an array of shape {tuple(stored_shape)}, expected {tuple(shape)}")
    if stored_dtype != np.dtype(dtype):
        raise BadEntry(f"holds {stored_dtype} values, expected {np.dtype(dtype).name}")
    count = math.prod(shape)
    if len(body) - stream.tell() != count * stored_dtype.itemsize:
        raise BadEntry(f"holds {len(body) - stream.tell()} bytes of data, expected {count * stored_dtype.itemsize}")
    array = np.frombuffer(body, stored_dtype, count, offset=stream.tell()).reshape(shape, order="F" if fortran else "C")
    if not np.isfinite(array).all():
        raise BadEntry(f"holds {int((~np.isfinite(array)).sum())} NaN or infinite values")
    return array


def _read_header(stream, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy version {version}")


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
class CacheFolder:
    """One folder of a cache root: what model, cut and image size its entries are for."""

    path: Path
    meta: dict
    entries: int
    bytes: int

    def describe(self) -> str:
        m = self.meta
        what = (
            (
                f"{m.get('model', '?')} cut at {m.get('cut', '?')}, {m.get('image_size', '?')} px, "
                f"{m.get('dtype', '?')} {tuple(m.get('output_shape') or ())}"
            )
            if m
            else "no readable meta.json"
        )
        weights = f", weights {m['weights_source']}" if m.get("weights_source") else ""
        return f"{self.path.name}: {self.entries} entries, {_human(self.bytes)} ({what}{weights})"


class BottleneckCache:
    """Activations at a cut point, one checked entry per photo, keyed by everything that changes them.

    >>> cache = BottleneckCache()                      # doctest: +SKIP
    >>> bottom, top = split_at(model, "pool")          # doctest: +SKIP
    >>> feats = cache.activations(bottom, paths)       # computed once, then read back
    >>> print(cache.describe())                        # where it lives and how big it is  # doctest: +SKIP

    Several processes may share one root: entries are written atomically and checked when
    read, so a reader never sees half an entry; a damaged entry is named and recomputed.

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
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.dtype = np.dtype(dtype).name
        self.progress = progress
        self.checkpoint = checkpoint

    # -- what is there ------------------------------------------------------------------

    def folders(self) -> list[CacheFolder]:
        """Every cache folder under :attr:`root` (folders with a ``meta.json``), by name."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and (p / "meta.json").exists()):
            try:
                meta = json.loads((folder / "meta.json").read_text())
                meta = meta if isinstance(meta, dict) else {}
            except (OSError, ValueError):
                meta = {}
            entries = [p for p in folder.iterdir() if p.suffix == ".npy" and not p.name.startswith(".")]
            size = sum(_size(p) for p in folder.iterdir())
            out.append(CacheFolder(folder, meta, len(entries), size))
        return out

    @property
    def total_bytes(self) -> int:
        """Bytes used by every cache folder under :attr:`root`."""
        return sum(f.bytes for f in self.folders())

    def describe(self) -> str:
        """One line: where the cache lives and how big it is."""
        folders = self.folders()
        if not folders:
            return f"bottleneck cache at {self.root}: empty"
        return (
            f"bottleneck cache at {self.root}: {len(folders)} folders, "
            f"{sum(f.entries for f in folders)} entries, {_human(sum(f.bytes for f in folders))}"
        )

    # -- one model's folder -------------------------------------------------------------

    def folder_for(self, bottom: keras.Model, weights_source: str | None = None, cut: str | None = None) -> Path:
        """The folder holding ``bottom``'s activations (created with a ``meta.json``).

        ``cut`` names the cut point for the folder's name; by default it is read from the
        bottom's name (``split_at`` names it ``…_below_<cut>``), else its last layer.
        """
        fingerprint = model_fingerprint(bottom)
        cut = cut or _cut_name(bottom)
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "dtype": self.dtype,
            "loader": LOADER,
            "cut": cut,
            "image_size": int(bottom.inputs[0].shape[1]),
            "output_shape": list(bottom.output.shape[1:]),
            "model": bottom.name,
        }
        key = _digest(fingerprint, self.dtype, LOADER, str(FORMAT_VERSION))
        folder = self.root / f"{cut}-{meta['image_size']}px-{key[:24]}"
        meta_file = folder / "meta.json"
        stored = None
        if meta_file.exists():
            try:
                stored = json.loads(meta_file.read_text())
                if not isinstance(stored, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                print(
                    f"bottleneck cache: {meta_file} is unreadable ({type(exc).__name__}); writing it again",
                    file=sys.stderr,
                    flush=True,
                )
                stored = None
        if stored is not None:
            if stored.get("fingerprint") != fingerprint or stored.get("dtype") != self.dtype:
                raise RuntimeError(
                    f"bottleneck cache {folder} belongs to another model; delete the folder "
                    f"(python -m helpers cache --clear clears the whole cache)"
                )
        else:
            meta["weights_source"] = _describe_source(weights_source)
            files.write_json(meta_file, meta)
        _remove_stale_temporaries(folder)
        return folder

    def activations(
        self,
        bottom: keras.Model,
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
        bottom: keras.Model,
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
        paths = [Path(p) for p in paths]
        folder = self.folder_for(bottom, weights_source)
        size = int(bottom.inputs[0].shape[1])
        shape = tuple(int(d) for d in bottom.output.shape[1:])
        digests = [file_digest(p) for p in paths]
        wanted = [(i, copy) for copy in range(augment_copies + 1) for i in range(len(paths))]
        tag = AUGMENT.replace("/", "")
        names = {(i, c): digests[i] + ("" if c == 0 else f"-{tag}-s{seed}-c{c}") + ".npy" for i, c in wanted}
        out = np.empty((len(wanted), *shape), self.dtype)  # filled row by row: one copy in memory
        position = {ic: row for row, ic in enumerate(wanted)}
        missing, bad = [], 0
        for ic in wanted:
            try:
                out[position[ic]] = read_entry(folder / names[ic], shape, self.dtype)
            except FileNotFoundError:
                missing.append(ic)
            except (BadEntry, OSError) as exc:
                bad += 1
                missing.append(ic)
                print(
                    f"bottleneck cache: {folder / names[ic]} (photo {paths[ic[0]]}) is damaged: {exc}; recomputing it",
                    file=sys.stderr,
                    flush=True,
                )
        via = self.checkpoint_for(bottom) if any(c == 0 for _, c in missing) else None
        continued = [ic for ic in missing if ic[1] == 0] if via is not None else []
        direct = [ic for ic in missing if not (continued and ic[1] == 0)]  # augmented views: from pixels
        if continued:
            self._continue(via, paths, continued, names, folder, batch_size, out, position, weights_source)
        if direct:
            self._compute(bottom, paths, digests, direct, names, folder, size, seed, batch_size, out, position)
        cut, key = _cut_name(bottom), passes.network_key(bottom)
        passes.record(key, digests, sum(1 for _, c in direct if c == 0), kind=f"frozen, up to {cut}")
        if continued:
            passes.record(
                key,
                [digests[i] for i, _ in continued],
                len(continued),
                kind=f"{passes.CONTINUED_PREFIX} {via.name}, up to {cut}",
            )
        if augment_copies:
            passes.record(
                key,
                [f"{d}-views-s{seed}" for d in digests],
                sum(1 for _, c in missing if c > 0),
                kind=f"augmented views, up to {cut}",
            )
        seconds = time.perf_counter() - start
        return out, CacheStats(len(wanted) - len(missing), len(missing), seconds, folder, bad, len(continued))

    def checkpoint_for(self, bottom: keras.Model) -> cuts.Cut | None:
        """``bottom`` cut at the store's checkpoint, when that lies below ``bottom``'s own cut; else None.

        Needs the lesson's shape (one nested base, :func:`helpers.model.cuts.base_of`). A number of top
        blocks is counted on the whole base, so it applies to bottoms that hold all of it (cut at
        ``pool``); a checkpoint given by name also applies to bottoms cut higher inside the base.
        """
        if self.checkpoint is None:
            return None
        try:
            base = cuts.base_of(bottom)
        except ValueError:
            return None
        names = cuts.cut_points(base)
        if isinstance(self.checkpoint, str):
            at = self.checkpoint
        elif "_below_" in base.name:  # part of a base: its top blocks are not the base's top blocks
            return None
        else:
            try:
                at = cuts.resolve_block(base, self.checkpoint)
            except ValueError:  # a base with too few blocks
                return None
        if at not in names[:-1]:
            return None
        return cuts.split_at(bottom, at)

    def _continue(self, via, paths, wanted, names, folder, batch_size, out, position, weights_source) -> None:
        """The ``wanted`` photos from their activations at the checkpoint (read back, or computed and stored).

        In chunks, so memory holds one chunk of checkpoint activations, never all of them.
        """
        self._announce(
            via.top,
            len(wanted),
            folder,
            f", on from their activations at {via.name} (stored as well: fine-tuning above it reads them back)",
        )
        chunk_size = max(batch_size, 512)
        for start in range(0, len(wanted), chunk_size):
            chunk = wanted[start : start + chunk_size]
            below = self.activations(
                via.bottom, [paths[i] for i, _ in chunk], batch_size=batch_size, weights_source=weights_source
            )
            for b in range(0, len(chunk), batch_size):
                rows = via.top.predict_on_batch(below[b : b + batch_size].astype("float32"))
                self._store(rows, chunk[b : b + batch_size], paths, names, folder, out, position)

    def _announce(self, model: keras.Model, n: int, folder: Path, how: str = "") -> None:
        """Say, before the work starts, how many activations are computed, how big, and where they go."""
        per_item = math.prod(int(d) for d in model.output.shape[1:]) * np.dtype(self.dtype).itemsize
        where = "" if settings.in_notebook() else f" in {folder}"  # a notebook: no hashed folder names
        print(
            f"bottleneck cache: computing {n} activations at {folder.name.split('-')[0]} "
            f"({tuple(model.output.shape[1:])} {self.dtype}, {_human(per_item)} each) "
            f"≈ {_human(per_item * n)}{where}{how}",
            flush=True,
        )

    def _store(self, rows, chunk, paths, names, folder, out, position) -> None:
        """Check and store one batch of computed activations, and put them in ``out``."""
        for row, ic in zip(np.asarray(rows).astype(self.dtype), chunk):
            if not np.isfinite(row).all():
                raise ValueError(
                    f"the activations of {paths[ic[0]]} at {folder.name.split('-')[0]} are "
                    f"not finite (NaN or inf) in {self.dtype}: the weights are broken, or the "
                    "values overflow float16 (use dtype='float32')"
                )
            write_entry(folder / names[ic], row)
            out[position[ic]] = row

    def _compute(self, bottom, paths, digests, missing, names, folder, size, seed, batch_size, out, position) -> None:
        """Run ``bottom`` over the ``missing`` photos in batches; store each entry and put it in ``out``."""
        self._announce(bottom, len(missing), folder)
        bar = _progress(len(missing), self.progress)
        try:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                originals = load_images([paths[i] for i, _ in chunk], size)
                pixels = np.stack(
                    [
                        pix if c == 0 else augment_pixels(pix, np.random.default_rng(_rng_seed(digests[i], seed, c)))
                        for pix, (i, c) in zip(originals, chunk)
                    ]
                )
                self._store(bottom.predict_on_batch(pixels), chunk, paths, names, folder, out, position)
                bar.update(len(chunk))
        finally:
            bar.close()

    def clear(self) -> int:
        """Delete every cache folder under :attr:`root`; return the bytes freed.

        Only folders the cache made (they hold a ``meta.json``) are removed, and the root
        itself if that leaves it empty: a root pointed at a folder of other files is safe.
        """
        freed = 0
        for entry in self.folders():
            freed += entry.bytes
            shutil.rmtree(entry.path, ignore_errors=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
        return freed


def list_caches(root: str | os.PathLike | None = None) -> str:
    """What ``python -m helpers cache --list`` prints: the root, then one line per folder."""
    cache = BottleneckCache(root)
    lines = [cache.describe()]
    lines += [f"  {f.describe()}" for f in cache.folders()]
    return "\n".join(lines)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _cut_name(bottom: keras.Model) -> str:
    """The cut point a bottom ends at, from its name (``split_at``) or else its last layer (public API only)."""
    if "_below_" in bottom.name:
        return bottom.name.rsplit("_below_", 1)[1]
    return bottom.layers[-1].name


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files a killed writer left (old ones only: a live writer's are young)."""
    if not folder.is_dir():
        return
    now = time.time()
    for p in folder.glob(".*"):
        try:
            if p.is_file() and now - p.stat().st_mtime > TEMP_MAX_AGE:
                p.unlink()
        except OSError:
            pass


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


__all__ = [
    "CHECKPOINT_BLOCKS",
    "BadEntry",
    "BottleneckCache",
    "CacheFolder",
    "CacheStats",
    "list_caches",
    "read_entry",
    "write_entry",
    "activations",
    "augment_pixels",
    "default_root",
    "file_digest",
    "model_fingerprint",
]
