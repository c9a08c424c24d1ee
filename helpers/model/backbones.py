"""Pretrained backbones by name, and one table of their facts (:data:`BACKBONES`, as fastai's ``model_meta``).

Per backbone: the Keras class and its options, the default image size, the weight files, the
module of its ``preprocess_input`` (the layer itself is the lesson's ``preprocessing_for``, notebook
02: :func:`preprocess_layer`, so every model takes **raw 0–255 RGB pixels**), which layers end its
blocks (its cut points, :mod:`helpers.model.cuts`) and the layer Grad-CAM explains (:mod:`helpers.model.explain`).

The notebooks write ``keras.applications.InceptionV3(...)`` themselves (notebooks 01–05); around
that call: names (``"inception_v3"`` for the CLI or ``"InceptionV3"`` as in Keras) and the Keras class
they stand for (:func:`application`, which the notebooks' load cells call), and the weight file Keras
would download and where a local copy may be (:func:`local_weights`). Weights are ``"imagenet"`` (a
local file in ``$WORKBOOK_WEIGHTS_DIR`` or Keras' cache, else Keras' own download), a path to a
weights file, or ``None`` (random init).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from helpers import settings
from helpers.model.lesson import preprocessing_for

WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could be neither found locally nor downloaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the workbook needs to know about one Keras Applications model."""

    name: str
    constructor: Callable[..., keras.Model]
    default_size: int
    notop_file: str
    top_file: str
    kwargs: dict = field(default_factory=dict)
    sizes_in_file_name: tuple[int, ...] = ()  # mobilenets: weight files are per input size
    min_size: int = 32
    module: str = ""  # keras.applications.<module> holds its preprocess_input
    #: Keras' name for the application model (``model.name`` starts with it): how a base is recognised
    model_name: str = ""
    #: the layers that end a block (the candidates for cut points): a full-match name pattern, or,
    #: where Keras leaves them unnamed, the layer class (Xception's blocks end in ``Add`` layers)
    block_ends: str | type = ""
    #: the layer Grad-CAM explains by default: the last convolutional block output (notebook 06)
    grad_cam_layer: str = ""

    @property
    def keras_name(self) -> str:
        """The Keras Applications class, e.g. ``"InceptionV3"``."""
        return self.constructor.__name__

    def ends_block(self, layer: keras.layers.Layer) -> bool:
        """Whether ``layer`` ends one of this backbone's blocks (a candidate cut point)."""
        if isinstance(self.block_ends, type):
            return isinstance(layer, self.block_ends)
        return re.fullmatch(self.block_ends, layer.name) is not None

    def weight_file_names(self, include_top: bool, image_size: int) -> list[str]:
        """File names Keras would download for ``weights="imagenet"`` (most specific first)."""
        template = self.top_file if include_top else self.notop_file
        if not self.sizes_in_file_name:
            return [template]
        sizes = [image_size] if image_size in self.sizes_in_file_name else []
        sizes += [s for s in (224,) if s not in sizes]  # the 224 file loads at any size
        return [template.format(rows=s) for s in sizes]


_APPS = keras.applications


def _narrower(spec: BackboneSpec, name: str, tag: str, narrow_tag: str, alpha: float) -> BackboneSpec:
    """The same network at width ``alpha``: its weight files carry ``narrow_tag`` where ``spec``'s carry ``tag``."""
    return dataclasses.replace(
        spec,
        name=name,
        notop_file=spec.notop_file.replace(tag, narrow_tag),
        top_file=spec.top_file.replace(tag, narrow_tag),
        kwargs={"alpha": alpha},
    )


_MOBILENET_V2 = BackboneSpec(
    "mobilenet_v2",
    _APPS.MobileNetV2,
    224,
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
    kwargs={"alpha": 1.0},
    sizes_in_file_name=(96, 128, 160, 192, 224),
    module="mobilenet_v2",
    model_name="mobilenetv2_",
    block_ends=r"block_\d+_(add|project_BN)|out_relu",
    grad_cam_layer="out_relu",
)
_MOBILENET = BackboneSpec(
    "mobilenet",
    _APPS.MobileNet,
    224,
    "mobilenet_1_0_{rows}_tf_no_top.h5",
    "mobilenet_1_0_{rows}_tf.h5",
    kwargs={"alpha": 1.0},
    sizes_in_file_name=(128, 160, 192, 224),
    module="mobilenet",
    model_name="mobilenet_",
    block_ends=r"conv_pw_\d+_relu",
    grad_cam_layer="conv_pw_13_relu",
)
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "inception_v3",
            _APPS.InceptionV3,
            299,
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            min_size=75,
            module="inception_v3",
            model_name="inception_v3",
            block_ends=r"mixed\d+",
            grad_cam_layer="mixed10",
        ),
        _MOBILENET_V2,
        _narrower(_MOBILENET_V2, "mobilenet_v2_0.35", "1.0", "0.35", 0.35),
        _MOBILENET,
        _narrower(_MOBILENET, "mobilenet_0.25", "1_0", "2_5", 0.25),
        BackboneSpec(
            "resnet50",
            _APPS.ResNet50,
            224,
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            module="resnet50",
            model_name="resnet50",
            block_ends=r"conv\d_block\d+_out",
            grad_cam_layer="conv5_block3_out",
        ),
        BackboneSpec(
            "efficientnet_b0",
            _APPS.EfficientNetB0,
            224,
            "efficientnetb0_notop.h5",
            "efficientnetb0.h5",
            module="efficientnet",
            model_name="efficientnetb0",
            block_ends=r"block\d[a-z]_(add|project_bn)|top_activation",
            grad_cam_layer="top_activation",
        ),
        BackboneSpec(
            "xception",
            _APPS.Xception,
            299,
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "xception_weights_tf_dim_ordering_tf_kernels.h5",
            min_size=71,
            module="xception",
            model_name="xception",
            block_ends=keras.layers.Add,
            grad_cam_layer="block14_sepconv2_act",
        ),
    ]
}
DEFAULT_BACKBONE = "inception_v3"
#: Keras Applications class names (what the notebooks' ``BACKBONE`` holds) → our names.
KERAS_NAMES = {
    "InceptionV3": "inception_v3",
    "MobileNetV2": "mobilenet_v2",
    "MobileNet": "mobilenet",
    "ResNet50": "resnet50",
    "EfficientNetB0": "efficientnet_b0",
    "Xception": "xception",
}


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` called ``name`` (e.g. ``"inception_v3"``)."""
    key = name.lower().replace("-", "_")
    key = KERAS_NAMES.get(name, key)
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[key]


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
        return spec.constructor(
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
    return functools.partial(spec.constructor, **options) if options else spec.constructor


def default_size(name: str) -> int:
    """The input size a backbone was trained at (299 for InceptionV3, 224 for most others)."""
    return get_spec(name).default_size


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
