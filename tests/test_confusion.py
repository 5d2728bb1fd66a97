"""fer_core.evaluation.confusion on hand-computed examples: orientation, normalizations, cell
sorting, ranked pairs, label errors, calibration, PR curves and the CSV exports."""

import csv
import io
import warnings

import numpy as np
import pytest

from fer_core.data.task import FER2013
from fer_core.errors import FerError
from fer_core.evaluation import confusion
from fer_core.evaluation.predict import Predictions

CLASSES = FER2013.classes
# Eleven val faces: (label, probabilities of Angry, Disgust, Fear; the other classes get 0).
# Face 8 has no label. Faces 1 and 10 are identical, to check that ties keep position order.
FACES = [
    (0, (0.70, 0.20, 0.10)),  # 0: Angry  -> Angry
    (0, (0.30, 0.60, 0.10)),  # 1: Angry  -> Disgust
    (0, (0.10, 0.50, 0.40)),  # 2: Angry  -> Disgust
    (0, (0.25, 0.70, 0.05)),  # 3: Angry  -> Disgust
    (1, (0.10, 0.50, 0.40)),  # 4: Disgust -> Disgust
    (1, (0.05, 0.90, 0.05)),  # 5: Disgust -> Disgust
    (2, (0.95, 0.00, 0.05)),  # 6: Fear   -> Angry
    (2, (0.00, 0.00, 1.00)),  # 7: Fear   -> Fear
    (-1, (0.00, 1.00, 0.00)),  # 8: unlabelled
    (1, (0.55, 0.00, 0.45)),  # 9: Disgust -> Angry (probability 0 for its true class)
    (0, (0.30, 0.60, 0.10)),  # 10: Angry -> Disgust, same as face 1
]
# rows = true class: Angry 1 right, 4 taken for Disgust; Disgust 1 -> Angry, 2 right;
# Fear 1 -> Angry, 1 right. Asymmetric: Angry -> Disgust (4) but Disgust -> Angry (1).
EXPECTED_TOP_LEFT = [[1, 4, 0], [1, 2, 0], [1, 0, 1]]


def _predictions(faces=FACES, split="val", first_row=100) -> Predictions:
    probs = np.zeros((len(faces), len(CLASSES)), dtype=np.float32)
    probs[:, :3] = [p for _, p in faces]
    return Predictions(split=split, rows=np.arange(first_row, first_row + len(faces)),
                       labels=np.array([label for label, _ in faces], dtype=np.int64),
                       probs=probs)


@pytest.fixture
def pred() -> Predictions:
    return _predictions()


@pytest.fixture
def counts(pred) -> np.ndarray:
    return confusion.confusion_counts(pred.labels, pred.predicted, CLASSES)


def test_counts_put_true_classes_in_rows_and_skip_unknown_labels(counts):
    assert counts.shape == (7, 7) and counts.dtype == np.int64
    assert counts[:3, :3].tolist() == EXPECTED_TOP_LEFT
    assert counts[0, 1] == 4 and counts[1, 0] == 1  # swapped rows and columns would fail here
    assert counts.sum(axis=1).tolist() == [5, 3, 2, 0, 0, 0, 0]  # row sums = labelled faces
    assert counts.sum() == 10  # face 8 (no label) is not counted
    assert counts[3:].sum() == 0 and counts[:, 3:].sum() == 0


def test_row_normalization_is_recall_and_column_normalization_is_precision(pred, counts):
    rows = confusion.normalize(counts, "row")
    assert rows[:3, :3] == pytest.approx(
        np.array([[0.2, 0.8, 0], [1 / 3, 2 / 3, 0], [0.5, 0, 0.5]]))
    columns = confusion.normalize(counts, "column")
    assert columns[:3, :3] == pytest.approx(
        np.array([[1 / 3, 4 / 6, 0], [1 / 3, 2 / 6, 0], [1 / 3, 0, 1]]))
    metrics = confusion.class_metrics(pred.labels, pred.predicted, CLASSES)
    assert np.diag(rows) == pytest.approx([m["recall"] for m in metrics])
    assert np.diag(columns) == pytest.approx([m["precision"] for m in metrics])


