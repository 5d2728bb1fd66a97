"""Predictions and metrics: accuracy, per-class precision/recall/F1, confusion matrix."""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.dataset import FaceDataset
from ..errors import FerError
from .confusion import class_metrics, confusion_counts, ranked_pairs, summary
from .predict import predict_split

REPORTED_PAIRS = 5


def metrics_from_predictions(labels: np.ndarray, predicted: np.ndarray,
                             classes: Sequence[str]) -> dict:
    """n, accuracy, balanced accuracy, the `classes` (in output order), per-class
    precision/recall/F1/support, the confusion matrix (rows = true class) and its off-diagonal
    cells ranked by count (`pairs`)."""
    matrix = confusion_counts(labels, predicted, classes)
    return {
        **summary(labels, predicted),
        "classes": list(classes),
        "per_class": {m["class"]: {k: m[k] for k in ("precision", "recall", "f1", "support")}
                      for m in class_metrics(labels, predicted, classes)},
        "confusion_matrix": matrix.tolist(),
        "pairs": ranked_pairs(matrix, classes),
    }


def evaluate_split(model: nn.Module, dataset: FaceDataset, split: str, device: torch.device,
                   tta: bool = False) -> dict:
    """Metrics of `model` (made for the dataset's task) on the labelled faces of one split of
    `dataset`."""
    predictions = predict_split(model, dataset, split, device, tta=tta)
    if len(predictions.labelled) == 0:
        raise FerError(f"dataset {dataset.name} has no labelled faces in split {split!r} "
                       f"(it has: {', '.join(dataset.present_splits()) or 'none'})")
    return metrics_from_predictions(predictions.labels, predictions.predicted,
                                    dataset.task.classes)


def format_report(metrics: dict) -> str:
    """The metrics as a plain-text report: accuracy, per-class table, confusion matrix and the
    most confused class pairs."""
    classes = metrics["classes"]
    lines = [(f"n = {metrics['n']}   accuracy = {metrics['accuracy']:.4f}   "
              f"balanced accuracy = {metrics['balanced_accuracy']:.4f}"), "",
             f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<10}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
                     f"{m['support']:>10d}")
    lines += ["", "confusion matrix (rows = true class, columns = predicted)",
              " " * 10 + "".join(f"{name[:8]:>9}" for name in classes)]
    for name, row in zip(classes, metrics["confusion_matrix"]):
        lines.append(f"{name:<10}" + "".join(f"{v:>9d}" for v in row))
    lines += ["", f"most confused pairs (top {REPORTED_PAIRS}; share = of the true class)"]
    for pair in metrics["pairs"][:REPORTED_PAIRS]:
        lines.append(f"{pair['true_name']:>10} -> {pair['pred_name']:<10}{pair['count']:>7d}"
                     f"{pair['share']:>9.1%}")
    if not metrics["pairs"]:
        lines.append("  none: every face is on the diagonal")
    return "\n".join(lines)
