"""What the activation store keys by: hashes of a network, of a photo, of an augmented view.

A folder's name hashes everything that changes the activations (the bottom's architecture and
weight values, the storage dtype, the pixel loader, the file format); an entry's name hashes the
photo's content (plus the augmented view it is). See :mod:`helpers.store.cache`.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np

from helpers.model import cuts

LOADER = "helpers.data.folders.load_image/v1"  # bump when load_image changes its pixels
AUGMENT = "flip+crop/v1"  # bump when augment_pixels changes


def digest(*parts: bytes | str) -> str:
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


def entry_name(photo_digest: str, seed: int, copy: int) -> str:
    """The file name of a photo's activations: its digest, plus the augmented view (``copy`` > 0)."""
    return photo_digest + ("" if copy == 0 else f"-{AUGMENT.replace('/', '')}-s{seed}-c{copy}") + ".npy"


def rng_seed(photo_digest: str, seed: int, copy: int) -> int:
    """The seed of a photo's augmented view ``copy``: the same view every time it is recomputed."""
    return int(digest(photo_digest, str(seed), str(copy))[:15], 16)