def test_empty_rows_and_columns_normalize_to_zeros_and_counts_to_a_float_copy(counts):
    for mode in ("row", "column"):
        normalized = confusion.normalize(counts, mode)
        assert not np.isnan(normalized).any() and normalized[3:, 3:].sum() == 0
    plain = confusion.normalize(counts, "counts")
    assert plain.dtype == np.float64 and np.array_equal(plain, counts)
    plain[0, 0] = 99
    assert counts[0, 0] == 1
    with pytest.raises(FerError, match="unknown normalization 'rows'"):
        confusion.normalize(counts, "rows")


def test_class_metrics_in_class_order(pred):
    metrics = confusion.class_metrics(pred.labels, pred.predicted, CLASSES)
    assert [m["class"] for m in metrics] == list(CLASSES)
    angry, disgust = metrics[0], metrics[1]
    assert angry["support"] == 5 and angry["recall"] == pytest.approx(0.2)
    assert angry["precision"] == pytest.approx(1 / 3)
    assert disgust["precision"] == pytest.approx(1 / 3)
    assert disgust["recall"] == pytest.approx(2 / 3)
    assert disgust["f1"] == pytest.approx(2 * (1 / 3) * (2 / 3) / (1 / 3 + 2 / 3))
    assert metrics[6] == {"class": "Neutral", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                          "support": 0}


