"""The one table of the backbones' facts (:data:`BACKBONES`, as fastai's ``model_meta``), without Keras.

Per backbone: the ``keras.applications`` class and its options, the default and smallest image size,
the weight files Keras would download, the module of its ``preprocess_input``, which layers end its
blocks (its cut points, :mod:`helpers.model.cuts`) and the layer Grad-CAM explains
(:mod:`helpers.model.explain`). Importing it loads no Keras, so the command line checks a run's
settings (a size the backbone cannot take, an unknown name) before the deep-learning libraries load;
:mod:`helpers.model.backbones` builds the models from it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackboneSpec:
    """What the workbook needs to know about one Keras Applications model."""

    name: str
    keras_name: str  # the keras.applications class, e.g. "InceptionV3"
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
    #: where Keras leaves them unnamed, the layer class's name (Xception's blocks end in ``Add`` layers)
    block_ends: str = ""
    block_end_class: str = ""
    #: the layer Grad-CAM explains by default: the last convolutional block output (notebook 06)
    grad_cam_layer: str = ""

    def ends_block(self, layer) -> bool:
        """Whether the Keras ``layer`` ends one of this backbone's blocks (a candidate cut point)."""
        if self.block_end_class:
            return type(layer).__name__ == self.block_end_class
        return re.fullmatch(self.block_ends, layer.name) is not None

    def weight_file_names(self, include_top: bool, image_size: int) -> list[str]:
        """File names Keras would download for ``weights="imagenet"`` (most specific first)."""
        template = self.top_file if include_top else self.notop_file
        if not self.sizes_in_file_name:
            return [template]
        sizes = [image_size] if image_size in self.sizes_in_file_name else []
        sizes += [s for s in (224,) if s not in sizes]  # the 224 file loads at any size
        return [template.format(rows=s) for s in sizes]


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
    "MobileNetV2",
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
    "MobileNet",
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
            "InceptionV3",
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
            "ResNet50",
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
            "EfficientNetB0",
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
            "Xception",
            299,
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "xception_weights_tf_dim_ordering_tf_kernels.h5",
            min_size=71,
            module="xception",
            model_name="xception",
            block_end_class="Add",
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


def default_size(name: str) -> int:
    """The input size a backbone was trained at (299 for InceptionV3, 224 for most others)."""
    return get_spec(name).default_size
