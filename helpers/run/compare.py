"""Which backbone fits best? The same head, the same photos, several backbones (notebook 07).

For each backbone we build notebook 02's model (:func:`helpers.run.train.build_classifier`)
and train its head with one :class:`helpers.run.train.Recipe` on cached features
(:func:`helpers.run.train.train_phase` cut at ``"pool"``: the frozen base runs once over the
photos, into the activation cache, and the head trains on the stored features), then
measure what a learner weighs when choosing: test accuracy (the validation photos
choose the epoch), training time, inference time per image of the whole model,
parameter count and the size of the saved ``.keras`` file. A backbone whose ImageNet
weights cannot be had (offline, no local file) is reported as *skipped* with the reason
in one line, never dropped.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from helpers import files
from helpers.data import folders as data_mod
from helpers.data.photos import splits
from helpers.model import cuts
from helpers.model.backbones import BACKBONES, WeightsUnavailableError, build_base, get_spec, resolve_weights
from helpers.model.lesson import inference_ms_per_image  # notebook 07's, re-exported: one source
from helpers.run import train
from helpers.run.seeds import (  # re-exported: notebooks 04, 05 and 05a call them here, beside the comparison
    FineTuneRecipe,
    SeedRuns,
    augmentation_effect,
    head_vs_fine_tune,
    scratch_stopped,
    seeds_verdict,
    spread,
)
from helpers.settings import WEIGHTS_ENV
from helpers.store.cache import BottleneckCache
from helpers.store.numbers import record

RESULTS_FILE = "comparison.json"

__all__ = [  # the comparison's names, and those of helpers.run.seeds it re-exports
    "RESULTS_FILE", "BackboneResult", "Setting", "train_head_cached", "inference_ms_per_image", "first_measurable",
    "by_hand_vs_package", "compare_one",
    "compare_backbones", "book_numbers", "describe", "COLUMNS", "results_table", "ranking_verdict",
    "FineTuneRecipe", "SeedRuns", "augmentation_effect", "head_vs_fine_tune", "scratch_stopped", "seeds_verdict",
    "spread",
]  # fmt: skip


@dataclass
class BackboneResult:
    """One row of the comparison: measured numbers, or why the backbone was skipped."""

    backbone: str
    status: str  # "ok" | "skipped"
    reason: str = ""
    image_size: int | None = None
    weights: str | None = None
    test_accuracy: float | None = None
    feature_seconds: float | None = None  # the one forward pass over train + val photos (0 when cached)
    train_seconds: float | None = None  # head training on the stored features
    inference_ms: float | None = None  # whole model, per image, batch of photos
    parameters: int | None = None
    file_mb: float | None = None
    few_per_class: int | None = None  # the harder setting: this many training photos per class…
    few_accuracy: list[float] | None = None  # …test accuracy on each seed's draw of them
    test_photos: int | None = None  # how many test photos each accuracy is on

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _skip_reason(exc: WeightsUnavailableError) -> str:
    """'ImageNet weights could not be had: Keras expects the file X …' in one line."""
    lines = str(exc).splitlines()
    expected = next((line for line in lines if line.startswith("Keras expects")), "")
    expected = expected.split(" (from ")[0]
    return (
        f"ImageNet weights could not be downloaded. {expected}; put it in ${WEIGHTS_ENV} or pass weights=PATH"
    ).strip()


def train_head_cached(
    model: keras.Model, parts: dict[str, data_mod.Split], recipe: train.Recipe
) -> tuple[float, float, float]:
    """Train ``model``'s head on cached features; return (test accuracy, feature s, train s).

    :func:`helpers.run.train.train_phase` cut at ``"pool"`` (notebooks 03 and 05): the base runs
    once over the photos (or not at all, when the cache has them), the head trains on the
    pooled features, the validation photos choose the epoch. Accuracy is on the test
    photos, scored from their cached features.
    """
    train.freeze_for(model, None)
    result = train.train_phase(model, parts["train"], parts["val"], recipe, cuts.POOL)
    test = parts["test"] if len(parts["test"]) else parts["val"]
    return (
        train.accuracy(model, test, recipe, cuts.POOL),
        result.extra["forward_seconds"],
        result.extra["fit_seconds"],
    )


@dataclass(frozen=True)
class Setting:
    """How every backbone of a comparison is measured: the same weights, size, training and draws for each.

    ``image_size=None`` uses each backbone's own default size. Features go to the activation cache
    (``cache_dir``, default ``$WORKBOOK_CACHE``), so a second run computes none. With ``few`` and
    ``seeds``, each backbone is also measured in a harder setting: ``few`` training photos per class,
    one draw per seed. ``allow_download=False`` skips a backbone at once when its ImageNet file is not
    local (CI and offline machines: no attempt, no waiting on the network).
    """

    weights: str | None = "imagenet"
    image_size: int | None = None
    epochs: int = 10
    seed: int = 0
    allow_download: bool = True
    cache_dir: str | os.PathLike | None = None
    few: int | None = None
    seeds: tuple[int, ...] = ()
    inference_images: int = 8


def _unavailable(spec, setting: Setting, size: int) -> BackboneResult | None:
    """The skipped row of a backbone whose weights cannot be had here (None: it can be built)."""
    weights = setting.weights
    if (
        not setting.allow_download
        and weights == "imagenet"
        and resolve_weights(spec, weights, False, size) == "imagenet"
    ):
        expected = spec.weight_file_names(False, size)[-1]
        reason = (
            f"no local ImageNet weights ({expected} is not in ${WEIGHTS_ENV} or the Keras cache) and downloads are off"
        )
        return BackboneResult(spec.name, "skipped", reason, size, str(weights))
    return None


def first_measurable(names: list[str], setting: Setting = Setting()) -> str:
    """The first of ``names`` that :func:`compare_one` would measure here (notebook 07 measures it by hand first).

    A known name, an image size the backbone takes, and weights at hand. A backbone whose weights are
    already on this machine (a local file, or Keras' cache) is preferred, so nothing is fetched twice;
    only when none is, and ``setting.allow_download``, the first ImageNet file that can be fetched is
    fetched now into Keras' cache (:func:`compare_one` then finds it local). Raises ValueError, in one
    line, when none of them can be built here.
    """
    candidates = []
    for name in names:
        try:
            spec = get_spec(name)
        except ValueError:
            continue
        size = setting.image_size or spec.default_size
        if size < spec.min_size or _unavailable(spec, setting, size) is not None:
            continue
        try:
            if setting.weights != "imagenet" or resolve_weights(spec, "imagenet", False, size) != "imagenet":
                resolve_weights(spec, setting.weights, False, size)  # a path must exist
                return spec.name  # at hand: nothing to fetch
        except (WeightsUnavailableError, FileNotFoundError):
            continue
        candidates.append((spec, size))
    for spec, size in candidates:  # nothing at hand: fetch, in order, until one file comes
        try:
            build_base(spec.name, "imagenet", size)
        except WeightsUnavailableError:
            continue
        return spec.name
    raise ValueError(
        f"none of {list(names)} can be built here: put a weights file in ${WEIGHTS_ENV}, "
        "or set ALLOW_DOWNLOAD = True on a machine that can download"
    )


def compare_one(
    name: str, photos: data_mod.ImageFolder, setting: Setting = Setting(), train_pool: data_mod.Split | None = None
) -> BackboneResult:
    """Measure one backbone (see the module docstring); skipped if its weights can't be had.

    With ``setting.few`` and ``setting.seeds``, the head is also trained on ``few`` photos per class
    drawn from ``train_pool`` (default: ``photos.train``) for each seed, on the same stored features,
    and scored on the same test photos: ``few_accuracy``, one value per seed.
    """
    spec = get_spec(name)
    size = setting.image_size or spec.default_size
    if (skipped := _unavailable(spec, setting, size)) is not None:
        return skipped
    try:
        model = train.build_classifier(photos.class_names, spec.name, setting.weights, size)
    except WeightsUnavailableError as exc:
        return BackboneResult(spec.name, "skipped", _skip_reason(exc), size, str(setting.weights))
    except (FileNotFoundError, ValueError) as exc:
        return BackboneResult(spec.name, "skipped", _first_line(exc), size, str(setting.weights))
    parts = splits(photos, setting.seed)
    store = BottleneckCache(setting.cache_dir, progress=False, checkpoint=None)  # head only: the pooled features
    recipe = train.Recipe(epochs=setting.epochs, seed=setting.seed, cache=store)
    accuracy, feature_seconds, train_seconds = train_head_cached(model, parts, recipe)
    few_accuracy = None
    if setting.few and setting.seeds:
        few_accuracy = []
        for each in setting.seeds:
            drawn = dict(parts, train=data_mod.sample_per_class(train_pool or photos.train, setting.few, each))
            few_recipe = train.Recipe(epochs=setting.epochs, seed=each, cache=store)
            few_accuracy.append(train_head_cached(model, drawn, few_recipe)[0])
    shown = parts["val"] if len(parts["val"]) else parts["train"]
    sample = data_mod.load_images(shown.paths[: setting.inference_images], size)
    with tempfile.TemporaryDirectory() as tmp:
        size_bytes = files.save_model(model, Path(tmp) / "model.keras").stat().st_size
    return BackboneResult(
        spec.name, "ok", "", size, str(setting.weights), accuracy, feature_seconds, train_seconds,
        inference_ms_per_image(model, sample), int(model.count_params()), size_bytes / 1e6,
        setting.few if few_accuracy is not None else None, few_accuracy,
        len(parts["test"]) if len(parts["test"]) else len(parts["val"]),
    )  # fmt: skip


def compare_backbones(
    names: list[str] | None,
    data_dir: str | os.PathLike,
    setting: Setting = Setting(),
    per_class: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[BackboneResult]:
    """Compare backbones (default: all of :data:`helpers.model.backbones.BACKBONES`) on one photo folder.

    Every backbone is measured the same way (:class:`Setting`, :func:`compare_one`), on ``per_class``
    training photos per class (None: all of them). With ``out``, the rows are written to
    ``out/comparison.json``; the accuracies are noted for the book (:func:`book_numbers`, a no-op
    outside the notebook runner).
    """
    everything = data_mod.load_folder(data_dir, seed=setting.seed)
    photos = everything
    if per_class is not None:
        train_photos = data_mod.sample_per_class(everything.train, per_class, setting.seed)
        photos = data_mod.ImageFolder(
            everything.root, everything.class_names, train_photos, everything.val, everything.test, everything.report
        )
    results = []
    for name in names or list(BACKBONES):
        try:
            get_spec(name)
        except ValueError as exc:
            results.append(BackboneResult(name, "skipped", str(exc)))
            continue
        results.append(compare_one(name, photos, setting, train_pool=everything.train))
        if progress:
            print(describe(results[-1]), flush=True)
    if out is not None:
        files.write_json(Path(out) / RESULTS_FILE, [asdict(r) for r in results])
    record(**book_numbers(results))  # notebook 07's, for the book
    return results


def by_hand_vs_package(result: BackboneResult, accuracy: float, parameters: int, file_mb: float) -> str:
    """Notebook 07's backbone measured by hand beside the package's row for it, in words from both.

    Accuracy is compared in test photos (a difference under one photo is none); the parameters and the
    file size must agree exactly and to 0.1 MB. The timings are not compared: they differ from run to run.
    """
    if not result.ok:
        return f"{result.backbone}: the package skipped it ({result.reason}), so there is nothing to compare."
    n_test = result.test_photos or 0
    photos = round(abs(accuracy - result.test_accuracy) * n_test)
    same_size = parameters == result.parameters and abs(file_mb - result.file_mb) < 0.05
    words = "the same" if photos == 0 and same_size else "not the same"
    return (
        f"{result.backbone}, by hand vs by the package: test accuracy {accuracy:.1%} vs {result.test_accuracy:.1%}"
        f"{f' ({photos} of {n_test} test photos apart)' if photos else ''}, parameters {parameters:,} vs "
        f"{result.parameters:,}, file {file_mb:.1f} vs {result.file_mb:.1f} MB: {words}."
    )


def book_numbers(results: list[BackboneResult]) -> dict[str, float]:
    """The comparison's key numbers for the book's index: each measured backbone's test accuracy."""
    return {f"accuracy of {r.backbone}": r.test_accuracy for r in results if r.ok}


def describe(result: BackboneResult) -> str:
    """One line for a progress log."""
    if not result.ok:
        return f"{result.backbone:18s} skipped (the table below says why)"
    few = f"  {result.few_per_class}/class: {spread(result.few_accuracy)}" if result.few_accuracy else ""
    return (
        f"{result.backbone:18s} {result.test_accuracy:6.1%}  train {result.train_seconds:5.1f}s "
        f"(+{result.feature_seconds:.1f}s features)  {result.inference_ms:6.1f} ms/image  "
        f"{result.parameters:>11,} params  {result.file_mb:6.1f} MB{few}"
    )


COLUMNS = [
    ("backbone", "backbone"),
    ("status", "status"),
    ("image_size", "px"),
    ("test_accuracy", "test acc"),
    ("few_accuracy", "test acc, few per class: mean (worst–best)"),
    ("train_seconds", "train s"),
    ("feature_seconds", "features s"),
    ("inference_ms", "ms/image"),
    ("parameters", "parameters"),
    ("file_mb", "file MB"),
    ("reason", "reason"),
]


def results_table(results: list[BackboneResult]) -> str:
    """The comparison as a Markdown table (measured rows first, then the skipped ones)."""

    def cell(key: str, value) -> str:
        if value is None or value == "":
            return "–"
        if key == "test_accuracy":
            return f"{value:.1%}"
        if key == "few_accuracy":
            return f"{spread(value)}" if value else "–"
        if key in ("train_seconds", "feature_seconds", "inference_ms", "file_mb"):
            return f"{value:.2f}"
        if key == "parameters":
            return f"{value:,}"
        return str(value)

    rows = sorted(results, key=lambda r: (not r.ok, r.backbone))
    few = next((r.few_per_class for r in results if r.few_per_class), None)
    titles = [title.replace("few per class", f"{few} per class") for _, title in COLUMNS]
    header = "| " + " | ".join(titles) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(cell(key, getattr(r, key)) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def ranking_verdict(results: list[BackboneResult]) -> str:
    """The comparison's accuracies in words from its numbers: ties in the main run, the ranking with few photos.

    Backbones within one test photo of each other count as tied. In the harder setting (``few``
    photos per class over seeds), the best backbone by mean is compared with each other one on the
    same draws (:func:`seeds_verdict`).
    """
    ok = [r for r in results if r.ok]
    if not ok:
        return "No backbone could be measured here."
    n_test = ok[0].test_photos
    lines = []
    best = max(r.test_accuracy for r in ok)
    tied = [r.backbone for r in ok if round((best - r.test_accuracy) * n_test) < 1]
    if len(tied) == len(ok) and len(ok) > 1:
        lines.append(
            f"With the training photos of the main run, all {len(ok)} backbones tie at {best:.1%} on {n_test} test "
            "photos: this setting cannot tell them apart."
        )
    else:
        ranked = sorted(ok, key=lambda r: -r.test_accuracy)
        lines.append(
            "With the training photos of the main run: "
            + ", ".join(f"{r.backbone} {r.test_accuracy:.1%}" for r in ranked)
            + (f" ({', '.join(tied)} tied at the top)" if len(tied) > 1 else "")
            + "."
        )
    few = [r for r in ok if r.few_accuracy]
    if len(few) > 1:
        ranked = sorted(few, key=lambda r: -float(np.mean(r.few_accuracy)))
        top = ranked[0]
        lines.append(
            f"With {top.few_per_class} photos per class, over {len(top.few_accuracy)} draws, by mean: "
            + ", ".join(f"{r.backbone} {np.mean(r.few_accuracy):.1%}" for r in ranked)
            + "."
        )
        for r in ranked[1:]:
            lines.append("- " + seeds_verdict(r.backbone, r.few_accuracy, top.backbone, top.few_accuracy, n_test))
    return "\n".join(lines)