def test_summary_averages_recall_over_present_classes_only(pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = confusion.summary(pred.labels, pred.predicted)
    assert result["n"] == 10 and result["accuracy"] == pytest.approx(0.4)
    assert result["balanced_accuracy"] == pytest.approx((1 / 5 + 2 / 3 + 1 / 2) / 3)
    nothing = confusion.summary(np.array([-1, -1]), np.array([0, 3]))
    assert nothing == {"n": 0, "accuracy": None, "balanced_accuracy": None}


# Angry -> Disgust holds faces 1, 2, 3 and 10 (face 10 equals face 1):
#   pred_prob 0.6 0.5 0.7 0.6; true_prob 0.3 0.1 0.25 0.3; margin 0.3 0.4 0.45 0.3.
@pytest.mark.parametrize("sort,descending,expected", [
    (None, None, [3, 1, 10, 2]),          # default off the diagonal: pred_prob, descending
    ("pred_prob", None, [3, 1, 10, 2]),
    ("pred_prob", False, [2, 1, 10, 3]),
    ("true_prob", None, [1, 10, 3, 2]),   # descending off the diagonal
    ("true_prob", False, [2, 3, 1, 10]),
    ("loss", None, [2, 3, 1, 10]),        # -log(true_prob), descending
    ("margin", None, [3, 2, 1, 10]),
    ("margin", False, [1, 10, 2, 3]),
])
def test_cell_positions_sort_by_each_key_with_ties_in_position_order(pred, sort, descending,
                                                                     expected):
    positions = confusion.cell_positions(pred, 0, 1, sort=sort, descending=descending)
    assert positions.tolist() == expected


def test_diagonal_cells_show_the_least_confident_hits_first(pred):
    assert confusion.cell_positions(pred, 1, 1).tolist() == [4, 5]
    assert confusion.cell_positions(pred, 1, 1, "true_prob").tolist() == [4, 5]
    assert confusion.cell_positions(pred, 1, 1, descending=True).tolist() == [5, 4]
    assert confusion.cell_positions(pred, 1, 1, "pred_prob").tolist() == [5, 4]


def test_cell_positions_of_empty_cells_and_a_zero_probability_loss(pred):
    assert confusion.cell_positions(pred, 6, 6).tolist() == []
    assert confusion.cell_positions(pred, 1, 2).tolist() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(0) would warn
        assert confusion.cell_positions(pred, 1, 0, "loss").tolist() == [9]


def test_cell_positions_refuse_unknown_keys_and_classes(pred):
    with pytest.raises(FerError, match="unknown sort key 'confidence'"):
        confusion.cell_positions(pred, 0, 1, "confidence")
    with pytest.raises(FerError, match="class index"):
        confusion.cell_positions(pred, 7, 1)
    with pytest.raises(FerError, match="class index"):
        confusion.cell_positions(pred, 0, -1)


def test_ranked_pairs_by_count_then_true_then_predicted_class():
    matrix = np.zeros((7, 7), dtype=np.int64)
    matrix[3, 4] = matrix[1, 5] = matrix[1, 2] = 2
    matrix[0, 6], matrix[2, 2], matrix[6, 0], matrix[1, 1] = 5, 9, 1, 4
    pairs = confusion.ranked_pairs(matrix, CLASSES)
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [
        (0, 6, 5), (1, 2, 2), (1, 5, 2), (3, 4, 2), (6, 0, 1)]
    assert pairs[1]["share"] == pytest.approx(2 / 8)  # row 1 holds 2 + 2 + 4 faces
    assert pairs[0]["share"] == 1.0
    assert pairs[0]["true_name"] == "Angry" and pairs[0]["pred_name"] == "Neutral"
    assert all(isinstance(p["true"], int) and isinstance(p["count"], int) for p in pairs)


def test_ranked_pairs_of_the_example_keep_orientation(counts):
    pairs = confusion.ranked_pairs(counts, CLASSES)
    assert [(p["true_name"], p["pred_name"], p["count"]) for p in pairs] == [
        ("Angry", "Disgust", 4), ("Disgust", "Angry", 1), ("Fear", "Angry", 1)]
    assert [p["share"] for p in pairs] == pytest.approx([4 / 5, 1 / 3, 1 / 2])
    assert confusion.ranked_pairs(np.eye(7, dtype=np.int64), CLASSES) == []


def test_likely_label_errors_are_confident_mistakes_most_confident_first(pred):
    # wrong and labelled: 1 (0.6), 2 (0.5), 3 (0.7), 6 (0.95), 9 (0.55), 10 (0.6)
    assert confusion.likely_label_errors(pred).tolist() == [6]
    assert confusion.likely_label_errors(pred, 0.58).tolist() == [6, 3, 1, 10]
    assert confusion.likely_label_errors(pred, 0.0).tolist() == [6, 3, 1, 10, 9, 2]
    assert confusion.likely_label_errors(pred, 0.96).tolist() == []
    with pytest.raises(FerError, match="threshold"):
        confusion.likely_label_errors(pred, 1.5)


def test_reliability_bins_and_expected_calibration_error():
    rest = [0.0] * 5
    probs = np.array([
        [0.9, 0.1, *rest],                        # conf 0.9, right
        [0.9, 0.1, *rest],                        # conf 0.9, wrong (label 1)
        [0.35, 0.65, *rest],                      # conf 0.65, right
        [0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05],    # conf 0.3, right
        [1.0, 0.0, *rest],                        # conf 1.0, right: the last bin holds 1
        [0.0, 1.0, *rest],                        # no label: left out
    ])
    labels = np.array([0, 1, 1, 0, 0, -1])
    result = confusion.reliability(probs, labels, bins=5)
    assert result["edges"] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert result["count"].tolist() == [0, 1, 0, 1, 3]
    nan = np.nan
    assert result["confidence"] == pytest.approx([nan, 0.3, nan, 0.65, 2.8 / 3], nan_ok=True)
    assert result["accuracy"] == pytest.approx([nan, 1, nan, 1, 2 / 3], nan_ok=True)
    expected_ece = 1 / 5 * 0.7 + 1 / 5 * 0.35 + 3 / 5 * abs(2 / 3 - 2.8 / 3)
    assert result["ece"] == pytest.approx(expected_ece)


def test_a_perfectly_calibrated_bin_has_zero_error():
    probs = np.array([[0.75, 0.25, 0, 0, 0, 0, 0]] * 4)
    result = confusion.reliability(probs, np.array([0, 0, 0, 1]), bins=4)
    assert result["count"].tolist() == [0, 0, 4, 0] and result["ece"] == pytest.approx(0)


def test_pr_curves_score_a_perfect_classifier_1_and_skip_absent_classes():
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 3, -1])
    probs = np.eye(7)[np.where(labels >= 0, labels, 6)] * 0.9 + 0.1 / 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curves = confusion.pr_curves(probs, labels, CLASSES)
    assert [c["class"] for c in curves] == list(CLASSES)
    assert [c["ap"] for c in curves[:6]] == [1.0] * 6
    assert curves[6]["ap"] is None and len(curves[6]["precision"]) == 0
    assert curves[0]["precision"][-1] == 1.0 and curves[0]["recall"][0] == 1.0


def test_pr_curve_average_precision_on_a_ranking():
    # Angry scores rank the faces: Angry, Disgust, Angry -> AP = 1/2 * 1 + 1/2 * 2/3
    probs = np.array([[0.9, 0.1, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0, 0],
                      [0.3, 0.7, 0, 0, 0, 0, 0]])
    curves = confusion.pr_curves(probs, np.array([0, 1, 0]), CLASSES)
    assert curves[0]["ap"] == pytest.approx(0.5 + 1 / 3)


