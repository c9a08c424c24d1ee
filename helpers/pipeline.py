"""Input pipelines with ``tf.data``: decode and resize photos in parallel, prefetch (notebook 05).

The goal is that the backbone, not the loader, is the slowest part: while the network
works on one batch, other threads decode and resize the next ones.

:func:`photo_dataset` decodes with :func:`helpers.data.load_image` (PIL, EXIF rotation,
centre crop, bilinear resize) inside ``tf.data``'s parallel ``map`` — PIL releases the
GIL while it decodes and resizes, so the threads really run in parallel — and therefore
gives **exactly the same pixels** as ``load_image`` for the same file.
``decoder="tf"`` uses TensorFlow's own JPEG/PNG decoder and resize instead: no Python in
the loop, but the pixels differ slightly (a different JPEG IDCT and resampling filter,
typically ±1–3 grey levels) and EXIF orientation is ignored, so it is opt-in.

:func:`from_arrays` feeds stored arrays (cached activations, decoded photos) to ``fit``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import load_image


def _tf():
    import tensorflow as tf

    return tf


def from_arrays(x: np.ndarray, y=None, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
                repeat: bool = False):
    """A batched, prefetched dataset over in-memory arrays (reshuffled every epoch if ``shuffle``).

    With ``repeat=True`` the dataset never ends: pass ``steps_per_epoch`` to ``fit``, which
    then keeps one iterator for the whole run instead of building one per epoch.
    """
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


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


def photo_dataset(paths: Sequence[str | os.PathLike], size: int, labels: Sequence[int] | None = None,
                  batch_size: int = 32, shuffle: bool = False, seed: int = 0, decoder: str = "pil",
                  parallel: int | None = None):
    """Photos as a ``tf.data`` dataset of ``(batch, size, size, 3)`` uint8 (with labels if given).

    Decoding and resizing run on ``parallel`` threads (default: tf.data's AUTOTUNE) and the
    next batches are prefetched while the model works. ``decoder="pil"`` gives the same
    pixels as :func:`helpers.data.load_image`; ``decoder="tf"`` is pure TensorFlow.
    """
    tf = _tf()
    if decoder not in ("pil", "tf"):
        raise ValueError(f"decoder must be 'pil' or 'tf', got {decoder!r}")
    names = [str(Path(p)) for p in paths]
    missing = [p for p in names if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} photo(s) not found, e.g. {missing[0]}; check the folder")
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


def images_per_second(model, dataset_or_array, batch_size: int = 32) -> tuple[float, int]:
    """Run ``model.predict`` over a dataset or array; return (images/s, images)."""
    import time

    start = time.perf_counter()
    out = model.predict(dataset_or_array, batch_size=None if not isinstance(dataset_or_array, np.ndarray)
                        else batch_size, verbose=0)
    seconds = time.perf_counter() - start
    return len(out) / seconds, len(out)
