"""How good is the model, and where does it fail? (notebook 06; ``python -m helpers evaluate``)

Accuracy, per-class precision and recall, and the confusion matrix come from
scikit-learn; this module adds what the workbook needs around them: predicting a photo
folder, picking the misclassified and least-confident photos, writing the numbers as JSON,
and classifying your own photos (``python -m helpers predict``).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from helpers import files
from helpers.data import folders as data_mod
from helpers.ship.export import class_names_for, load_model
from helpers.store.numbers import record

EVALUATION_FILE = "evaluation.json"


def check_probabilities(probabilities: np.ndarray, where: str) -> np.ndarray:
    """``probabilities``, or a ValueError (one line) when any is NaN or infinite: a broken model is not scored."""
    probabilities = np.asarray(probabilities)
    if not np.isfinite(probabilities).all():
        raise ValueError(
            f"{where} gives non-finite probabilities (NaN or inf): its weights are broken; "
            "train it again (python -m helpers train refuses to save such a model)"
        )
    return probabilities


@dataclass
class Evaluation:
    """A model's probabilities on labelled photos, and what follows from them."""

    class_names: list[str]
    labels: np.ndarray  # true class index per photo
    probabilities: np.ndarray  # N × classes
    paths: list[Path] = field(default_factory=list)
    split: str = ""  # which photos: "val", "test", "train", or "all" (a folder without splits)
    warnings: list[str] = field(default_factory=list)  # data and class-name problems, one line each
    skipped: list[str] = field(default_factory=list)  # photos that could not be scored, one line each

    def counts(self) -> dict[str, int]:
        """How many photos of each class were scored."""
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability the model gave to the class it chose."""
        return self.probabilities.max(axis=1)

    @property
    def accuracy(self) -> float:
        return float(accuracy_score(self.labels, self.predictions))

    def per_class(self) -> dict[str, dict[str, float]]:
        """Precision, recall, F1 and support for each class (scikit-learn's report)."""
        report = classification_report(
            self.labels,
            self.predictions,
            labels=list(range(len(self.class_names))),
            target_names=self.class_names,
            output_dict=True,
            zero_division=0,
        )
        return {name: {k: float(v) for k, v in report[name].items()} for name in self.class_names}

    def confusion(self) -> np.ndarray:
        """Confusion matrix: row = true class, column = predicted class."""
        return confusion_matrix(self.labels, self.predictions, labels=list(range(len(self.class_names))))

    def misclassified(self, k: int | None = None) -> list[int]:
        """Indices of wrongly classified photos, the most confidently wrong first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        order = wrong[np.argsort(-self.confidence[wrong], kind="stable")]
        return [int(i) for i in order[:k]]

    def least_confident(self, k: int = 8) -> list[int]:
        """Indices of the photos the model was least sure about (right or wrong)."""
        return [int(i) for i in np.argsort(self.confidence, kind="stable")[:k]]

    def to_dict(self) -> dict:
        """Everything worth keeping, JSON-ready (what ``evaluation.json`` holds)."""
        return {
            "accuracy": self.accuracy,
            "n": int(len(self.labels)),
            "class_names": list(self.class_names),
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion().tolist(),
            "split": self.split,
            "counts": self.counts(),
            "warnings": list(self.warnings),
            "skipped": list(self.skipped),
            "misclassified": [
                {
                    "path": str(self.paths[i]) if self.paths else None,
                    "true": self.class_names[self.labels[i]],
                    "predicted": self.class_names[self.predictions[i]],
                    "confidence": float(self.confidence[i]),
                }
                for i in self.misclassified()
            ],
        }


def evaluate(
    model: keras.Model,
    images: np.ndarray,
    labels,
    class_names: list[str],
    paths: list[Path] | None = None,
    batch_size: int = 32,
    probabilities: np.ndarray | None = None,
) -> Evaluation:
    """Predict ``images`` (raw 0–255 pixels) and score them against ``labels``.

    ``probabilities``, when given (e.g. ``train.probabilities`` from stored activations), are
    scored instead of running the model over ``images`` again.
    """
    labels = np.asarray(labels, dtype=int)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ValueError(
            f"the model predicts {n_out} classes but the data has {len(class_names)} "
            f"({class_names}); evaluate it on photos of the classes it was trained on"
        )
    if probabilities is None:
        probabilities = model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
    probs = check_probabilities(probabilities, f"model {model.name}")
    if probs.shape != (len(labels), n_out):
        raise ValueError(f"probabilities of shape {probs.shape}, expected {(len(labels), n_out)}")
    result = Evaluation(list(class_names), labels, probs, list(paths or []))
    record(accuracy=result.accuracy, photos=len(labels))  # the key number of notebook 06, for the book
    return result


def model_image_size(model: keras.Model) -> int:
    """The square input size the model was built for."""
    size = model.input_shape[1]
    if size is None:
        raise ValueError(f"model {model.name} has no fixed input size")
    return int(size)


def open_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file (safe mode); a damaged or foreign file gets one clear line, not Keras' guess."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} exists but is not a valid .keras archive (not a zip file: damaged, truncated or "
            "not a model); train or export it again"
        )
    try:
        return load_model(path)
    except (FileNotFoundError, PermissionError):
        raise
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        if not path.is_file():
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} exists but is not a valid .keras archive ({first}); train or export it again"
        ) from None


def _match_class_names(
    model_names: list[str] | None, data_names: list[str], n_outputs: int, where: str
) -> tuple[list[str], list[str]]:
    """The class names to score with, and warnings (loud: a mismatch makes accuracy meaningless)."""
    if model_names is None:
        return data_names, [
            f"WARNING: {where} has no labels.txt or metrics.json, so the model's {n_outputs} outputs are ASSUMED "
            f"to be the data's classes in folder order ({', '.join(data_names)}); if it was trained on other "
            "classes or in another order, this accuracy means nothing (put a labels.txt beside the model)"
        ]
    unknown = [name for name in data_names if name not in model_names]
    if unknown:
        raise ValueError(
            f"{where}: the data has class folders {unknown} that the model was not trained on "
            f"(it knows {model_names}); evaluate it on photos of the classes it was trained on"
        )
    return model_names, []


def _folder_warnings(folder: data_mod.ImageFolder, data_dir: Path) -> list[str]:
    """What the data check found in the folder, and how many of its files are left out."""
    warnings = list(folder.report.warnings) if folder.report else []
    if folder.report and folder.report.skipped:
        warnings.append(
            f"{len(folder.report.skipped)} files in {data_dir} are skipped (unreadable, too small, "
            "too large, not photos): python -m helpers check-data lists them"
        )
    return warnings


def _chosen_split(folder: data_mod.ImageFolder, split: str | None, data_dir: Path) -> tuple[str, data_mod.Split]:
    """The split to score (None: every photo of a folder without splits, else ``val``) and its photos."""
    flat = folder.report is not None and folder.report.layout == "DIR/<class>/"
    if split is None:
        split = "all" if flat else "val"
    if split == "all":
        chosen = data_mod.Split(folder.train.paths + folder.val.paths, folder.train.labels + folder.val.labels)
    else:
        chosen = getattr(folder, split, None)
    if chosen is None or not len(chosen):
        raise ValueError(f"{data_dir} has no photos in its {split!r} split")
    return split, chosen


def evaluate_model(
    model_path_or_model: str | os.PathLike | keras.Model,
    data_dir: str | os.PathLike,
    split: str | None = None,
    out: str | os.PathLike | None = None,
    class_names: list[str] | None = None,
    batch_size: int = 32,
    on_warning: Callable[[str], None] | None = None,
) -> Evaluation:
    """Score a saved (or in-memory) model on a photo folder; write the JSON.

    ``split=None`` scores every photo of a folder without split folders (``DIR/<class>/``)
    and the ``val`` split of one with them; ``split="val"`` etc. picks a split. Class names
    come from ``class_names``, else ``labels.txt`` / ``metrics.json`` beside the model file,
    else (with a loud warning) the folder's class folders. A photo that cannot be read is
    left out and named (``result.skipped``); data problems the check knows and class names
    that do not match are in ``result.warnings``, each also passed to ``on_warning`` as
    soon as it is known. Per-class metrics and the confusion matrix go to ``evaluation.json``
    in ``out`` (default: beside the model file; nothing is written for an in-memory model
    without ``out``).
    """
    say = on_warning or (lambda line: None)
    if isinstance(model_path_or_model, keras.Model):
        model, model_path = model_path_or_model, None
        known = class_names
    else:
        model_path = Path(model_path_or_model)
        model = open_model(model_path)
        known = class_names or class_names_for(model_path)
    data_dir = Path(data_dir)
    folder = data_mod.load_folder(data_dir)
    warnings = _folder_warnings(folder, data_dir)
    split, chosen = _chosen_split(folder, split, data_dir)
    n_out = int(model.output_shape[-1])
    where = f"{model_path.parent}" if model_path else f"model {model.name}"
    names, name_warnings = _match_class_names(known, folder.class_names, n_out, where)
    warnings += name_warnings
    for line in warnings:
        say(line)
    pairs = [
        (p, names.index(folder.class_names[i]))
        for p, i in zip(chosen.paths, chosen.labels)
        if folder.class_names[i] in names
    ]
    images, kept, skipped = data_mod.load_images_skipping([p for p, _ in pairs], model_image_size(model))
    for line in skipped:
        say(f"skipped {line}")
    if not kept:
        raise ValueError(f"none of the photos in {data_dir} could be scored")
    result = evaluate(model, images, [pairs[i][1] for i in kept], names, [pairs[i][0] for i in kept], batch_size)
    result.split, result.warnings, result.skipped = split, warnings, skipped
    target_dir = Path(out) if out is not None else (model_path.parent if model_path else None)
    if target_dir is not None:
        report = result.to_dict() | {"data": str(data_dir), "model": str(model_path) if model_path else model.name}
        files.write_json(target_dir / EVALUATION_FILE, report)
    return result


# -- your own photos ---------------------------------------------------------------------------


@dataclass
class Prediction:
    """The top classes for one photo, or the reason it could not be read."""

    path: Path
    top: list[tuple[str, float]]
    error: str | None = None


def predict_files(
    model: keras.Model, paths: list[str | os.PathLike], class_names: list[str], top: int = 3
) -> list[Prediction]:
    """Classify image files; a file that cannot be used (missing, corrupt, too large) gets an error, the rest go on."""
    size = model_image_size(model)
    good, images, results = [], [], []
    for path in map(Path, paths):
        try:
            images.append(data_mod.load_image(path, size))
            good.append(len(results))
            results.append(Prediction(path, []))
        except data_mod.PhotoError as exc:  # missing, unreadable, corrupt, too large: named, and the rest go on
            results.append(Prediction(path, [], str(exc)))
    if images:
        probs = np.asarray(model.predict(np.stack(images).astype(np.float32), verbose=0))
        check_probabilities(probs, f"model {model.name}")
        for row, i in zip(probs, good):
            best = np.argsort(-row)[:top]
            results[i].top = [(class_names[j], float(row[j])) for j in best]
    return results


def top_classes(model: keras.Model, image: np.ndarray, class_names: list[str], top: int = 3) -> list[tuple[str, float]]:
    """The top classes for one decoded image (``size × size × 3``, 0–255)."""
    row = np.asarray(model.predict(np.asarray(image, np.float32)[None], verbose=0))[0]
    return [(class_names[j], float(row[j])) for j in np.argsort(-row)[:top]]


def describe_mistakes(result: Evaluation) -> str:
    """What the confusion matrix says, in words from its numbers: how many mistakes, and which mix-ups."""
    matrix = result.confusion()
    n, wrong = int(matrix.sum()), int(matrix.sum() - np.trace(matrix))
    if wrong == 0:
        return f"Nothing off the diagonal: all {n} test photos right, so there is no mistake to study here."
    pairs = [
        (int(matrix[t, p]), result.class_names[t], result.class_names[p])
        for t in range(len(matrix))
        for p in range(len(matrix))
        if t != p and matrix[t, p]
    ]
    pairs.sort(key=lambda c: -c[0])
    listed = "; ".join(f"{k} {true} called {pred}" for k, true, pred in pairs)
    return f"{wrong} of {n} test photos wrong ({result.accuracy:.1%} right): {listed}."
