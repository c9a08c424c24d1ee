"""What a run is, in one place: :class:`RunConfig` (a whole ``train`` run) and :class:`Recipe` (one phase).

Both are frozen dataclasses. A :class:`RunConfig` is resolved once (:meth:`RunConfig.resolved`):
the backbone's own photo size (from its facts, :func:`helpers.model.specs.get_spec`) and the
activation cache's folder (:func:`helpers.settings.cache_root`: ``$WORKBOOK_CACHE``, else
``~/.cache/transfer-workbook/bottlenecks``) are filled in there, so the command line's defaults,
``run.json`` (:meth:`RunConfig.record`) and ``metrics.json`` all say the same thing. The second
phase of a run is the first phase's :class:`Recipe` with ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.model.specs import get_spec
from helpers.run import runs
from helpers.settings import cache_root

if TYPE_CHECKING:  # the store loads Keras; a configuration is checked without it (the command line's refusals)
    from helpers.store.cache import BottleneckCache

HEAD_LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-5
HEAD_EPOCHS = 30  # cheap on cached features; 10 photos/class reach >= 97% for every seed tried
FINE_TUNE_EPOCHS = 5
PATIENCE = 10
BATCH_SIZE = 32


@dataclass(frozen=True)
class Recipe:
    """How one phase trains. ``cache=None``: the plain recipe (the frozen part runs every epoch).

    ``callbacks``: Keras callbacks for ``fit`` (a notebook passes ``helpers.show.curves.LivePlot()``).
    """

    learning_rate: float = HEAD_LEARNING_RATE
    epochs: int = HEAD_EPOCHS
    batch_size: int = BATCH_SIZE
    patience: int = PATIENCE
    seed: int = 0
    callbacks: tuple = ()
    cache: BottleneckCache | None = None
    augment_copies: int = 0  # with a cache: K fixed random views of each training photo, computed once
    strategy: object = None  # a tf.distribute strategy (helpers.run.device.choose_strategy); None: one device
    class_means_start: bool = True  # a normalised head on cached features starts at the class means (notebook 05)
    mirror_views: bool = False  # with the class-means start, <= train.MIRROR_UP_TO photos per class: add their mirrors


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a ``python -m helpers train`` run (the command's options, one field each).

    ``image_size=None``: the backbone's own size; ``cache_dir=None``: :func:`helpers.settings.cache_root`;
    both filled in by :meth:`resolved`. ``cache=False`` is the plain recipe (no activation cache).
    ``mirror_views``: with at most ``helpers.run.train.MIRROR_UP_TO`` photos per class, the head also learns from each
    training photo's mirror image. ``imagenet_prior``: where it applies, the saved model multiplies the head's
    probabilities by ImageNet's opinion (:mod:`helpers.run.prior`; ``--no-imagenet-prior`` turns it off).
    """

    data: str | os.PathLike
    backbone: str = "inception_v3"
    weights: str | None = "imagenet"
    per_class: int | None = None
    image_size: int | None = None
    epochs: int = HEAD_EPOCHS
    fine_tune_from: str | int | None = None
    fine_tune_epochs: int = FINE_TUNE_EPOCHS
    seed: int = 0
    batch_size: int = BATCH_SIZE
    patience: int = PATIENCE
    cache: bool = True
    cache_dir: str | os.PathLike | None = None
    augment_copies: int = 0
    mirror_views: bool = True
    imagenet_prior: bool = True

    def resolved(self) -> RunConfig:
        """This configuration with the backbone's size and the cache folder filled in; checked (ValueError)."""
        spec = get_spec(self.backbone)
        size = spec.default_size if self.image_size is None else self.image_size
        if size < spec.min_size:
            raise ValueError(f"image_size {size}: {spec.name} takes photos of at least {spec.min_size} px")
        if self.augment_copies and not self.cache:
            raise ValueError("augment_copies needs the activation cache (leave cache on)")
        folder = Path(self.cache_dir).expanduser() if self.cache_dir is not None else cache_root()
        return dataclasses.replace(self, image_size=size, cache_dir=folder if self.cache else None)

    @property
    def fine_tunes(self) -> bool:
        """Whether the run has a fine-tuning phase."""
        return bool(self.fine_tune_from) and self.fine_tune_epochs > 0

    def record(self) -> dict:
        """What ``run.json`` keeps and compares on a re-run (:func:`helpers.run.runs.prepare`): the resolved run."""
        config = self.resolved()
        return {
            "data": str(Path(config.data).expanduser().resolve()),
            "data_digest": runs.data_digest(config.data),
            "backbone": config.backbone,
            "weights": runs.describe_weights(config.weights),
            "image_size": config.image_size,
            "per_class": config.per_class,
            "epochs": config.epochs,
            "fine_tune_from": config.fine_tune_from,
            "fine_tune_epochs": config.fine_tune_epochs if config.fine_tune_from else None,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "patience": config.patience,
            "imagenet_prior": config.imagenet_prior,
        }

    def summary(self) -> dict:
        """What ``metrics.json`` says about the run's settings (the resolved ones)."""
        config = self.resolved()
        return {
            "backbone": config.backbone,
            "weights": str(config.weights),
            "image_size": config.image_size,
            "per_class": config.per_class,
            "seed": config.seed,
            "cache": config.cache,
            "cache_dir": str(config.cache_dir) if config.cache else None,
            "fine_tune_from": config.fine_tune_from,
        }

    def head_recipe(self, store: BottleneckCache | None, strategy=None, callbacks=()) -> Recipe:
        """The head phase's recipe; the fine-tuning phase's is :meth:`tune_recipe` of it."""
        return Recipe(
            learning_rate=HEAD_LEARNING_RATE,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            callbacks=tuple(callbacks),
            cache=store,
            augment_copies=self.augment_copies,
            strategy=strategy,
            mirror_views=self.mirror_views,
        )

    def tune_recipe(self, head: Recipe) -> Recipe:
        """The fine-tuning phase: the head's recipe with the fine-tuning learning rate and epochs."""
        return dataclasses.replace(head, learning_rate=FINE_TUNE_LEARNING_RATE, epochs=self.fine_tune_epochs)


