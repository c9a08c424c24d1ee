"""Where a network can be cut in two, its blocks, and the two halves (notebooks 02, 04, 05).

The lesson's models are ``keras.Input → preprocess → base → pool → dropout → predictions``
(:func:`helpers.model.lesson.add_head`), with the pretrained ``base`` nested as one layer. This
module is the machinery around that shape, on Keras' public API only:

- **cut points** of a base (which layers may end a block is the backbone's entry in
  :data:`helpers.model.specs.BACKBONES`): layers that every path from its input to its output passes
  through (for InceptionV3 ``mixed0`` … ``mixed10``), so everything after one in
  ``base.layers`` is above it;
- **blocks**: the layers between two cut points, named by the cut point that ends them;
- **splitting** the whole model at a cut point inside the base (for the cached fine-tuning
  of notebook 05 and ``python -m helpers train``); the split at the pooled features is the
  lesson's own :func:`helpers.model.lesson.split_at`.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass

import keras

from helpers.model.backbones import spec_of_model
from helpers.model.lesson import split_at as split_outside
from helpers.model.specs import BACKBONES, BackboneSpec

#: Block-ending layer names of every backbone in the table (for a base the table does not know).
BLOCK_OUTPUT = re.compile("|".join(spec.block_ends for spec in BACKBONES.values() if spec.block_ends))
POOL = "pool"  # the head's pooling layer: the cut for head training (see helpers.model.lesson.add_head)


def base_of(model: keras.Model) -> keras.Model:
    """The pretrained base nested in ``model`` (its one layer that is itself a model)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(
            f"{model.name} should hold exactly one nested base model, found {len(nested)}; "
            "build it with helpers.model.lesson.add_head"
        )
    return nested[0]


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model`` in graph order, nested models expanded into their own layers."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _is_candidate(layer: keras.layers.Layer, spec: BackboneSpec | None) -> bool:
    """Whether ``layer`` ends a block: the backbone's own rule in the table, else any backbone's names."""
    return spec.ends_block(layer) if spec else BLOCK_OUTPUT.fullmatch(layer.name) is not None


def _as_list(tensors) -> list:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def cut_points(base: keras.Model) -> list[str]:
    """Names of the block outputs where ``base`` can be cut in two, bottom to top.

    A cut point is a layer that every path from the input to the output passes through.
    The graph is read from each layer's public ``input`` and ``output`` (the layers of a
    Keras Application are each called once). The base's last layer is always one.
    """
    layers = base.layers
    producer = {id(t): i for i, layer in enumerate(layers) for t in _as_list(layer.output)}
    earliest = []  # for each layer: the earliest layer index it reads from
    for i, layer in enumerate(layers):
        sources = [producer[id(t)] for t in _as_list(layer.input) if id(t) in producer] if i else []
        earliest.append(min(sources) if sources else len(layers))
    reads_from = [len(layers)] * (len(layers) + 1)  # earliest layer read by anything at or above i
    for i in range(len(layers) - 1, -1, -1):
        reads_from[i] = min(earliest[i], reads_from[i + 1])
    last, spec = len(layers) - 1, spec_of_model(base)
    return [
        layers[i].name
        for i in range(1, len(layers))
        if (i == last or _is_candidate(layers[i], spec)) and reads_from[i + 1] >= i
    ]


def resolve_block(base: keras.Model, choice: str | int | None) -> str | None:
    """The cut point *below* the blocks to fine-tune, from a ``FINE_TUNE_FROM`` value.

    ``None`` or ``0``: head only (returns None). An integer ``k``: the top ``k`` blocks
    learn, so one value works for every backbone. A name: that block and all above it
    learn (``"mixed9"`` → returns ``"mixed8"``). The first block cannot be chosen by name:
    it has no cut point below it (unfreeze all with ``base.trainable = True`` instead).
    """
    names = cut_points(base)
    if choice is None or choice == 0:
        return None
    if isinstance(choice, int) and not isinstance(choice, bool):
        if not 0 < choice < len(names):
            raise ValueError(
                f"FINE_TUNE_FROM={choice}: {base.name} has {len(names)} blocks; "
                f"choose 0…{len(names) - 1} or a block name"
            )
        return names[-1 - choice]
    if choice not in names[1:]:
        raise ValueError(
            f"FINE_TUNE_FROM={choice!r} is not a block of {base.name} that has one below it; "
            f"choose one of {names[1:]}, an integer (how many top blocks) or None (head only)"
        )
    return names[names.index(choice) - 1]


def block_above(base: keras.Model, cut: str) -> str:
    """The name of the block that starts right above cut point ``cut``."""
    names = cut_points(base)
    return names[names.index(cut) + 1]


@dataclass
class TrainableReport:
    """How much of a model will learn: weights, and which of the base's blocks train."""

    trainable_weights: int
    frozen_weights: int
    trainable_blocks: list[str]
    frozen_blocks: list[str]

    @property
    def total_weights(self) -> int:
        return self.trainable_weights + self.frozen_weights

    def __str__(self) -> str:
        share = self.trainable_weights / max(self.total_weights, 1)
        return (
            f"trainable weights: {self.trainable_weights:,} of {self.total_weights:,} ({share:.1%}) · "
            f"frozen blocks: {len(self.frozen_blocks)} of "
            f"{len(self.frozen_blocks) + len(self.trainable_blocks)}"
        )


