"""Pretrained backbones by name: build, weights, preprocessing and cut points.

Notebook 01 loads a backbone and asks it what it sees; notebook 02 cuts it open.
Every backbone built here takes **raw 0–255 RGB pixels**: its own ``preprocess_input``
is the first layer of the model, so nothing outside the model has to remember it.

Weights are ``"imagenet"`` (a local file in ``$WORKBOOK_WEIGHTS_DIR`` or Keras' cache,
else Keras' own download), a path to a weights file, or ``None`` (random init).
"""
from __future__ import annotations

import os
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
from keras import ops

from . import settings

WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could be neither found locally nor downloaded."""


@keras.saving.register_keras_serializable(package="workbook")
class CaffePreprocess(keras.layers.Layer):
    """``preprocess_input`` of the "caffe" family (ResNet50): RGB→BGR, minus the ImageNet mean."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor(self.MEAN_BGR, dtype=bgr.dtype)


def _preprocess_layer(mode: str) -> keras.layers.Layer | None:
    """The layer that maps raw 0–255 pixels to what the backbone was trained on."""
    if mode == "tf":  # inception, mobilenet, xception: [-1, 1]
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    if mode == "caffe":
        return CaffePreprocess(name="preprocess")
    if mode == "none":  # efficientnet: rescaling is already inside the model
        return None
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def _is_add(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.Add)


@dataclass(frozen=True)
class BackboneSpec:
    """What the workbook needs to know about one Keras Applications model."""

    name: str
    constructor: Callable[..., keras.Model]
    preprocess: str
    default_size: int
    block_rule: str | Callable[[keras.layers.Layer], bool]
    notop_file: str
    top_file: str
    kwargs: dict = field(default_factory=dict)
    sizes_in_file_name: tuple[int, ...] = ()  # mobilenets: weight files are per input size
    min_size: int = 32

    def weight_file_names(self, include_top: bool, image_size: int) -> list[str]:
        """File names Keras would download for ``weights="imagenet"`` (most specific first)."""
        template = self.top_file if include_top else self.notop_file
        if not self.sizes_in_file_name:
            return [template]
        sizes = [image_size] if image_size in self.sizes_in_file_name else []
        sizes += [s for s in (224,) if s not in sizes]  # the 224 file loads at any size
        return [template.format(rows=s) for s in sizes]

    def is_block_output(self, layer: keras.layers.Layer) -> bool:
        if callable(self.block_rule):
            return self.block_rule(layer)
        return re.fullmatch(self.block_rule, layer.name) is not None