@dataclass(frozen=True)
class BenchConfig:
    """What ``python -m helpers bench`` measures (its options; ``image_size=None``: the backbone's own size)."""

    data_dir: str | os.PathLike
    backbone: str = "mobilenet_v2"
    weights: str | None = "imagenet"
    image_size: int | None = None
    images: int = 480
    epochs: tuple[int, ...] = (10, 20)
    max_cached_epochs: int = 50
    fine_tune_blocks: int = 2
    val_images: int = 90
    batch_size: int = 32
    seed: int = 0

    @property
    def size(self) -> int:
        """The photo side: ``image_size``, else the backbone's own."""
        return self.image_size or get_spec(self.backbone).default_size

    def recipe(self, learning_rate: float, epochs: int) -> Recipe:
        return Recipe(learning_rate=learning_rate, epochs=epochs, batch_size=self.batch_size, seed=self.seed)


#: What ``python -m helpers gpu-check`` measures when no size is given (:mod:`helpers.tools.gpu_check`):
#: on the CPU (``--allow-cpu``) small enough for a test.
GPU_CHECK_CPU_SIZES = {"image_size": 75, "images": 16, "batch_size": 8, "epochs": 2}
GPU_CHECK_GPU_SIZES = {"image_size": 299, "images": 512, "batch_size": 64, "epochs": 3}


__all__ = [
    "BATCH_SIZE",
    "BenchConfig",
    "FINE_TUNE_EPOCHS",
    "FINE_TUNE_LEARNING_RATE",
    "GPU_CHECK_CPU_SIZES",
    "GPU_CHECK_GPU_SIZES",
    "HEAD_EPOCHS",
    "HEAD_LEARNING_RATE",
    "PATIENCE",
    "Recipe",
    "RunConfig",
]
