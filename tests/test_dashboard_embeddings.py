"""The Embeddings page headless (AppTest): it renders every method and colouring with the
coordinates `embed_split` computes, a selection fills the gallery with exactly the chosen faces,
a deep link opens a face with its nearest neighbours after a fresh start, and bad links get a
message. Clicks on the scatter are a pure function here (AppTest cannot click a chart) and real
clicks in tests/browser."""


import apptest_helpers
import numpy as np
import pytest
import torch
from apptest_helpers import APP, array, figure
from streamlit.testing.v1 import AppTest

from dashboard.common.clicks import faces_from_state
from fer_core.data.readers import load_dataset
from fer_core.explain.embeddings import available_methods, embed_split, nearest_neighbours
from fer_core.models.checkpoint import load_checkpoint, resolve_checkpoint_path

PAGE = "views/embeddings/page.py"
DATA = "builtin:300"
TIMEOUT = 180
COLOURINGS = ("true", "pred", "correct", "confidence")


def open_page(**query) -> AppTest:
    return apptest_helpers.open_page(PAGE, timeout=TIMEOUT,
                                     **{"data": DATA, "run": "tiny-a", **query})


def scatter_points(at: AppTest) -> dict[int, tuple[float, float]]:
    """Each face of the scatter's class traces: position -> (x, y)."""
    points = {}
    for trace in figure(at, "em_scatter")["data"]:
        if "legendgroup" not in trace:
            continue  # the label-error rings and the chosen face
        custom = array(trace["customdata"]).reshape(-1, 2)
        for p, x, y in zip(custom[:, 0], array(trace["x"]), array(trace["y"])):
            points[int(p)] = (float(x), float(y))
    return points


def gallery_faces(at: AppTest, key: str) -> list[int]:
    return [int(v) for v in figure(at, key)["data"][1]["customdata"]]


@pytest.fixture(scope="module")
def tiny_a(dashboard_checkpoints):
    dataset = load_dataset(DATA)
    path = resolve_checkpoint_path(dashboard_checkpoints / "tiny-a")
    return dataset, path, load_checkpoint(path).model


@pytest.mark.parametrize("method", available_methods())
def test_the_page_renders_every_colouring_with_the_computed_coordinates(dashboard_root, tiny_a,
                                                                        method):
    dataset, path, model = tiny_a
    expected = embed_split(model, path, dataset, "val", method, torch.device("cpu"))
    at = open_page(method=method)
    for colour in COLOURINGS:
        at.segmented_control(key="em_colour").set_value(colour).run()
        assert not at.exception, [e.value for e in at.exception]
        points = scatter_points(at)
        assert sorted(points) == list(range(len(expected.xy)))
        np.testing.assert_allclose([points[i] for i in range(len(points))], expected.xy,
                                   rtol=1e-6)
        layout = figure(at, "em_scatter")["layout"]
        assert ("coloraxis" in layout) == (colour == "confidence")
        assert at.query_params["colour"] == colour and at.query_params["method"] == method


def test_the_legend_groups_follow_the_colouring(dashboard_root):
    at = open_page(colour="pred")
    traces = [t for t in figure(at, "em_scatter")["data"] if "legendgroup" in t]
    shown = [t["name"] for t in traces if t["showlegend"]]
    assert len(shown) == len(set(shown))  # one legend entry per predicted class
    assert all(t["hovertemplate"].split("predicted <b>")[1].startswith(t["name"])
               for t in traces)
    at.segmented_control(key="em_colour").set_value("correct").run()
    shown = [t["name"] for t in figure(at, "em_scatter")["data"] if t.get("showlegend")]
    assert set(shown) <= {"correct", "wrong"}


