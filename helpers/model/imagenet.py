"""What ImageNet already knows about our classes (notebook 01), and the machinery around
``keras.applications.InceptionV3(weights="imagenet")``.

Lion, tiger and brown bear are three of ImageNet's 1000 classes; several neighbours
(tiger cat, American black bear, ice bear, …) are too. This module names them, so a
notebook can ask: does the pretrained classifier's top guess fall in the right family?

Notebook 01 builds the classifier itself; what it needs around that call is here:
:func:`classifier_weights` (a local copy of the full-top weight file, or, offline without
one, a one-line notice and the small MobileNet whose file the workbook ships) and
:func:`provide_class_index` (Keras' ``decode_predictions`` reads
``imagenet_class_index.json`` from Keras' cache: offline it is copied there from
``$WORKBOOK_WEIGHTS_DIR``).

Notebook 06 explains the same classifier with Grad-CAM: :func:`pixel_classifier` applies the
same rule (:func:`classifier_weights`) and puts the backbone's preprocessing in front, so one
rule decides, in both notebooks, which classifier answers offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras

from helpers import settings
from helpers.model.backbones import (
    BACKBONES,
    WEIGHTS_BASE_URL,
    BackboneSpec,
    WeightsUnavailableError,
    _unavailable_message,
    build_backbone,
    imagenet_class_index_file,
    imagenet_class_names,
    resolve_weights,
)

#: ImageNet classes that count as "right" for each of the workbook's classes.
RELATED_CLASSES: dict[str, tuple[str, ...]] = {
    "lion": ("lion",),
    "tiger": ("tiger", "tiger_cat"),
    "bear": ("brown_bear", "American_black_bear", "ice_bear", "sloth_bear"),
}

#: Used when the chosen classifier's ImageNet weights cannot be had: its full-top file
#: (``mobilenet_2_5_224_tf.h5``) is the one the workbook keeps for offline use.
FALLBACK = ("MobileNet", {"alpha": 0.25})

#: Where Keras downloads each application's weight files from (its own URLs).
_URL_FOLDERS = {
    "inception_v3": f"{WEIGHTS_BASE_URL}inception_v3/",
    "xception": f"{WEIGHTS_BASE_URL}xception/",
    "mobilenet": f"{WEIGHTS_BASE_URL}mobilenet/",
    "mobilenet_v2": f"{WEIGHTS_BASE_URL}mobilenet_v2/",
    "resnet50": f"{WEIGHTS_BASE_URL}resnet/",
    "efficientnet": "https://storage.googleapis.com/keras-applications/",
}


def class_names() -> list[str]:
    """ImageNet's 1000 class names in output order (see :func:`helpers.model.backbones.imagenet_class_names`)."""
    return imagenet_class_names()


def related_indices(class_name: str, names: list[str] | None = None) -> dict[str, int]:
    """The ImageNet classes related to one of ours, with their output index."""
    names = names or class_names()
    return {n: names.index(n) for n in RELATED_CLASSES.get(class_name, ()) if n in names}


def is_related(our_class: str, imagenet_class: str) -> bool:
    """Does the ImageNet class ``imagenet_class`` count as a right answer for ``our_class``?"""
    return imagenet_class in RELATED_CLASSES.get(our_class, ())


def classifier_spec(name: str, options: dict | None = None) -> BackboneSpec:
    """The backbone behind ``keras.applications.<name>(**options)`` (e.g. MobileNet, alpha 0.25).

    ``name`` may also be one of the package's names (``"mobilenet_0.25"``), options then ignored.
    """
    if name in BACKBONES:
        return BACKBONES[name]
    options = dict(options or {})
    for spec in BACKBONES.values():
        if spec.keras_name == name and all(spec.kwargs.get(k) == v for k, v in options.items()):
            return spec
    raise ValueError(
        f"no ImageNet classifier keras.applications.{name}({options}) known to the workbook; "
        f"choose one of {sorted({s.keras_name for s in BACKBONES.values()})}"
    )


