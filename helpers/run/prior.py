"""What ImageNet already knows, multiplied in: the prior ``helpers train`` saves with a few-shot head.

Lion, tiger and the bears are ImageNet classes, so the pretrained classifier (with its ImageNet
top) has an opinion about every photo before it sees one of ours. Notebook 05 teaches the Keras
code (``imagenet_prior_layer``, ``TimesPrior``, ``add_imagenet_prior`` in :mod:`helpers.model.lesson`);
this module decides when it applies and scores the combined model on the cached features.
``benchmarks/few_shot.py``: with 1 photo per class, 98.3% → 100% on the 180 val/ photos over 10 draws.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from helpers.data import folders as data_mod
from helpers.data.pipeline import photo_dataset
from helpers.model import imagenet
from helpers.model.lesson import TimesPrior, add_imagenet_prior
from helpers.model.specs import get_spec


def imagenet_prior(model: keras.Model, config, class_names: list[str], scored: dict) -> tuple:
    """``model`` with ImageNet's opinion multiplied in, and that opinion on each split of ``scored``.

    Applies when the backbone carries ImageNet's weights (``"imagenet"`` or Keras' own file name)
    and ImageNet has related classes for all of ours. The classifier is the backbone's own with its
    ImageNet top, else (offline) the small MobileNet whose file the workbook keeps
    (:func:`helpers.model.imagenet.classifier_weights`). Returns ``(None, {}, reason)`` where it does not apply.
    """
    spec = get_spec(config.backbone)
    size = int(model.input.shape[1])
    weights = str(config.weights)
    if weights != "imagenet" and Path(weights).name not in spec.weight_file_names(False, size):
        return None, {}, "the backbone's weights are not ImageNet's"
    related = imagenet.related_rows(class_names)
    if not all(related):  # a class ImageNet has no relative for: no prior at all (as imagenet_prior_layer says)
        return None, {}, "ImageNet has no related class for one of the classes"
    try:
        classifier = imagenet.pixel_classifier(spec.keras_name, "imagenet", spec.kwargs)
    except Exception as exc:  # noqa: BLE001 - no ImageNet classifier here, not even the fallback: no prior
        return None, {}, f"no ImageNet classifier ({str(exc).splitlines()[0]})"
    classifier.trainable = False
    combined = add_imagenet_prior(model, classifier, related)
    prior_part = keras.Model(combined.input, combined.get_layer("imagenet_prior").output)
    priors = {
        name: np.asarray(prior_part.predict(_pixels(split, size, config.batch_size), verbose=0)) if len(split) else None
        for name, split in scored.items()
    }
    return combined, priors, classifier.name


def _pixels(split: data_mod.Split, size: int, batch_size: int):
    return photo_dataset(split.paths, size, split.labels, batch_size=batch_size)


def times(probabilities: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The head's probabilities times the prior, renormalised (the saved model's ``TimesPrior``)."""
    return np.asarray(TimesPrior()([probabilities.astype("float32"), prior.astype("float32")]))
