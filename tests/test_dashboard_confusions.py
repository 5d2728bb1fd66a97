"""The Confusions page headless (AppTest): it renders the chosen checkpoint's matrix with the
accuracy `evaluate` reports, the chosen cell fills the gallery with exactly that cell's faces in
the chosen order, a deep link opens the right face after a fresh start, and data or checkpoints
that cannot be scored get a message; beside a cell's gallery, the cell's mean saliency as the
core computes it. Clicks on charts are pure functions here (AppTest cannot click a chart) and real
clicks in tests/browser."""

import itertools
import re
from pathlib import Path

import apptest_helpers
import numpy as np
import pytest
import torch
from apptest_helpers import APP, TIMEOUT, figure
from streamlit.testing.v1 import AppTest

from dashboard.common.clicks import cell_from_state, face_from_state, parse_cell, parse_index
from dashboard.common.memo import Memo
from dashboard.views.confusions import cell_maps
from fer_core.data.classes import CLASSES
from fer_core.data.readers import load_dataset
from fer_core.evaluation.confusion import cell_positions, confusion_counts, ranked_pairs
from fer_core.evaluation.predict import predict_split
from fer_core.evaluation.report import evaluate_split
from fer_core.explain import cell_saliency, heatmap
from fer_core.explain.cell_saliency import cached_cell_saliency, cell_mean_saliency, cell_rows
from fer_core.models.checkpoint import load_checkpoint, read_payload, save_atomic

PAGE = "views/confusions/page.py"
DATA = "builtin:300"


def open_page(**query) -> AppTest:
    return apptest_helpers.open_page(PAGE, data=DATA, **query)


def gallery_faces(at: AppTest) -> list[int]:
    return [int(v) for v in figure(at, "cm_gallery")["data"][1]["customdata"]]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture(scope="module")
def reference(dashboard_checkpoints):
    """What the page should show for tiny-a on DATA's val split, computed without the page."""
    dataset = load_dataset(DATA)
    model = load_checkpoint(dashboard_checkpoints / "tiny-a").model
    preds = predict_split(model, dataset, "val", torch.device("cpu"))
    accuracy = evaluate_split(model, dataset, "val", torch.device("cpu"))["accuracy"]
    return dataset, preds, accuracy


def test_the_page_shows_the_accuracy_evaluate_reports_and_the_matrix(dashboard_root, reference):
    _, preds, accuracy = reference
    at = open_page(run="tiny-a")
    assert metric(at, "Accuracy") == f"{accuracy:.1%}"
    assert metric(at, "Labelled faces") == f"{len(preds.labelled):,}"
    heat = figure(at, "cm_matrix")["data"][0]
    known = preds.labelled
    counts = confusion_counts(preds.labels[known], preds.predicted[known], CLASSES)
    assert [[int(v) for v in row] for row in heat["z"]] == counts.tolist()  # rows = true class
    assert heat["x"] == heat["y"] == list(CLASSES)


def test_the_default_cell_is_the_most_confused_pair_in_default_order(dashboard_root, reference):
    _, preds, _ = reference
    at = open_page(run="tiny-a")
    known = preds.labelled
    counts = confusion_counts(preds.labels[known], preds.predicted[known], CLASSES)
    top = ranked_pairs(counts, CLASSES)[0]
    assert (at.query_params["true"], at.query_params["pred"]) == (str(top["true"]),
                                                                   str(top["pred"]))
    assert gallery_faces(at) == cell_positions(preds, top["true"], top["pred"]).tolist()


@pytest.mark.parametrize("sort", ["pred_prob", "true_prob", "loss", "margin"])
def test_a_chosen_cell_fills_the_gallery_with_its_faces_in_the_chosen_order(
        dashboard_root, reference, sort):
    _, preds, _ = reference
    at = open_page(run="tiny-a")
    cells = [(t, p) for t in range(7) for p in range(7) if len(cell_positions(preds, t, p)) > 1]
    t, p = cells[0]
    at.session_state["cm_cell"] = (t, p)
    at.run()
    at.selectbox(key="cm_sort").select(sort).run()
    expected = cell_positions(preds, t, p, sort=sort)
    assert gallery_faces(at) == expected.tolist()
    assert at.subheader[0].value.endswith(f": {len(expected)} faces")


def test_an_empty_cell_says_it_is_empty(dashboard_root, reference):
    _, preds, _ = reference
    empty = next((t, p) for t in range(7) for p in range(7)
                 if not len(cell_positions(preds, t, p)))
    at = open_page(run="tiny-a")
    at.session_state["cm_cell"] = empty
    at.run()
    assert any("This cell is empty" in i.value for i in at.info)
    assert not any(c.proto.id.endswith("-cm_gallery") for c in at.get("plotly_chart"))
    assert not at.get("image")