def _download(spec: BackboneSpec, file_name: str) -> str:
    folder = _URL_FOLDERS.get(spec.module)
    if folder is None:
        raise WeightsUnavailableError(f"no download address known for {file_name}")
    quiet = keras.config.is_interactive_logging_enabled()
    if quiet:  # keep Keras' "Downloading data from …" out of the notebook: one line says what happened
        keras.config.disable_interactive_logging()
    try:
        return keras.utils.get_file(file_name, folder + file_name, cache_subdir="models")
    finally:
        if quiet:
            keras.config.enable_interactive_logging()


def classifier_weights(
    name: str, weights: str | os.PathLike | None = "imagenet", options: dict | None = None
) -> tuple[str, str | None, dict]:
    """``(CLASSIFIER, WEIGHTS, OPTIONS)`` for ``keras.applications.<CLASSIFIER>(weights=WEIGHTS, **OPTIONS)``.

    ``name`` is a Keras class (``"InceptionV3"``, with ``options``) or a package name
    (``"mobilenet_0.25"``: ``"MobileNet"`` with ``alpha=0.25``).

    ``"imagenet"`` becomes the local full-top weight file (``$WORKBOOK_WEIGHTS_DIR`` or Keras'
    cache), else Keras' download of it. When that fails (offline), one line says so and the
    :data:`FALLBACK` classifier with its local file is returned instead; when that file is
    missing too, :class:`~helpers.model.backbones.WeightsUnavailableError` says where to put which file.
    """
    options = dict(options or {})
    spec = classifier_spec(name, options)
    if name in BACKBONES:  # a package name such as "mobilenet_0.25": the Keras class and its options
        name, options = spec.keras_name, dict(spec.kwargs)
    if str(weights) != "imagenet":
        return name, resolve_weights(spec, weights, True, spec.default_size), options
    local = resolve_weights(spec, "imagenet", True, spec.default_size)
    if local != "imagenet":
        return name, local, options
    file_name = spec.weight_file_names(True, spec.default_size)[0]
    try:
        return name, _download(spec, file_name), options
    except Exception as exc:  # Keras wraps URLError/HTTPError in a bare Exception
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fallback_name, fallback_options = FALLBACK
        fallback = classifier_spec(fallback_name, fallback_options)
        found = resolve_weights(fallback, "imagenet", True, fallback.default_size)
        if fallback is spec or found == "imagenet":
            raise WeightsUnavailableError(_unavailable_message(spec, True, spec.default_size, cause)) from None
        options_text = ", ".join(f"{k}={v}" for k, v in fallback_options.items())
        print(
            f"{name}: no ImageNet weights here ({file_name} is neither local nor downloadable), "
            f"so this run uses {fallback_name}({options_text}) from {Path(found).name}."
        )
        return fallback_name, found, dict(fallback_options)


def pixel_classifier(
    name: str, weights: str | os.PathLike | None = "imagenet", options: dict | None = None
) -> keras.Model:
    """The ImageNet classifier with its top, taking raw 0–255 pixels (notebook 06's Grad-CAM).

    Which classifier and which weight file: :func:`classifier_weights`, notebook 01's rule (offline
    without the file, one line says so and the :data:`FALLBACK` MobileNet stands in); the backbone's
    preprocessing goes in front (:func:`helpers.model.backbones.build_backbone`).
    """
    name, weights, options = classifier_weights(name, weights, options)
    return build_backbone(classifier_spec(name, options).name, weights)


def provide_class_index() -> Path:
    """Make sure Keras' cache holds ``imagenet_class_index.json`` (what ``decode_predictions`` reads).

    Offline, a copy from ``$WORKBOOK_WEIGHTS_DIR`` is put there when it is missing; online,
    Keras downloads it on first use anyway. Returns where Keras will find it.
    """
    target = settings.keras_cache_dir() / "imagenet_class_index.json"
    if not target.is_file():
        source = imagenet_class_index_file()
        if source is not None and source != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return target


def related_rows(ours: list[str]) -> list[list[int]]:
    """For each of our classes, the indices of the ImageNet classes related to it (:data:`RELATED_CLASSES`).

    What notebook 05's ``imagenet_prior_layer`` takes; an empty list where ImageNet has no relative.
    """
    names = class_names()
    return [[names.index(n) for n in RELATED_CLASSES.get(c, ()) if n in names] for c in ours]
