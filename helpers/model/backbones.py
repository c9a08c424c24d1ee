"""Pretrained backbones by name, built from the one table of their facts (:mod:`helpers.model.specs`).

The table (:data:`BACKBONES`, :func:`get_spec`, :func:`default_size`) is Keras-free and re-exported
here, where the notebooks reach it. The preprocessing layer is the lesson's ``preprocessing_for``
(notebook 02: :func:`preprocess_layer`), so every model takes **raw 0–255 RGB pixels**.

The notebooks write ``keras.applications.InceptionV3(...)`` themselves (notebooks 01–05); around
that call: names (``"inception_v3"`` for the CLI or ``"InceptionV3"`` as in Keras) and the Keras class
they stand for (:func:`application`, which the notebooks' load cells call), and the weight file Keras
would download and where a local copy may be (:func:`local_weights`). Weights are ``"imagenet"`` (a
local file in ``$WORKBOOK_WEIGHTS_DIR`` or Keras' cache, else Keras' own download), a path to a
weights file, or ``None`` (random init).
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from keras import ops

from helpers import settings
from helpers.model.lesson import preprocessing_for
from helpers.model.specs import BACKBONES, DEFAULT_BACKBONE, KERAS_NAMES, BackboneSpec, default_size, get_spec

WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could be neither found locally nor downloaded."""


def keras_class(spec: BackboneSpec) -> Callable[..., keras.Model]:
    """The ``keras.applications`` class of a table entry (its options, such as ``alpha``, not bound)."""
    return getattr(keras.applications, spec.keras_name)


def spec_of_model(model: keras.Model) -> BackboneSpec | None:
    """The table's entry for a Keras application model (a base), by the name Keras gives it; None if unknown."""
    return next((spec for spec in BACKBONES.values() if model.name.startswith(spec.model_name)), None)


def _find_local_weights(names: list[str]) -> Path | None:
    folders = [d for d in (settings.weights_dir(), settings.keras_cache_dir()) if d]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_weights(
    spec: BackboneSpec, weights: str | os.PathLike | None, include_top: bool = False, image_size: int | None = None
) -> str | None:
    """Turn ``"imagenet" | PATH | None`` into what the Keras constructor should get.

    ``"imagenet"`` becomes a local file path when ``$WORKBOOK_WEIGHTS_DIR`` or Keras' cache
    holds the expected file; otherwise it stays ``"imagenet"`` and Keras downloads.
    """
    if weights is None or str(weights).lower() in ("", "none", "random"):
        return None
    if str(weights) == "imagenet":
        local = _find_local_weights(spec.weight_file_names(include_top, image_size or spec.default_size))
        return str(local) if local else "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist. Pass weights='imagenet' to download, "
            f"a path to an existing .h5/.weights.h5 file, or weights=None for random init."
        )
    return str(path)


def _unavailable_message(spec: BackboneSpec, include_top: bool, image_size: int, cause: object) -> str:
    expected = spec.weight_file_names(include_top, image_size)[0]
    wdir = settings.weights_dir()
    return (
        f"Could not download the ImageNet weights for {spec.name} ({cause}).\n"
        f"Keras expects the file {expected!r} (from {WEIGHTS_BASE_URL}).\n"
        f"Work offline by doing one of:\n"
        f"  * put {expected} into {settings.keras_cache_dir()} (Keras' cache), or into "
        f"{wdir or 'a folder'} named by ${settings.WEIGHTS_ENV};\n"
        f"  * pass weights='/path/to/{expected}' (CLI: --weights PATH);\n"
        f"  * pass weights=None (CLI: --weights none) to start from random weights."
    )


def _construct(spec: BackboneSpec, resolved: str | None, include_top: bool, size: int, **kwargs) -> keras.Model:
    """Call the Keras Applications constructor, turning a failed download into one clear error.

    In a notebook, Keras' own "Downloading data from <url>" and its progress bar are replaced by
    one line naming the file (a failed download then ends in the one error below, not in both).
    """
    quiet = resolved == "imagenet" and settings.in_notebook() and keras.config.is_interactive_logging_enabled()
    if quiet:
        print(f"{spec.name}: fetching {spec.weight_file_names(include_top, size)[0]} into {settings.keras_cache_dir()}")
        keras.config.disable_interactive_logging()
    try:
        return keras_class(spec)(
            include_top=include_top, weights=resolved, input_shape=(size, size, 3), **spec.kwargs, **kwargs
        )
    except Exception as exc:  # Keras wraps URLError/HTTPError in a bare Exception
        text = str(exc)
        if resolved == "imagenet" and (
            isinstance(exc, (OSError, urllib.error.URLError)) or "URL fetch failure" in text
        ):
            raise WeightsUnavailableError(_unavailable_message(spec, include_top, size, text)) from None
        raise
    finally:
        if quiet:
            keras.config.enable_interactive_logging()


