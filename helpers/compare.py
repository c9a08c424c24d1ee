"""Which backbone fits best? The same head, the same photos, several backbones (notebook 07).

For each backbone we build notebook 02's model (:func:`helpers.train.build_classifier`)
and train its head with one :class:`helpers.train.Recipe` on cached features
(:func:`helpers.train.train_phase` cut at ``"pool"``: the frozen base runs once over the
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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from . import cuts, files, train
from . import data as data_mod
from .backbones import BACKBONES, WeightsUnavailableError, get_spec, resolve_weights
from .cache import BottleneckCache
from .photos import splits
from .settings import WEIGHTS_ENV

RESULTS_FILE = "comparison.json"


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

    :func:`helpers.train.train_phase` cut at ``"pool"`` (notebooks 03 and 05): the base runs
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


def inference_ms_per_image(model: keras.Model, images: np.ndarray, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``model.predict`` on a batch, per image, in ms."""
    x = np.asarray(images, np.float32)
    model.predict(x[:1], verbose=0)  # build and trace once
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=len(x), verbose=0)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(x)


def compare_one(
    name: str,
    photos: data_mod.ImageFolder,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    epochs: int = 10,
    seed: int = 0,
    inference_images: int = 8,
    allow_download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> BackboneResult:
    """Measure one backbone (see the module docstring); skipped if its weights can't be had.

    ``allow_download=False`` skips a backbone at once when its ImageNet file is not local
    (CI and offline machines: no attempt, no waiting on the network).
    """
    spec = get_spec(name)
    size = image_size or spec.default_size
    if not allow_download and weights == "imagenet" and resolve_weights(spec, weights, False, size) == "imagenet":
        expected = spec.weight_file_names(False, size)[-1]
        return BackboneResult(
            spec.name,
            "skipped",
            f"no local ImageNet weights ({expected} is not in ${WEIGHTS_ENV} or the Keras cache) and downloads are off",
            size,
            str(weights),
        )
    try:
        model = train.build_classifier(photos.class_names, spec.name, weights, size)
    except WeightsUnavailableError as exc:
        return BackboneResult(spec.name, "skipped", _skip_reason(exc), size, str(weights))
    except (FileNotFoundError, ValueError) as exc:
        return BackboneResult(spec.name, "skipped", _first_line(exc), size, str(weights))
    parts = splits(photos, seed)
    store = BottleneckCache(cache_dir, progress=False, checkpoint=None)  # head only: the pooled features
    recipe = train.Recipe(epochs=epochs, seed=seed, cache=store)
    accuracy, feature_seconds, train_seconds = train_head_cached(model, parts, recipe)
    shown = parts["val"] if len(parts["val"]) else parts["train"]
    sample = data_mod.load_images(shown.paths[:inference_images], size)
    with tempfile.TemporaryDirectory() as tmp:
        size_bytes = files.save_model(model, Path(tmp) / "model.keras").stat().st_size
    return BackboneResult(
        spec.name,
        "ok",
        "",
        size,
        str(weights),
        accuracy,
        feature_seconds,
        train_seconds,
        inference_ms_per_image(model, sample),
        int(model.count_params()),
        size_bytes / 1e6,
    )


def compare_backbones(
    names: list[str] | None,
    data_dir: str | os.PathLike,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    per_class: int | None = None,
    epochs: int = 10,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    allow_download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> list[BackboneResult]:
    """Compare backbones (default: all of :data:`helpers.backbones.BACKBONES`) on one photo folder.

    ``image_size=None`` uses each backbone's own default size. Features go to the activation
    cache (``cache_dir``, default ``$WORKBOOK_CACHE``), so a second run computes none. With
    ``out``, the rows are written to ``out/comparison.json``.
    """
    photos = data_mod.load_folder(data_dir, per_class=per_class, seed=seed)

    results = []
    for name in names or list(BACKBONES):
        try:
            get_spec(name)
        except ValueError as exc:
            results.append(BackboneResult(name, "skipped", str(exc)))
            continue
        result = compare_one(
            name, photos, weights, image_size, epochs, seed, allow_download=allow_download, cache_dir=cache_dir
        )
        results.append(result)
        if progress:
            print(describe(result), flush=True)
    if out is not None:
        files.write_json(Path(out) / RESULTS_FILE, [asdict(r) for r in results])
    from .book import record

    record(**{f"accuracy of {r.backbone}": r.test_accuracy for r in results if r.ok})  # notebook 07's, for the book
    return results


def describe(result: BackboneResult) -> str:
    """One line for a progress log."""
    if not result.ok:
        return f"{result.backbone:18s} skipped: {result.reason}"
    return (
        f"{result.backbone:18s} {result.test_accuracy:6.1%}  train {result.train_seconds:5.1f}s "
        f"(+{result.feature_seconds:.1f}s features)  {result.inference_ms:6.1f} ms/image  "
        f"{result.parameters:>11,} params  {result.file_mb:6.1f} MB"
    )


COLUMNS = [
    ("backbone", "backbone"),
    ("status", "status"),
    ("image_size", "px"),
    ("test_accuracy", "test acc"),
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
        if key in ("train_seconds", "feature_seconds", "inference_ms", "file_mb"):
            return f"{value:.2f}"
        if key == "parameters":
            return f"{value:,}"
        return str(value)

    rows = sorted(results, key=lambda r: (not r.ok, r.backbone))
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(cell(key, getattr(r, key)) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def plot_comparison(results: list[BackboneResult]):
    """Bars for accuracy, training time, inference time, parameters and file size (measured rows)."""
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.ok]
    skipped = [r.backbone for r in results if not r.ok]
    panels = [
        ("test_accuracy", "test accuracy", 1.0),
        ("train_seconds", "head training (s)", 1.0),
        ("inference_ms", "inference (ms / image)", 1.0),
        ("parameters", "parameters (M)", 1e-6),
        ("file_mb", ".keras file (MB)", 1.0),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    names = [r.backbone for r in ok]
    for ax, (key, title, scale) in zip(axes, panels):
        ax.bar(range(len(ok)), [getattr(r, key) * scale for r in ok], color="tab:blue")
        ax.set_xticks(range(len(ok)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "test_accuracy":
            ax.set_ylim(0, 1.05)
    if skipped:
        fig.text(0.5, -0.02, "skipped (no weights): " + ", ".join(skipped), ha="center", fontsize=8)
    fig.tight_layout()
    return fig
