"""Input pipelines with ``tf.data``: decode and resize photos in parallel, prefetch (notebook 05).

The goal is that the backbone, not the loader, is the slowest part: while the network
works on one batch, other threads decode and resize the next ones.

:func:`photo_dataset` decodes with :func:`helpers.data.folders.load_image` (PIL, EXIF rotation,
centre crop, bilinear resize) inside ``tf.data``'s parallel ``map`` — PIL releases the
GIL while it decodes and resizes, so the threads really run in parallel — and therefore
gives **exactly the same pixels** as ``load_image`` for the same file.
``decoder="tf"`` uses TensorFlow's own JPEG/PNG decoder and resize instead: no Python in
the loop, but the pixels differ slightly (a different JPEG IDCT and resampling filter,
typically ±1–3 grey levels) and EXIF orientation is ignored, so it is opt-in.

:func:`from_arrays` feeds stored arrays (cached activations, decoded photos) to ``fit``.

Without TensorFlow (``KERAS_BACKEND=jax`` or ``torch`` and ``requirements-jax.txt``), both
functions return a ``keras.utils.PyDataset`` instead, which ``fit``/``predict`` take on every
backend: the same batches, the same labels, PIL decoding on a pool of threads, a seeded
shuffle that changes every epoch. ``decoder="tf"`` then says that it needs TensorFlow.
With TensorFlow installed nothing changes: ``tf.data`` as before, whatever the backend.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from helpers.data.folders import load_image


def has_tensorflow() -> bool:
    """Whether TensorFlow is installed (then ``tf.data`` feeds ``fit``, whatever the Keras backend)."""
    return importlib.util.find_spec("tensorflow") is not None


def _tf():
    """TensorFlow, imported only here: it is optional (the JAX and PyTorch setups run without it)."""
    import tensorflow as tf  # noqa: PLC0415 (an optional backend, see has_tensorflow)

    return tf


class ArrayBatches(keras.utils.PyDataset):
    """In-memory arrays in batches, without TensorFlow: what :func:`from_arrays` returns then.

    ``shuffle``: a seeded order, different in every pass; ``repeat``: never ends (pass
    ``steps_per_epoch`` to ``fit``), the order reshuffled at each pass through the data.
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = False, seed: int = 0, repeat: bool = False):
        super().__init__()
        self.x, self.y = x, (None if y is None else np.asarray(y))
        self.batch_size, self.shuffle, self.seed, self.repeat = batch_size, shuffle, seed, repeat
        self._pass = 0

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.x)
        return np.random.default_rng((self.seed, epoch)).permutation(n) if self.shuffle else np.arange(n)

    def _per_pass(self) -> int:
        return max(1, math.ceil(len(self.x) / self.batch_size))

    @property
    def num_batches(self):
        return None if self.repeat else self._per_pass()

    def __len__(self) -> int:
        return self._per_pass()

    def __getitem__(self, index: int):
        per_pass = self._per_pass()
        if not self.repeat and index >= per_pass:
            raise IndexError(index)
        epoch, index = (index // per_pass, index % per_pass) if self.repeat else (self._pass, index)
        rows = self._order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.asarray(self.x[rows]) if isinstance(self.x, np.ndarray) else np.asarray(self.x)[rows]
        return x if self.y is None else (x, self.y[rows])

    def on_epoch_end(self):
        self._pass += 1


class PhotoBatches(ArrayBatches):
    """Photo files decoded by :func:`helpers.data.folders.load_image` in batches, on ``workers`` threads.

    What :func:`photo_dataset` returns without TensorFlow: PIL releases the GIL while it
    decodes, so Keras' worker threads really run in parallel, and the next batches are
    queued while the model works on one.
    """

    def __init__(
        self,
        paths: list[str],
        size: int,
        labels=None,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
    ):
        super().__init__(np.asarray(paths, dtype=object), labels, batch_size, shuffle, seed)
        self.size = size
        self.workers = min(8, os.cpu_count() or 1)  # photo_dataset sets Decoding.parallel here
        self.max_queue_size = 4

    def __getitem__(self, index: int):
        batch = super().__getitem__(index)
        paths, labels = batch if self.y is not None else (batch, None)
        x = (
            np.stack([load_image(p, self.size) for p in paths])
            if len(paths)
            else np.zeros((0, self.size, self.size, 3), np.uint8)
        )
        return x if labels is None else (x, labels.astype(np.int32))


def from_arrays(
    x: np.ndarray, y=None, batch_size: int = 32, shuffle: bool = False, seed: int = 0, repeat: bool = False
):
    """A batched, prefetched dataset over in-memory arrays (reshuffled every epoch if ``shuffle``).

    With ``repeat=True`` the dataset never ends: pass ``steps_per_epoch`` to ``fit``, which
    then keeps one iterator for the whole run instead of building one per epoch.
    Without TensorFlow: an :class:`ArrayBatches` with the same batches.
    """
    if not has_tensorflow():
        return ArrayBatches(x, y, batch_size, shuffle, seed, repeat)
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class Decoding:
    """How :func:`photo_dataset` decodes photos.

    ``decoder="pil"`` gives the same pixels as :func:`helpers.data.folders.load_image`; ``"tf"`` is pure
    TensorFlow. ``parallel`` threads decode (None: tf.data's AUTOTUNE; without TensorFlow, up to 8).
    """

    decoder: str = "pil"
    parallel: int | None = None


def _tf_decode(path, size: int):
    """Decode + centre-crop + bilinear resize in TensorFlow ops (like ``ImageOps.fit``)."""
    tf = _tf()
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    side = tf.minimum(h, w)
    top = tf.cast(tf.round((h - side) / 2), tf.int32)
    left = tf.cast(tf.round((w - side) / 2), tf.int32)
    side_i = tf.cast(side, tf.int32)
    image = tf.image.crop_to_bounding_box(image, top, left, side_i, side_i)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def photo_dataset(
    paths: Sequence[str | os.PathLike],
    size: int,
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    decoder: str | Decoding = "pil",
):
    """Photos as a ``tf.data`` dataset of ``(batch, size, size, 3)`` uint8 (with labels if given).

    Decoding and resizing run on parallel threads (:class:`Decoding`; default: tf.data's AUTOTUNE)
    and the next batches are prefetched while the model works. ``decoder="pil"`` gives the same
    pixels as :func:`helpers.data.folders.load_image`; ``decoder="tf"`` is pure TensorFlow;
    ``decoder=Decoding("pil", parallel=4)`` also sets the threads.
    Without TensorFlow: a :class:`PhotoBatches` (``decoder="pil"`` only).
    """
    decoding = decoder if isinstance(decoder, Decoding) else Decoding(decoder)
    decoder, parallel = decoding.decoder, decoding.parallel
    if decoder not in ("pil", "tf"):
        raise ValueError(f"decoder must be 'pil' or 'tf', got {decoder!r}")
    names = [str(Path(p)) for p in paths]
    missing = [p for p in names if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} photo(s) not found, e.g. {missing[0]}; check the folder")
    if not has_tensorflow():
        if decoder == "tf":
            raise ValueError(
                f"decoder='tf' needs TensorFlow, which is not installed (Keras backend "
                f"{keras.backend.backend()!r}); use decoder='pil' (the same pixels as load_image)"
            )
        batches = PhotoBatches(names, size, labels, batch_size, shuffle, seed)
        batches.workers = parallel or batches.workers
        return batches
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices(names)
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int32))))
    if shuffle:
        ds = ds.shuffle(len(names), seed=seed, reshuffle_each_iteration=True)

    if decoder == "pil":

        def decode(path):
            image = tf.numpy_function(lambda p: load_image(p.decode(), size), [path], tf.uint8, stateful=False)
            image.set_shape((size, size, 3))
            return image
    else:

        def decode(path):
            return _tf_decode(path, size)

    if labels is not None:
        ds = ds.map(lambda p, y: (decode(p), y), num_parallel_calls=parallel or tf.data.AUTOTUNE)
    else:
        ds = ds.map(decode, num_parallel_calls=parallel or tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
