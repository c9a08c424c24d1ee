"""How good is the model, and where does it fail? (notebook 06; ``python -m helpers evaluate``)

Accuracy, per-class precision and recall, and the confusion matrix come from
scikit-learn; this module adds what the workbook needs around them: predicting a photo
folder, picking the misclassified and least-confident photos, writing the numbers as JSON,
and classifying your own photos (``python -m helpers predict``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, classification_report, confusion_matrix

from . import data as data_mod
from . import files
from .export import class_names_for, load_model

EVALUATION_FILE = "evaluation.json"


@dataclass
class Evaluation:
    """A model's probabilities on labelled photos, and what follows from them."""

    class_names: list[str]
    labels: np.ndarray          # true class index per photo
    probabilities: np.ndarray   # N × classes
    paths: list[Path] = field(default_factory=list)

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
        report = classification_report(self.labels, self.predictions, labels=list(range(len(self.class_names))),
                                       target_names=self.class_names, output_dict=True, zero_division=0)
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
            "misclassified": [{"path": str(self.paths[i]) if self.paths else None,
                               "true": self.class_names[self.labels[i]],
                               "predicted": self.class_names[self.predictions[i]],
                               "confidence": float(self.confidence[i])} for i in self.misclassified()],
        }


def evaluate(model: keras.Model, images: np.ndarray, labels, class_names: list[str],
             paths: list[Path] | None = None, batch_size: int = 32) -> Evaluation:
    """Predict ``images`` (raw 0–255 pixels) and score them against ``labels``."""
    labels = np.asarray(labels, dtype=int)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise ValueError(f"the model predicts {n_out} classes but the data has {len(class_names)} "
                         f"({class_names}); evaluate it on photos of the classes it was trained on")
    probs = np.asarray(model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0))
    return Evaluation(list(class_names), labels, probs, list(paths or []))


def model_image_size(model: keras.Model) -> int:
    """The square input size the model was built for."""
    size = model.input_shape[1]
    if size is None:
        raise ValueError(f"model {model.name} has no fixed input size")
    return int(size)


def _check_class_names(model_names: list[str] | None, data_names: list[str], data_dir: Path) -> list[str]:
    if model_names is None:
        return data_names
    missing = [name for name in data_names if name not in model_names]
    if missing:
        raise ValueError(f"{data_dir} has class folders {missing} that the model was not trained on "
                         f"(it knows {model_names})")
    return model_names


def evaluate_model(model_path_or_model: str | os.PathLike | keras.Model, data_dir: str | os.PathLike,
                   split: str = "val", out: str | os.PathLike | None = None,
                   class_names: list[str] | None = None, batch_size: int = 32) -> Evaluation:
    """Score a saved (or in-memory) model on one split of a photo folder; write the JSON.

    Class names come from ``class_names``, else from ``labels.txt`` / ``metrics.json`` beside
    the model file, else from the folder's class folders. Per-class metrics and the
    confusion matrix go to ``evaluation.json`` in ``out`` (default: beside the model file;
    nothing is written for an in-memory model without ``out``).
    """
    if isinstance(model_path_or_model, keras.Model):
        model, model_path = model_path_or_model, None
    else:
        model_path = Path(model_path_or_model)
        model = load_model(model_path)
        class_names = class_names or class_names_for(model_path)
    data_dir = Path(data_dir)
    folder = data_mod.load_folder(data_dir)
    chosen = getattr(folder, split, None)
    if chosen is None or not len(chosen):
        raise ValueError(f"{data_dir} has no photos in its {split!r} split")
    names = _check_class_names(class_names, folder.class_names, data_dir)
    labels = [names.index(folder.class_names[i]) for i in chosen.labels]
    images = data_mod.load_images(chosen.paths, model_image_size(model))
    result = evaluate(model, images, labels, names, chosen.paths, batch_size)
    target_dir = Path(out) if out is not None else (model_path.parent if model_path else None)
    if target_dir is not None:
        report = result.to_dict() | {"data": str(data_dir), "split": split,
                                     "model": str(model_path) if model_path else model.name}
        files.write_json(target_dir / EVALUATION_FILE, report)
    return result


# -- your own photos ---------------------------------------------------------------------------

@dataclass
class Prediction:
    """The top classes for one photo, or the reason it could not be read."""

    path: Path
    top: list[tuple[str, float]]
    error: str | None = None


def predict_files(model: keras.Model, paths: list[str | os.PathLike], class_names: list[str],
                  top: int = 3) -> list[Prediction]:
    """Classify image files; an unreadable file gets an error message and the rest go on."""
    size = model_image_size(model)
    good, images, results = [], [], []
    for path in map(Path, paths):
        try:
            images.append(data_mod.load_image(path, size))
            good.append(len(results))
            results.append(Prediction(path, []))
        except FileNotFoundError:
            results.append(Prediction(path, [], f"{path}: no such file"))
        except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
            results.append(Prediction(path, [], f"{path}: not an image we can read ({exc}); "
                                                f"use a JPEG or PNG photo"))
    if images:
        probs = np.asarray(model.predict(np.stack(images).astype(np.float32), verbose=0))
        for row, i in zip(probs, good):
            best = np.argsort(-row)[:top]
            results[i].top = [(class_names[j], float(row[j])) for j in best]
    return results


def top_classes(model: keras.Model, image: np.ndarray, class_names: list[str], top: int = 3) -> list[tuple[str, float]]:
    """The top classes for one decoded image (``size × size × 3``, 0–255)."""
    row = np.asarray(model.predict(np.asarray(image, np.float32)[None], verbose=0))[0]
    return [(class_names[j], float(row[j])) for j in np.argsort(-row)[:top]]


# -- figures (notebook 06) --------------------------------------------------------------------

def plot_confusion_matrix(result: Evaluation, ax=None, normalize: str | None = None):
    """The confusion matrix as a figure (scikit-learn's ``ConfusionMatrixDisplay``)."""
    display = ConfusionMatrixDisplay(result.confusion() if normalize is None else
                                     confusion_matrix(result.labels, result.predictions,
                                                      labels=list(range(len(result.class_names))),
                                                      normalize=normalize),
                                     display_labels=result.class_names)
    display.plot(ax=ax, cmap="Blues", colorbar=False)
    display.ax_.set_title(f"accuracy {result.accuracy:.1%} on {len(result.labels)} photos")
    return display.figure_


def plot_gallery(result: Evaluation, indices: list[int], images: np.ndarray | None = None,
                 columns: int = 4, title: str = ""):
    """Photos with their true class, the predicted class and its probability."""
    import matplotlib.pyplot as plt

    if not indices:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        return fig
    rows = (len(indices) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        image = images[i] if images is not None else data_mod.load_image(result.paths[i], 160)
        ax.imshow(image)
        true, pred = result.class_names[result.labels[i]], result.class_names[result.predictions[i]]
        colour = "green" if true == pred else "red"
        ax.set_title(f"true {true}\npredicted {pred} {result.confidence[i]:.0%}", color=colour, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
