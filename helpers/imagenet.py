"""What ImageNet already knows about our classes (notebook 01).

Lion, tiger and brown bear are three of ImageNet's 1000 classes; several neighbours
(tiger cat, American black bear, ice bear, …) are too. This module names them, so a
notebook can ask: does the pretrained classifier's top guess fall in the right family?
"""
from __future__ import annotations



from .backbones import imagenet_class_names

#: ImageNet classes that count as "right" for each of the workbook's classes.
RELATED_CLASSES: dict[str, tuple[str, ...]] = {
    "lion": ("lion",),
    "tiger": ("tiger", "tiger_cat"),
    "bear": ("brown_bear", "American_black_bear", "ice_bear", "sloth_bear"),
}


def class_names() -> list[str]:
    """ImageNet's 1000 class names in output order (see :func:`helpers.backbones.imagenet_class_names`)."""
    return imagenet_class_names()


def related_indices(class_name: str, names: list[str] | None = None) -> dict[str, int]:
    """The ImageNet classes related to one of ours, with their output index."""
    names = names or class_names()
    return {n: names.index(n) for n in RELATED_CLASSES.get(class_name, ()) if n in names}


def is_related(our_class: str, imagenet_class: str) -> bool:
    """Does the ImageNet class ``imagenet_class`` count as a right answer for ``our_class``?"""
    return imagenet_class in RELATED_CLASSES.get(our_class, ())


def pretrained_classifier(name: str, weights: str | None = "imagenet", fallback: str | None = "mobilenet_0.25"):
    """The full ImageNet classifier ``name`` (backbone + 1000-class top), as notebook 01 shows it.

    When its ImageNet weights cannot be had (offline, no local file), say so and use
    ``fallback`` instead, if that one's weights are at hand; otherwise raise the original
    :class:`~helpers.backbones.WeightsUnavailableError`, which says where to put the file.
    """
    from .backbones import WeightsUnavailableError, build_backbone

    try:
        return build_backbone(name, weights=weights, include_top=True)
    except WeightsUnavailableError as exc:
        if not fallback or fallback == name:
            raise
        try:
            model = build_backbone(fallback, weights=weights, include_top=True)
        except WeightsUnavailableError:
            raise exc from None
        print(f"{name}: its ImageNet weights are not available here, so this notebook uses {fallback} instead.\n"
              f"To use {name}, do what this message says:\n{exc}")
        return model