_APPS = keras.applications
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "inception_v3", _APPS.InceptionV3, "tf", 299, r"mixed\d+",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5", min_size=75,
        ),
        BackboneSpec(
            "mobilenet_v2", _APPS.MobileNetV2, "tf", 224, r"block_\d+_(add|project_BN)|out_relu",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
            kwargs={"alpha": 1.0}, sizes_in_file_name=(96, 128, 160, 192, 224),
        ),
        BackboneSpec(
            "mobilenet_v2_0.35", _APPS.MobileNetV2, "tf", 224, r"block_\d+_(add|project_BN)|out_relu",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_{rows}_no_top.h5",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_{rows}.h5",
            kwargs={"alpha": 0.35}, sizes_in_file_name=(96, 128, 160, 192, 224),
        ),
        BackboneSpec(
            "mobilenet", _APPS.MobileNet, "tf", 224, r"conv_pw_\d+_relu",
            "mobilenet_1_0_{rows}_tf_no_top.h5", "mobilenet_1_0_{rows}_tf.h5",
            kwargs={"alpha": 1.0}, sizes_in_file_name=(128, 160, 192, 224),
        ),
        BackboneSpec(
            "mobilenet_0.25", _APPS.MobileNet, "tf", 224, r"conv_pw_\d+_relu",
            "mobilenet_2_5_{rows}_tf_no_top.h5", "mobilenet_2_5_{rows}_tf.h5",
            kwargs={"alpha": 0.25}, sizes_in_file_name=(128, 160, 192, 224),
        ),
        BackboneSpec(
            "resnet50", _APPS.ResNet50, "caffe", 224, r"conv\d_block\d+_out",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        BackboneSpec(
            "efficientnet_b0", _APPS.EfficientNetB0, "none", 224,
            r"block\d[a-z]_(add|project_bn)|top_activation",
            "efficientnetb0_notop.h5", "efficientnetb0.h5",
        ),
        BackboneSpec(
            "xception", _APPS.Xception, "tf", 299, _is_add,
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "xception_weights_tf_dim_ordering_tf_kernels.h5", min_size=71,
        ),
    ]
}
DEFAULT_BACKBONE = "inception_v3"


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` called ``name`` (e.g. ``"inception_v3"``)."""
    key = name.lower().replace("-", "_")
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[key]


def spec_for_model(model: keras.Model) -> BackboneSpec:
    """The spec of a model built by this module (its name starts with the backbone's)."""
    for name in sorted(BACKBONES, key=len, reverse=True):
        if model.name == name or model.name.startswith(name + "_"):
            return BACKBONES[name]
    raise ValueError(f"model {model.name!r} was not built by helpers.backbones")


def _find_local_weights(names: list[str]) -> Path | None:
    folders = [d for d in (settings.weights_dir(), settings.keras_cache_dir()) if d]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_weights(spec: BackboneSpec, weights: str | os.PathLike | None,
                    include_top: bool = False, image_size: int | None = None) -> str | None:
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


def build_backbone(name: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = "imagenet",
                   image_size: int | None = None, include_top: bool = False) -> keras.Model:
    """Build a pretrained backbone that takes raw 0–255 RGB pixels of ``image_size``².

    ``include_top=True`` keeps the 1000-class ImageNet classifier (notebook 01); then the
    input size must be the backbone's default. The returned model is flat: the
    preprocessing layer and every backbone layer are its own layers, so
    :mod:`helpers.surgery` can pop and freeze them by name.
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    if size < spec.min_size:
        raise ValueError(f"{spec.name} needs images of at least {spec.min_size}px, got {size}")
    if include_top and size != spec.default_size:
        raise ValueError(f"{spec.name} with its ImageNet top needs image_size={spec.default_size}")
    resolved = resolve_weights(spec, weights, include_top, size)
    inputs = keras.Input((size, size, 3), name="image")
    pre = _preprocess_layer(spec.preprocess)
    x = pre(inputs) if pre is not None else inputs
    try:
        model = spec.constructor(include_top=include_top, weights=resolved, input_tensor=x, **spec.kwargs)
    except Exception as exc:  # Keras wraps URLError/HTTPError in a bare Exception
        text = str(exc)
        if resolved == "imagenet" and (isinstance(exc, (OSError, urllib.error.URLError))
                                        or "URL fetch failure" in text):
            raise WeightsUnavailableError(_unavailable_message(spec, include_top, size, text)) from None
        raise
    return keras.Model(inputs, model.output, name=spec.name)


def cut_points(model: keras.Model, spec: BackboneSpec | None = None) -> list[str]:
    """Names of the block outputs where ``model`` can be cut in two, bottom to top.

    A cut point is a layer that every path from the input to the output passes
    through (for InceptionV3: ``mixed0`` … ``mixed10``), so the layers after it in
    ``model.layers`` are exactly those above it. Head layers (``head_*``) are not cuts.
    """
    spec = spec or spec_for_model(model)
    layers = model.layers
    index = {id(layer): i for i, layer in enumerate(layers)}
    earliest_input = []  # for each layer, the earliest layer index it reads from
    for layer in layers:
        sources = [index[id(t._keras_history.operation)]
                   for node in layer._inbound_nodes for t in node.input_tensors
                   if id(t._keras_history.operation) in index]
        earliest_input.append(min(sources) if sources else len(layers))
    # suffix minimum: the earliest layer read by anything above position i
    reads_below = [len(layers)] * (len(layers) + 1)
    for i in range(len(layers) - 1, -1, -1):
        reads_below[i] = min(earliest_input[i], reads_below[i + 1])
    base = [i for i, layer in enumerate(layers) if not layer.name.startswith("head_")]
    last = base[-1] if base else -1  # the base's output is always a cut: "the whole base"
    return [layers[i].name for i in base
            if (spec.is_block_output(layers[i]) or i == last) and reads_below[i + 1] >= i]


def imagenet_class_index_file() -> Path | None:
    """A local copy of Keras' ``imagenet_class_index.json``, if one is at hand."""
    return _find_local_weights(["imagenet_class_index.json"])


def imagenet_class_names() -> list[str]:
    """ImageNet's 1000 class names in output order: the local index file, else Keras' download."""
    import json

    path = imagenet_class_index_file() or keras.utils.get_file(
        "imagenet_class_index.json",
        "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
        cache_subdir="models", file_hash="c2c37ea517e94d9795004a39431a14cb")
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
