"""Confusions: the matrix (rows = true class, columns = predicted), its normalizations, per-class
and summary metrics, the faces behind each cell, ranked class pairs, likely label errors,
calibration (reliability diagram, ECE), precision-recall curves, and CSV exports.

Everything here works on numpy arrays and `Predictions`; a position is a face's 0-based index
within its split (into `Predictions.labels` and `.probs`), as in a dashboard deep link. Faces with
an unknown label (-1) are left out of every metric. `classes` are the task's class names in
output order (`dataset.task.classes`, `checkpoint.task.classes`): they name the rows and columns
and their count sizes the matrix.
"""

import csv
import io
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from ..errors import FerError
from .predict import Predictions

NORMALIZATIONS = ("counts", "row", "column")
SORT_KEYS = ("pred_prob", "true_prob", "loss", "margin")
_MIN_PROB = 1e-12  # floor for log(probability): a face scored 0 for its class gets a finite loss


def confusion_counts(labels: np.ndarray, predicted: np.ndarray,
                     classes: Sequence[str]) -> np.ndarray:
    """(K, K) int64 counts for the K `classes`, rows = true class, columns = predicted; unknown
    labels are skipped."""
    labels, predicted = _known(labels, predicted)
    k = len(classes)
    largest = int(np.concatenate([labels, predicted]).max(initial=-1))
    if largest >= k:
        raise FerError(f"class index {largest} is beyond the {k} classes ({', '.join(classes)})")
    flat = np.bincount(labels * k + predicted, minlength=k * k)
    return flat.reshape(k, k).astype(np.int64)