def build_base(
    name: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = "imagenet", image_size: int | None = None
) -> keras.Model:
    """The pretrained base without its top: the call notebook 02 writes out, by name.

    ``keras.applications.InceptionV3(include_top=False, weights=..., input_shape=...)``, with
    ``"imagenet"`` turned into a local file where one is at hand (:func:`resolve_weights`).
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    if size < spec.min_size:
        raise ValueError(f"{spec.name} needs images of at least {spec.min_size}px, got {size}")
    return _construct(spec, resolve_weights(spec, weights, False, size), False, size)


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    include_top: bool = True,
) -> keras.Model:
    """The whole ImageNet classifier (notebooks 01 and 06), taking raw 0–255 pixels.

    The backbone's preprocessing is put in front of it, so the model can be given a photo's
    pixels as they are; its input size is the backbone's own.
    """
    spec = get_spec(name)
    size = spec.default_size
    if image_size not in (None, size):
        raise ValueError(f"{spec.name} with its ImageNet top needs image_size={size}")
    classifier = _construct(spec, resolve_weights(spec, weights, include_top, size), include_top, size)
    inputs = keras.Input((size, size, 3), name="image")
    return keras.Model(inputs, classifier(preprocess_layer(spec.name)(inputs)), name=spec.name)


def preprocess_layer(name: str) -> keras.layers.Layer:
    """The layer that maps raw 0–255 pixels to what backbone ``name`` was trained on.

    The lesson's own ``preprocessing_for`` (notebook 02, ``helpers/model/lesson.py``): one definition
    for the notebooks and the package.
    """
    return preprocessing_for(get_spec(name).name)


def application(name: str) -> Callable[..., keras.Model]:
    """The ``keras.applications`` class a backbone name stands for, with its width bound.

    ``"InceptionV3"`` and ``"inception_v3"`` give ``keras.applications.InceptionV3``;
    ``"mobilenet_v2_0.35"`` gives ``keras.applications.MobileNetV2`` with ``alpha=0.35``.
    Call it as the class: ``application(BACKBONE)(include_top=False, weights=..., input_shape=...)``.
    """
    spec = get_spec(name)
    options = {k: v for k, v in spec.kwargs.items() if not (k == "alpha" and v == 1.0)}
    return functools.partial(keras_class(spec), **options) if options else keras_class(spec)


def local_weights(name: str, weights: str | os.PathLike | None = "imagenet", image_size: int | None = None):
    """What to pass as ``weights=``: a local copy of the ImageNet file where one is at hand.

    ``"imagenet"`` becomes the path of the file Keras would download, when
    ``$WORKBOOK_WEIGHTS_DIR`` or Keras' cache holds it (offline use), else stays ``"imagenet"``.
    A path or ``None`` is returned as it is (a path is checked to exist).
    """
    spec = get_spec(name)
    return resolve_weights(spec, weights, False, image_size or spec.default_size)


def check_preprocessing(name: str, layer: keras.layers.Layer) -> None:
    """Compare ``layer`` with the backbone's own ``keras.applications.<module>.preprocess_input``.

    Prints the largest difference on random pixels; raises if they disagree.
    """
    spec = get_spec(name)
    module = getattr(keras.applications, spec.module)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    theirs = np.asarray(module.preprocess_input(pixels.copy()))
    ours = keras.ops.convert_to_numpy(layer(pixels))
    difference = float(np.abs(theirs - ours).max())
    where = f"keras.applications.{spec.module}.preprocess_input"
    if difference > 1e-4:
        raise ValueError(
            f"{layer.name} differs from {where} by up to {difference:.3g}: "
            f"use helpers.model.backbones.preprocess_layer({spec.name!r})"
        )
    print(f"{layer.name} = {where} (largest difference {difference:.1e})")


def imagenet_class_index_file() -> Path | None:
    """A local copy of Keras' ``imagenet_class_index.json``, if one is at hand."""
    return _find_local_weights(["imagenet_class_index.json"])


def imagenet_class_names() -> list[str]:
    """ImageNet's 1000 class names in output order: the local index file, else Keras' download."""
    path = imagenet_class_index_file() or keras.utils.get_file(
        "imagenet_class_index.json",
        "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
        cache_subdir="models",
        file_hash="c2c37ea517e94d9795004a39431a14cb",
    )
    index = json.loads(Path(path).read_text(encoding="utf-8"))
    return [index[str(i)][1] for i in range(len(index))]


def decode_predictions(probabilities, top: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top`` ImageNet class names and probabilities for each row of 1000-way predictions."""
    names = imagenet_class_names()
    out = []
    for row in ops.convert_to_numpy(probabilities):
        best = row.argsort()[::-1][:top]
        out.append([(names[i], float(row[i])) for i in best])
    return out


__all__ = [  # the table (helpers.model.specs) is re-exported: the notebooks call helpers.model.backbones.get_spec
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "KERAS_NAMES",
    "BackboneSpec",
    "WeightsUnavailableError",
    "application",
    "build_backbone",
    "build_base",
    "check_preprocessing",
    "decode_predictions",
    "default_size",
    "get_spec",
    "imagenet_class_index_file",
    "imagenet_class_names",
    "keras_class",
    "local_weights",
    "preprocess_layer",
    "resolve_weights",
    "spec_of_model",
]