def test_a_deep_link_opens_the_right_face_after_a_fresh_start(dashboard_root, reference):
    dataset, preds, _ = reference
    at = open_page(run="tiny-b", split="val", idx="7")
    assert any(s.value == "Face #7 of val" for s in at.subheader)
    source = str(dataset.sources[preds.rows[7]])
    assert any(source in m.value for m in at.markdown)
    assert at.query_params["idx"] == "7" and at.query_params["split"] == "val"


def test_a_bad_index_in_the_url_opens_no_face(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="999999")
    assert not any(s.value.startswith("Face #") for s in at.subheader)
    assert "idx" not in at.query_params


def test_unlabelled_data_gets_a_clear_message(dashboard_root, tmp_path):
    csv = tmp_path / "unlabelled.csv"
    csv.write_text("id,feature\n" + "".join(f"{i},{' '.join(['128'] * 2304)}\n" for i in range(4)))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"data": str(csv), "run": "tiny-a"})
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("needs labels" in w.value for w in at.warning)


def test_a_checkpoint_for_other_classes_gets_a_clear_message(dashboard_root, tmp_path,
                                                             monkeypatch):
    import shutil

    root = tmp_path / "checkpoints"
    shutil.copytree(dashboard_root / "tiny-a", root / "odd")
    payload = read_payload(root / "odd" / "best.pt")
    payload["classes"] = ["cat", "dog", "a", "b", "c", "d", "e"]
    save_atomic(payload, root / "odd" / "best.pt")
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(root))
    at = open_page(run="odd")
    assert not at.exception
    [message] = [e.value for e in at.main.error]
    assert message == (f"odd cannot score these faces: the model's classes (cat, dog, a, b, c, "
                       f"d, e) and the data's ({', '.join(CLASSES)}) share none.")


def test_clicks_are_read_back_from_plotly_selection_states():
    point = {"curve_number": 1, "point_number": 9, "customdata": [1, 2]}
    assert cell_from_state({"selection": {"points": [point]}}, 7) == (1, 2)
    assert cell_from_state({"selection": {"points": [point]}}, 2) is None  # no class 2 of 2
    old_plotly = {**point, "customdata": {"0": 3, "1": 4}}
    assert cell_from_state({"selection": {"points": [old_plotly]}}, 7) == (3, 4)
    assert cell_from_state({"selection": {"points": [{**point, "curve_number": 0}]}}, 7) is None
    assert cell_from_state({"selection": {"points": []}}, 7) is None
    assert cell_from_state(None, 7) is None
    assert face_from_state({"selection": {"points": [{"curve_number": 1, "customdata": 17}]}}) == 17
    assert face_from_state({"selection": {"points": [point]}}) is None  # a cell, not a face


def test_url_values_are_validated():
    assert parse_cell(("2", "5"), 7) == (2, 5) and parse_cell(("2", "7"), 8) == (2, 7)
    assert parse_cell(("2", "7"), 7) is None and parse_cell((None, "1"), 7) is None
    assert parse_cell(("-1", "0"), 7) is None and parse_cell(("x", "0"), 7) is None
    assert parse_index("12", 13) == 12
    assert parse_index("13", 13) is None and parse_index("-1", 13) is None
    assert parse_index("1e9", 13) is None and parse_index(None, 13) is None


def test_a_second_checkpoint_shows_the_difference_and_the_disagreements(dashboard_root,
                                                                        reference):
    _, _, accuracy = reference
    at = open_page(run="tiny-a")
    at.selectbox(key="cm_compare").select("tiny-b").run()
    assert not at.exception
    assert metric(at, "tiny-b accuracy") == f"{accuracy:.1%}"  # tiny-b is a copy of tiny-a
    assert metric(at, "Faces they disagree on") == "0"
    difference = figure(at, "cm_compare_difference")["data"][0]["z"]
    assert all(v == 0 for row in difference for v in row)


def test_another_split_closes_the_opened_face(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="3")
    assert any(s.value == "Face #3 of val" for s in at.subheader)
    at.segmented_control(key="cm_split").set_value("train").run()
    assert not at.exception
    assert at.query_params["split"] == "train" and "idx" not in at.query_params