def normalize(matrix: np.ndarray, mode: str) -> np.ndarray:
    """The matrix as floats: as is ("counts"), each row over its sum ("row": recall on the
    diagonal) or each column over its sum ("column": precision on the diagonal). An empty row or
    column stays zeros, never NaN."""
    if mode not in NORMALIZATIONS:
        raise FerError(f"unknown normalization {mode!r} (expected one of "
                       f"{', '.join(NORMALIZATIONS)})")
    matrix = np.asarray(matrix, dtype=np.float64)
    if mode == "counts":
        return matrix.copy()
    totals = matrix.sum(axis=1 if mode == "row" else 0, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def class_metrics(labels: np.ndarray, predicted: np.ndarray,
                  classes: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support of each of `classes`, in their order (0 where
    undefined)."""
    labels, predicted = _known(labels, predicted)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(classes))), zero_division=0)
    return [{"class": name, "precision": float(precision[k]), "recall": float(recall[k]),
             "f1": float(f1[k]), "support": int(support[k])}
            for k, name in enumerate(classes)]


def summary(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """n, accuracy and balanced accuracy (mean recall over the classes present); both None when
    no face has a label."""
    labels, predicted = _known(labels, predicted)
    n = len(labels)
    if n == 0:
        return {"n": 0, "accuracy": None, "balanced_accuracy": None}
    hits = labels == predicted
    support = np.bincount(labels)
    present = support > 0
    recall = np.bincount(labels, weights=hits)[present] / support[present]
    return {"n": n, "accuracy": float(hits.mean()), "balanced_accuracy": float(recall.mean())}


def cell_positions(pred: Predictions, true: int, predicted: int, sort: str | None = None,
                   descending: bool | None = None) -> np.ndarray:
    """Positions of the labelled faces of class `true` predicted as `predicted`, sorted.

    Sort keys: "pred_prob" (probability of the predicted class), "true_prob" (of the true
    class), "loss" (-log of the true class's probability) and "margin" (predicted minus true
    probability). By default an off-diagonal cell shows its most confident mistakes first
    ("pred_prob", descending) and a diagonal cell its least confident hits first ("true_prob",
    ascending). `descending=None` means descending, except "true_prob" on the diagonal. Ties keep
    position order.
    """
    true, predicted = (_class_index(k, pred.probs.shape[1]) for k in (true, predicted))
    diagonal = true == predicted
    sort = sort or ("true_prob" if diagonal else "pred_prob")
    if sort not in SORT_KEYS:
        raise FerError(f"unknown sort key {sort!r} (expected one of {', '.join(SORT_KEYS)})")
    if descending is None:
        descending = not (diagonal and sort == "true_prob")
    positions = np.flatnonzero((pred.labels == true) & (pred.predicted == predicted))
    values = _sort_values(pred.probs[positions].astype(np.float64), true, predicted, sort)
    return positions[np.lexsort((positions, -values if descending else values))]


def _sort_values(probs: np.ndarray, true: int, predicted: int, sort: str) -> np.ndarray:
    if sort == "pred_prob":
        return probs[:, predicted]
    if sort == "true_prob":
        return probs[:, true]
    if sort == "loss":
        return -np.log(np.clip(probs[:, true], _MIN_PROB, 1.0))
    return probs[:, predicted] - probs[:, true]


def ranked_pairs(matrix: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """The non-empty off-diagonal cells of the matrix of `classes`, most faces first (ties: true
    class, then predicted).

    `share` is the cell's fraction of its true class: how often class `true` is taken for
    `pred`.
    """
    matrix = _square(matrix, classes)
    totals = matrix.sum(axis=1)
    k = len(classes)
    cells = [(int(matrix[t, p]), t, p) for t in range(k) for p in range(k)
             if t != p and matrix[t, p] > 0]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [{"true": t, "pred": p, "count": count, "share": float(count / totals[t]),
             "true_name": classes[t], "pred_name": classes[p]}
            for count, t, p in cells]


def likely_label_errors(pred: Predictions, threshold: float = 0.9) -> np.ndarray:
    """Positions of labelled faces the model gets wrong with a top probability >= `threshold`,
    most confident first (ties by position): a confident model that disagrees with the label is
    often right about a mislabelled face."""
    if not 0.0 <= threshold <= 1.0:
        raise FerError(f"threshold must be between 0 and 1, got {threshold}")
    confidence = pred.probs.max(axis=1).astype(np.float64)
    wrong = (pred.labels >= 0) & (pred.predicted != pred.labels)
    positions = np.flatnonzero(wrong & (confidence >= threshold))
    return positions[np.lexsort((positions, -confidence[positions]))]


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Reliability-diagram data and the expected calibration error (Guo et al. 2017, "On
    Calibration of Modern Neural Networks") of the labelled faces.

    Confidence is the top probability, correct means the top class is the label. Bins are
    equal-width over [0, 1], each holding (lower, upper] (the first also holds 0). Empty bins have
    NaN confidence and accuracy; ECE = sum over bins of count / n * |accuracy - confidence|, NaN
    when no face has a label.
    """
    if bins < 1:
        raise FerError(f"bins must be at least 1, got {bins}")
    known = labels >= 0
    probs = np.asarray(probs, dtype=np.float64)[known]
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels[known]).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(which, minlength=bins)
    filled = count > 0
    mean_confidence = _bin_means(which, confidence, count)
    accuracy = _bin_means(which, correct, count)
    n = count.sum()
    gaps = np.abs(accuracy[filled] - mean_confidence[filled])
    ece = float((count[filled] / n * gaps).sum()) if n else float("nan")
    return {"edges": edges, "confidence": mean_confidence, "accuracy": accuracy,
            "count": count.astype(np.int64), "ece": ece}


def _bin_means(which: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    sums = np.bincount(which, weights=values, minlength=len(count))
    return np.divide(sums, count, out=np.full(len(count), np.nan), where=count > 0)


def pr_curves(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """One-vs-rest precision-recall curve and average precision of each of `classes` (the
    columns of `probs`), over the labelled faces. A class without positive faces has empty
    curves and `ap` None (sklearn would warn and return a meaningless curve)."""
    known = labels >= 0
    probs, labels = np.asarray(probs)[known], labels[known]
    curves = []
    for k, name in enumerate(classes):
        positive = labels == k
        if not positive.any():
            curves.append({"class": name, "precision": np.array([]), "recall": np.array([]),
                           "ap": None})
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, k])
        curves.append({"class": name, "precision": precision, "recall": recall,
                       "ap": float(average_precision_score(positive, probs[:, k]))})
    return curves


def disagreements(a: Predictions, b: Predictions) -> np.ndarray:
    """Positions where two models' top classes differ; both must cover the same split rows."""
    if a.split != b.split or not np.array_equal(a.rows, b.rows):
        raise FerError(f"cannot compare predictions of different faces (splits {a.split!r} "
                       f"and {b.split!r}, {len(a.rows)} and {len(b.rows)} faces)")
    return np.flatnonzero(a.predicted != b.predicted)


def matrix_csv(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The matrix of `classes` as CSV: a header `true\\pred,<class>,...`, then one row per true
    class."""
    matrix = _square(matrix, classes)
    return _csv([["true\\pred", *classes]]
                + [[name, *map(str, row)] for name, row in zip(classes, matrix.tolist())])


def label_errors_csv(pred: Predictions, positions: np.ndarray, sources: np.ndarray,
                     classes: Sequence[str]) -> str:
    """The faces at `positions` as CSV: split, index (position within the split), source (CSV
    line or file name, from the dataset's `sources`), label, prediction (named by `classes`),
    confidence."""
    header = ["split", "index", "source", "label", "prediction", "confidence"]
    rows = []
    for position in np.asarray(positions, dtype=np.int64).tolist():
        label = int(pred.labels[position])
        probs = pred.probs[position]
        rows.append([pred.split, position, str(sources[pred.rows[position]]),
                     classes[label] if label >= 0 else "", classes[int(probs.argmax())],
                     f"{float(probs.max()):.4f}"])
    return _csv([header, *rows])


def _csv(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def _known(labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (label, prediction) pairs of the faces whose label is known, as int64."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if labels.shape != predicted.shape:
        raise FerError(f"{len(labels)} labels but {len(predicted)} predictions")
    known = labels >= 0
    return labels[known], predicted[known]


def _class_index(value: int, count: int) -> int:
    if not 0 <= int(value) < count:
        raise FerError(f"class index must be 0 to {count - 1}, got {value}")
    return int(value)


def _square(matrix: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    matrix, k = np.asarray(matrix), len(classes)
    if matrix.shape != (k, k):
        raise FerError(f"expected a {k} x {k} matrix (one row and column per class), got shape "
                       f"{matrix.shape}")
    return matrix
