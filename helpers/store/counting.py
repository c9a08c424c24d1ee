"""Forward passes counted from the Keras side: the network a photo went through, and Keras' own calls.

:mod:`helpers.store.passes` keeps the log and reads it without Keras (the notebook runner);
this module names the network a count belongs to (:func:`network_key`, shared with the activation
store) and, in the runner's kernels only (:mod:`helpers.tools.kernel`, after :func:`helpers.start`),
wraps ``keras.Model.fit/evaluate/predict`` so plain Keras calls are counted too (:func:`count_keras_calls`).
"""

from __future__ import annotations

import functools
import hashlib

import keras
import numpy as np

from helpers.model import cuts
from helpers.store import passes


def network_key(model) -> dict:
    """What photos are counted per: the pretrained base in ``model``, the image size, and its weights.

    The base is the model nested in ``model`` (the lesson's base, or the part of it below a cut
    that :func:`helpers.model.cuts.split_at` made, named as the whole base by its cut record), else ``model``
    itself; the weights are named by a
    digest of the base's first weight tensor, which no cut and no fine-tuning of the top blocks
    changes. The bottleneck cache and :func:`count_keras_calls` use the same key, so their
    records add up per network.
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    base = nested[0] if nested else model
    first = next((v for layer in cuts.flat_layers(base) for v in layer.weights), None)
    digest = hashlib.blake2b(digest_size=12)
    if first is not None:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(first)).tobytes())
    return {
        "backbone": cuts.cut_point(model).backbone,  # a half of a split: its whole base's name
        "image_size": int(model.inputs[0].shape[1]),
        "weights": digest.hexdigest(),
    }


def frozen_base(model):
    """The pretrained base a whole-model call runs photos through, or None (a head, a CNN from scratch)."""
    if cuts.is_top(model):  # the upper half of a split: activations in, not photos
        return None
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


_COUNTED = False


def count_keras_calls() -> bool:
    """Count the photos that ``Model.fit``, ``evaluate`` and ``predict`` send through a pretrained base.

    The cache counts what it computes, photo by photo; a lesson cell's plain ``model.fit(pixels)``
    runs the frozen base over every photo in every epoch, inside Keras. This wraps the three
    public methods of ``keras.Model`` so that each call on a model holding a base records
    ``samples × epochs`` (fit; its validation goes through ``evaluate``) or ``samples``
    (evaluate, predict) under :data:`helpers.store.passes.PLAIN_KIND`. Only the notebook runner switches it on
    (``helpers`` calls this when ``$WORKBOOK_PASS_LOG`` is set); returns whether it is on.
    """
    global _COUNTED
    if _COUNTED or passes.log_path() is None:
        return _COUNTED

    def counting(name, original):
        @functools.wraps(original)
        def method(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            base = frozen_base(self)
            if base is not None:
                x = args[0] if args else kwargs.get("x")
                n = _samples(x)
                if name == "fit":
                    n = None if n is None else round(n * (1 - float(kwargs.get("validation_split") or 0)))
                    n = None if n is None else n * len(getattr(result, "epoch", []) or [])
                kind = passes.PLAIN_KIND if n is not None else f"{passes.PLAIN_KIND}, uncounted"
                passes.record(network_key(self), [], n or 0, kind=kind)
            return result

        return method

    for name in ("fit", "evaluate", "predict"):
        setattr(keras.Model, name, counting(name, getattr(keras.Model, name)))
    _COUNTED = True
    return True


def _samples(x) -> int | None:
    """How many samples an ``x`` of fit/evaluate/predict holds (arrays, tensors, lists or dicts of them)."""
    if isinstance(x, dict):
        x = next(iter(x.values()), None)
    if isinstance(x, (list, tuple)) and x:
        x = x[0]
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) and shape[0] is not None:
        return int(shape[0])
    return None