def test_a_selection_fills_the_gallery_with_exactly_the_chosen_faces(dashboard_root):
    lasso = {"selection": {"points": [
        {"curve_number": 3, "point_index": 0, "customdata": [12, 0.81]},
        {"curve_number": 0, "point_index": 2, "customdata": [4, 0.50]},
        {"curve_number": 7, "point_index": 0, "customdata": [12, 0.81]},  # a ring over face 12
        {"curve_number": 1, "point_index": 5, "customdata": {"0": 7, "1": 0.3}},  # older plotly
    ]}, "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}
    faces = faces_from_state(lasso)
    assert faces == [4, 7, 12]
    at = open_page()
    at.session_state["em_selected"] = faces
    at.run()
    assert gallery_faces(at, "em_gallery") == faces
    assert any(s.value == "Selected: 3 faces" for s in at.subheader)
    assert not any(s.value.startswith("Face #") for s in at.subheader)  # none chosen yet


def test_clicked_points_are_read_back_from_plotly_selection_states():
    click = {"selection": {"points": [{"curve_number": 2, "customdata": [5, 0.9]}]}}
    assert faces_from_state(click) == [5]
    assert faces_from_state(None) == [] and faces_from_state({"selection": {}}) == []
    assert faces_from_state({"selection": {"points": [{"customdata": ["x"]}]}}) == []


def test_a_deep_link_opens_the_face_with_its_nearest_neighbours(dashboard_root, tiny_a):
    dataset, path, model = tiny_a
    expected = embed_split(model, path, dataset, "val", "pca", torch.device("cpu"))
    at = open_page(split="val", method="pca", colour="pred", idx="3")
    assert any(s.value == "Face #3 of val" for s in at.subheader)
    neighbours, _ = nearest_neighbours(expected.predictions.features, 3, 10)
    assert gallery_faces(at, "em_neighbours") == neighbours.tolist()
    chosen = [t for t in figure(at, "em_scatter")["data"] if t["name"] == "face #3"]
    assert len(chosen) == 1
    assert at.segmented_control(key="em_colour").value == "pred"
    assert (at.query_params["idx"], at.query_params["split"]) == ("3", "val")
    at.slider(key="em_k").set_value(4).run()
    assert gallery_faces(at, "em_neighbours") == neighbours[:4].tolist()


def test_another_split_clears_the_chosen_face_and_the_selection(dashboard_root):
    at = open_page(idx="2")
    at.session_state["em_selected"] = [1, 2]
    at.run()
    at.segmented_control(key="em_split").set_value("test").run()
    assert not at.exception
    assert not any(s.value.startswith(("Face #", "Selected")) for s in at.subheader)
    assert "idx" not in at.query_params and at.query_params["split"] == "test"


def test_label_errors_are_ringed_when_asked(dashboard_root, tiny_a):
    from fer_core.evaluation.confusion import likely_label_errors

    dataset, path, model = tiny_a
    preds = embed_split(model, path, dataset, "val", "pca", torch.device("cpu")).predictions
    at = open_page()
    assert not any(t["name"].startswith("likely") for t in figure(at, "em_scatter")["data"])
    at.toggle(key="em_errors").set_value(True).run()
    at.slider(key="em_threshold").set_value(0.5).run()
    errors = likely_label_errors(preds, 0.5)
    rings = [t for t in figure(at, "em_scatter")["data"] if t["name"].startswith("likely")]
    if len(errors):
        custom = array(rings[0]["customdata"]).reshape(-1, 2)
        assert custom[:, 0].astype(int).tolist() == errors.tolist()
    else:
        assert not rings


def test_bad_links_get_a_message_and_the_defaults(dashboard_root):
    at = open_page(split="nope", method="lda", colour="x", idx="999999")
    warnings = " ".join(w.value for w in at.warning)
    for name in ("split", "method", "colour", "idx"):
        assert f"`{name}`" in warnings
    assert (at.query_params["split"], at.query_params["method"],
            at.query_params["colour"]) == ("val", "pca", "true")
    assert "idx" not in at.query_params


def test_unlabelled_faces_are_placed_and_coloured_by_prediction(dashboard_root, tmp_path):
    csv = tmp_path / "unlabelled.csv"
    rng = np.random.default_rng(0)
    csv.write_text("id,feature\n" + "".join(
        f"{i},{' '.join(map(str, rng.integers(0, 256, 2304)))}\n" for i in range(12)))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"data": str(csv), "run": "tiny-a"})
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(scatter_points(at)) == 12
    assert {t["name"] for t in figure(at, "em_scatter")["data"]} == {"unknown"}
    at.segmented_control(key="em_colour").set_value("correct").run()
    assert {t["name"] for t in figure(at, "em_scatter")["data"]} == {"no label"}
