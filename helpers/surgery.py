"""Model surgery: pop the top, add a new head, freeze below a block (notebooks 02 and 04).

The words are the seed's: we *pop* the ImageNet output layer (and, where asked, the
blocks before it down to a *cut point*), put a new *head* on top (pooling, dropout,
softmax over our classes), and *freeze* everything below a chosen block so that only
the head, or the head plus the top blocks, learn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from .backbones import BackboneSpec, build_backbone, cut_points

HEAD_PREFIX = "head_"


def pop(model: keras.Model, to: str | None = None) -> keras.Model:
    """Remove the top of ``model``: everything above layer ``to``.

    With ``to=None`` only the last layer (the ImageNet classifier) is popped. The result
    shares its layers (and weights) with ``model``.
    """
    if to is None:
        if len(model.layers) < 2:
            raise ValueError("nothing left to pop")
        cut = model.layers[-2]
    else:
        cut = model.get_layer(to)
    return keras.Model(model.inputs, cut.output, name=model.name)


def add_head(base: keras.Model, class_names: list[str], dropout: float = 0.2) -> keras.Model:
    """Put a new classification head on ``base``: pooling, dropout and a softmax.

    The softmax runs in float32 even under mixed precision, so probabilities stay exact.
    """
    if len(class_names) < 2:
        raise ValueError(f"a classifier needs at least two classes, got {class_names}")
    x = base.output
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name=HEAD_PREFIX + "pool")(x)
    x = keras.layers.Dropout(dropout, name=HEAD_PREFIX + "dropout")(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax", dtype="float32",
                                 name=HEAD_PREFIX + "predictions")(x)
    return keras.Model(base.inputs, outputs, name=f"{base.name}_transfer")


def build_classifier(class_names: list[str], backbone: str = "inception_v3",
                     weights: str | None = "imagenet", image_size: int | None = None,
                     cut: str | None = None, dropout: float = 0.2) -> keras.Model:
    """Backbone without its top, optionally popped down to ``cut``, plus a new head, frozen.

    This is the one-call version of notebook 02: the base is frozen, only the head trains.
    """
    base = build_backbone(backbone, weights=weights, image_size=image_size, include_top=False)
    if cut is not None:
        base = pop(base, to=cut)
    model = add_head(base, class_names, dropout=dropout)
    freeze(model, fine_tune_from=None)
    return model


def blocks(model: keras.Model, spec: BackboneSpec | None = None) -> list[tuple[str, list[keras.layers.Layer]]]:
    """The model's layers grouped into blocks, bottom to top.

    Each block is named by the cut point that ends it (``"stem"`` is not a name used:
    the first block is named by the first cut point too); layers above the last cut
    point that are not head layers form a block named ``"top"``; head layers form
    ``"head"``.
    """
    names = set(cut_points(model, spec))
    groups: list[tuple[str, list]] = []
    current: list = []
    head: list = []
    for layer in model.layers:
        if layer.name.startswith(HEAD_PREFIX):
            head.append(layer)
            continue
        current.append(layer)
        if layer.name in names:
            groups.append((layer.name, current))
            current = []
    if current:
        groups.append(("top", current))
    if head:
        groups.append(("head", head))
    return groups


def block_names(model: keras.Model) -> list[str]:
    """The names of the base's blocks that can be unfrozen, bottom to top."""
    return [name for name, _ in blocks(model) if name != "head"]


def freeze(model: keras.Model, fine_tune_from: str | None = None) -> keras.Model:
    """Freeze the base below block ``fine_tune_from``; that block and everything above train.

    ``fine_tune_from=None`` freezes the whole base (train the head only). BatchNormalization
    layers stay frozen everywhere, which keeps them in inference mode: their running
    statistics from ImageNet are not wrecked by small, unshuffled batches.
    """
    groups = blocks(model)
    names = [name for name, _ in groups]
    if fine_tune_from is not None and fine_tune_from not in names:
        raise ValueError(f"{fine_tune_from!r} is not a block of {model.name}; choose from {names}")
    model.trainable = True
    trainable = False
    for name, layers in groups:
        if name == fine_tune_from or name == "head":
            trainable = True
        for layer in layers:
            layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
    return model


@dataclass
class TrainableReport:
    """How much of a model will learn: weights and blocks, trainable or frozen."""

    trainable_weights: int
    frozen_weights: int
    trainable_blocks: list[str]
    frozen_blocks: list[str]

    @property
    def total_weights(self) -> int:
        return self.trainable_weights + self.frozen_weights

    def __str__(self) -> str:
        share = self.trainable_weights / max(self.total_weights, 1)
        first = self.trainable_blocks[0] if self.trainable_blocks else "-"
        return (f"trainable weights: {self.trainable_weights:,} of {self.total_weights:,} "
                f"({share:.1%}); {len(self.frozen_blocks)} blocks frozen, "
                f"{len(self.trainable_blocks)} train (from {first})")


def trainable_report(model: keras.Model) -> TrainableReport:
    """Count trainable and frozen weights, and list which blocks are frozen."""
    trainable_blocks, frozen_blocks = [], []
    for name, layers in blocks(model):
        learns = any(layer.trainable and layer.trainable_weights for layer in layers)
        (trainable_blocks if learns else frozen_blocks).append(name)
    return TrainableReport(_count(model.trainable_weights), _count(model.non_trainable_weights),
                           trainable_blocks, frozen_blocks)


def _count(variables) -> int:
    return int(sum(math.prod(int(d) for d in v.shape) for v in variables))