def count(variables) -> int:
    """How many numbers a list of Keras variables holds."""
    return int(sum(math.prod(int(d) for d in v.shape) for v in variables))


def blocks(base: keras.Model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """The base's layers grouped into blocks, bottom to top, each named by its cut point."""
    ends = set(cut_points(base))
    groups, current = [], []
    for layer in base.layers[1:]:
        current.append(layer)
        if layer.name in ends:
            groups.append((layer.name, current))
            current = []
    return groups


def trainable_report(model: keras.Model) -> TrainableReport:
    """Count trainable and frozen weights as Keras reports them, and the base's blocks that learn."""
    learning, frozen = [], []
    for name, layers in blocks(base_of(model)):
        learns = any(layer.trainable_weights for layer in layers)
        (learning if learns else frozen).append(name)
    return TrainableReport(count(model.trainable_weights), count(model.non_trainable_weights), learning, frozen)


@dataclass(frozen=True)
class CutPoint:
    """Where a model was cut: at layer ``layer`` of the pretrained base ``backbone`` (its Keras name).

    ``inside``: the cut lies inside the nested base (a block output), not above it (``pool``).
    What the activation store keys and counts by; it travels with the halves :func:`split_at`
    made (:func:`cut_point`), and is never read back from a model's name.
    """

    backbone: str
    layer: str
    inside: bool = False


@dataclass(frozen=True, eq=False)
class Cut:
    """A model cut in two at layer ``name``: ``bottom`` (pixels → activations) and ``top``."""

    name: str
    bottom: keras.Model
    top: keras.Model
    point: CutPoint


#: The halves :func:`split_at` made, by identity: ``"bottom"`` or ``"top"``, and their cut point.
_HALVES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The cuts :func:`split_at` made of each model, by cut (made once, kept while the model lives).
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cut_point(bottom: keras.Model) -> CutPoint:
    """Where ``bottom`` ends: the record :func:`split_at` kept, else (a bottom of the lesson's own
    ``split_at``, or any model) its last layer, above a nested base if it holds one."""
    if bottom in _HALVES:
        return _HALVES[bottom][1]
    nested = [layer for layer in bottom.layers if isinstance(layer, keras.Model)]
    return CutPoint((nested[0] if len(nested) == 1 else bottom).name, flat_layers(bottom)[-1].name)


def is_top(model: keras.Model) -> bool:
    """Whether ``model`` is the upper half :func:`split_at` made (activations in, not pixels)."""
    return model in _HALVES and _HALVES[model][0] == "top"


def _threaded(layers: list[keras.layers.Layer], x):
    """``x`` through ``layers`` in turn: the outer layers of the lesson's model, below or above its base."""
    for layer in layers:
        x = layer(x)
    return x


def split_at(model: keras.Model, cut: str) -> Cut:
    """Cut ``model`` at ``cut``: the head's ``pool`` layer or a cut point inside its base.

    ``top(bottom(x)) == model(x)``, and both halves share their layers with ``model``, so
    training ``top`` trains ``model``. A cut at ``pool`` is :func:`helpers.model.lesson.split_at`;
    a cut inside the base runs the base's layers below the cut in ``bottom`` and the
    layers above it, then the head, in ``top``. Every part of the package that cuts calls this.

    The same model and cut give the same two halves, so Keras keeps what it traced for them (the
    bottom's forward pass, the top's training step: :func:`helpers.run.restart.restart`).
    """
    made = _SPLITS.setdefault(model, {})
    if cut in made:
        return made[cut]
    base = base_of(model)
    backbone = _HALVES[model][1].backbone if model in _HALVES else base.name  # a half cut again: its whole base
    point = CutPoint(backbone, cut, inside=cut in {layer.name for layer in base.layers})
    if not point.inside:
        bottom, top = split_outside(model, cut)
    elif cut not in cut_points(base):
        raise ValueError(f"{base.name} cannot be cut at {cut!r}; cut points: {cut_points(base)}")
    else:
        outer, at = model.layers, model.layers.index(base)
        below = keras.Model(base.input, base.get_layer(cut).output, name=f"{base.name}_below_{cut}")
        above = keras.Model(base.get_layer(cut).output, base.output, name=f"{base.name}_above_{cut}")
        bottom = keras.Model(model.input, below(_threaded(outer[1:at], model.input)), name=f"{model.name}_below_{cut}")
        inputs = keras.Input(tuple(below.output.shape[1:]), name=f"{cut}_activations")
        top_output = _threaded(outer[at + 1 :], above(inputs, training=False))
        top = keras.Model(inputs, top_output, name=f"{model.name}_above_{cut}")
    _HALVES[bottom], _HALVES[top] = ("bottom", point), ("top", point)
    made[cut] = Cut(cut, bottom, top, point)
    return made[cut]
