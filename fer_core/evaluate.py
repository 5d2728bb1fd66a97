"""Predictions and metrics: accuracy, per-class precision/recall/F1, confusion matrix."""

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch import nn

from .classes import CLASSES, NUM_CLASSES
from .dataset import FaceDataset
from .errors import FerError
from .predict import predict_split


def metrics_from_predictions(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """n, accuracy, per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    k = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=k, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float((labels == predicted).mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(CLASSES)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=k).tolist(),
    }


def evaluate_split(model: nn.Module, dataset: FaceDataset, split: str, device: torch.device,
                   tta: bool = False) -> dict:
    """Metrics of `model` on the labelled faces of one split of `dataset`."""
    predictions = predict_split(model, dataset, split, device, tta=tta)
    known = predictions.labelled
    if len(known) == 0:
        raise FerError(f"dataset {dataset.name} has no labelled faces in split {split!r} "
                       f"(it has: {', '.join(dataset.present_splits()) or 'none'})")
    return metrics_from_predictions(predictions.labels[known], predictions.predicted[known])


def format_report(metrics: dict) -> str:
    """The metrics as a plain-text report: accuracy, per-class table, confusion matrix."""
    lines = [f"n = {metrics['n']}   accuracy = {metrics['accuracy']:.4f}", "",
             f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<10}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}"
                     f"{m['support']:>10d}")
    lines += ["", "confusion matrix (rows = true class, columns = predicted)",
              " " * 10 + "".join(f"{name[:8]:>9}" for name in CLASSES)]
    for name, row in zip(CLASSES, metrics["confusion_matrix"]):
        lines.append(f"{name:<10}" + "".join(f"{v:>9d}" for v in row))
    return "\n".join(lines)