def test_disagreements_between_two_models_on_the_same_faces(pred):
    probs = pred.probs.copy()
    probs[[0, 7]] = probs[[7, 0]]  # faces 0 and 7 swap predictions (Angry <-> Fear)
    probs[5] = probs[4]            # same class, other probabilities: no disagreement
    other = Predictions(split="val", rows=pred.rows, labels=pred.labels, probs=probs)
    assert confusion.disagreements(pred, other).tolist() == [0, 7]
    assert confusion.disagreements(pred, pred).tolist() == []
    with pytest.raises(FerError, match="different faces"):
        confusion.disagreements(pred, _predictions(first_row=0))
    with pytest.raises(FerError, match="different faces"):
        confusion.disagreements(pred, _predictions(split="test"))


def test_matrix_csv_has_true_classes_in_rows(counts):
    rows = list(csv.reader(io.StringIO(confusion.matrix_csv(counts, CLASSES))))
    assert rows[0] == ["true\\pred", *CLASSES]
    assert [row[0] for row in rows[1:]] == list(CLASSES)
    assert rows[1][1:4] == ["1", "4", "0"] and rows[2][1:4] == ["1", "2", "0"]
    normalized = confusion.normalize(counts, "row")
    parsed = list(csv.reader(io.StringIO(confusion.matrix_csv(normalized, CLASSES))))[1:]
    assert np.array([[float(v) for v in row[1:]] for row in parsed]).tolist() == \
        normalized.tolist()


def test_label_errors_csv_traces_each_face_to_its_source(pred):
    sources = [f"line {i + 2}" for i in range(120)]
    sources[106] = "faces/a,b.png"  # the source of face 6 (split row 100 + 6)
    sources = np.array(sources)
    text = confusion.label_errors_csv(pred, confusion.likely_label_errors(pred, 0.58), sources,
                                      CLASSES)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["split", "index", "source", "label", "prediction", "confidence"]
    assert [r["index"] for r in rows] == ["6", "3", "1", "10"]
    assert rows[0] == {"split": "val", "index": "6", "source": "faces/a,b.png", "label": "Fear",
                       "prediction": "Angry", "confidence": "0.9500"}
    assert rows[1]["source"] == "line 105" and rows[1]["label"] == "Angry"
    assert rows[1]["prediction"] == "Disgust" and rows[1]["confidence"] == "0.7000"


# Five classes in another order: the matrix, its names and its CSV follow the classes given.
FIVE = ("surprise", "fear", "happiness", "sadness", "anger")


def test_a_five_class_task_gets_a_five_by_five_matrix_named_by_its_classes():
    labels, predicted = np.array([0, 0, 1, 4, 4, 4, -1]), np.array([0, 3, 1, 4, 2, 2, 1])
    counts = confusion.confusion_counts(labels, predicted, FIVE)
    assert counts.shape == (5, 5) and counts.sum() == 6
    pairs = confusion.ranked_pairs(counts, FIVE)
    assert [(p["true_name"], p["pred_name"], p["count"]) for p in pairs] == [
        ("anger", "happiness", 2), ("surprise", "sadness", 1)]
    assert [m["class"] for m in confusion.class_metrics(labels, predicted, FIVE)] == list(FIVE)
    rows = list(csv.reader(io.StringIO(confusion.matrix_csv(counts, FIVE))))
    assert rows[0] == ["true\\pred", *FIVE] and [r[0] for r in rows[1:]] == list(FIVE)
    probs = np.eye(5)[predicted]
    assert [c["class"] for c in confusion.pr_curves(probs, labels, FIVE)] == list(FIVE)


def test_classes_beyond_the_task_and_a_matrix_of_another_size_are_refused():
    with pytest.raises(FerError, match="class index 5 is beyond the 5 classes"):
        confusion.confusion_counts(np.array([0, 5]), np.array([0, 1]), FIVE)
    with pytest.raises(FerError, match="expected a 5 x 5 matrix"):
        confusion.ranked_pairs(np.zeros((7, 7), dtype=np.int64), FIVE)
    five = Predictions(split="val", rows=np.arange(2), labels=np.array([0, 4]),
                       probs=np.eye(5, dtype=np.float32)[[0, 4]])
    assert confusion.cell_positions(five, 4, 4).tolist() == [1]
    with pytest.raises(FerError, match="class index must be 0 to 4, got 5"):
        confusion.cell_positions(five, 5, 0)