def test_the_label_error_list_spans_all_cells(tmp_path, monkeypatch):
    import shutil

    shipped = Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"
    shutil.copytree(shipped, tmp_path / "builtin-cnn3", ignore=shutil.ignore_patterns("last.pt"))
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(tmp_path))
    from fer_core.evaluation.confusion import likely_label_errors

    dataset = load_dataset("builtin:2000")
    preds = predict_split(load_checkpoint(shipped).model, dataset, "val", torch.device("cpu"))
    expected = likely_label_errors(preds, 0.6)
    assert len({(preds.labels[i], preds.predicted[i]) for i in expected}) > 1  # several cells
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"data": "builtin:2000", "run": "builtin-cnn3"})
    at.run()
    at.switch_page(PAGE).run()
    assert len(at.get("image")) == 1  # the cell's mean saliency
    at.toggle(key="cm_errors").set_value(True).run()
    at.slider(key="cm_threshold").set_value(0.6).run()
    title = f"Likely label errors (confidence ≥ 0.60): {len(expected)} faces"
    assert at.subheader[0].value == title
    assert gallery_faces(at) == expected[:100].tolist()
    assert not at.get("image")  # not one cell: no cell map
    assert not any(c.value.startswith("Mean ") for c in at.caption)


# ---- the cell's mean saliency ------------------------------------------------------------------

def column_beside_gallery(at: AppTest):
    """The column to the right of the one that holds the gallery."""
    columns = list(at.columns)
    for left, right in itertools.pairwise(columns):
        if any(c.proto.id.endswith("-cm_gallery") for c in left.get("plotly_chart")):
            return right
    raise AssertionError("no gallery in a column")


def map_count(at: AppTest) -> int:
    """The face count the map's caption gives."""
    caption = next(c.value for c in at.caption if c.value.startswith("Mean "))
    return int(re.search(r"over (?:the|its) ([\d,]+) faces?", caption)[1].replace(",", ""))


@pytest.fixture
def shown_maps(monkeypatch):
    """The maps the page colours, as they reach `colorize`; no map is in memory beforehand, so
    the page reads (or writes) this test's disk cache."""
    monkeypatch.setattr(cell_maps, "MAPS", Memo("t", budget=1 << 20))
    shown = []
    real = heatmap.colorize
    monkeypatch.setattr(heatmap, "colorize",
                        lambda values, signed, *a: shown.append((values, signed)) or real(
                            values, signed, *a))
    return shown


@pytest.mark.parametrize("diagonal", [False, True], ids=["off-diagonal", "diagonal"])
def test_the_cells_mean_saliency_is_shown_beside_its_gallery(dashboard_root, reference,
                                                            shown_maps, monkeypatch, diagonal):
    dataset, preds, _ = reference
    known = preds.labelled
    counts = confusion_counts(preds.labels[known], preds.predicted[known], CLASSES)
    if diagonal:
        t = p = int(counts.diagonal().argmax())
    else:
        t, p = ranked_pairs(counts, CLASSES)[0]["true"], ranked_pairs(counts, CLASSES)[0]["pred"]
    at = open_page(run="tiny-a")
    at.session_state["cm_cell"] = (t, p)
    at.run()
    assert not at.exception
    beside = column_beside_gallery(at)
    assert len(beside.get("image")) == 1 and len(at.get("image")) == 1
    assert map_count(at) == counts[t, p] > 0
    true, pred = CLASSES[t], CLASSES[p]
    caption = (f"Mean |gradient| of logit {true} over its" if diagonal
               else f"Mean gradient of logit {pred} − logit {true} over the")
    assert any(c.value.startswith(caption) for c in beside.caption)

    ckpt = load_checkpoint(dashboard_root / "tiny-a")
    faces = torch.from_numpy(dataset.images[cell_rows(preds, t, p)])
    expected = cell_mean_saliency(ckpt.model, faces, t, p).numpy()
    values, signed = shown_maps[-1]
    assert signed is not diagonal
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7)

    def no_compute(*args, **kwargs):
        raise AssertionError("computed although cached")

    monkeypatch.setattr(cell_saliency, "cell_mean_saliency", no_compute)
    stored = cached_cell_saliency(ckpt.model, ckpt.path, dataset, preds, t, p)  # on disk
    np.testing.assert_array_equal(stored, values)
    monkeypatch.setattr(cell_maps, "cached_cell_saliency", no_compute)
    at.run()  # from memory now
    assert not at.exception and len(column_beside_gallery(at).get("image")) == 1



def test_a_damaged_predictions_file_is_computed_again_with_a_note(dashboard_root, reference,
                                                                  monkeypatch):
    """As after a kill -9 of the server and a restart, or a disk that filled up: the page shows
    the same matrix, and a note that the file was computed again."""
    from dashboard.common import state
    from fer_core import cache

    monkeypatch.setattr(state, "PREDICTIONS", Memo("t", budget=1 << 20))
    open_page(run="tiny-a")
    entries = list(cache.cache_dir().glob("predictions-*.npz"))
    assert entries
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:100])
    monkeypatch.setattr(state, "PREDICTIONS", Memo("t", budget=1 << 20))  # a fresh server
    at = open_page(run="tiny-a")
    assert metric(at, "Accuracy") == f"{reference[2]:.1%}"
    notes = [t.value for t in at.toast]
    assert any("could not be read" in note and "computing it again" in note for note in notes)
