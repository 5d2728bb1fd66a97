"""Pages in a task other than FER2013's (AppTest): a colour 64-pixel checkpoint with RAF-DB's
classes (in RAF-DB's order) on colour faces of that task shows those names on Model, Confusions
and Saliency, an uploaded photo is cut in colour at the checkpoint's size, and Home, Training,
Filters and Embeddings draw the colour faces; a checkpoint of another task than the data's
scores the faces mapped to its task (classes by name, faces converted) with one note naming
both, never a traceback."""

import io
import json
import shutil

import apptest_helpers
import numpy as np
import pytest
from apptest_helpers import figure, serve, serve_dataset
from dataset_helpers import RAF_DB_NAMES, in_other_task
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.views.saliency import maps
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.task import FER2013

RUN = "raf-cnn3"
RAF = "7 classes, 64x64 colour"
SCORING_PAGES = ("views/confusions/page.py", "views/saliency/page.py", "views/filters/page.py",
                 "views/embeddings/page.py")


@pytest.fixture(scope="module")
def raf_faces():
    """The faces of builtin:300 as a colour 64-pixel dataset with RAF-DB's classes."""
    return in_other_task(make_builtin_faces(n=300, seed=0))


@pytest.fixture(scope="module")
def raf_root(tmp_path_factory, raf_faces, dashboard_checkpoints):
    """A checkpoints root holding RUN, trained for an epoch on the colour faces, and tiny-a (a
    checkpoint of FER2013's task)."""
    from fer_core.training.config import TrainConfig
    from fer_core.training.trainer import train

    root = tmp_path_factory.mktemp("raf_checkpoints")
    train(TrainConfig(epochs=1, batch_size=32, device="cpu"), root / RUN, raf_faces)
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "tiny-a")
    return root


@pytest.fixture(scope="module")
def raf_spec(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("raf_data") / "raf-db")


@pytest.fixture
def raf_data(raf_root, raf_faces, raf_spec, monkeypatch) -> str:
    """The dashboard on `raf_root`, its data spec `raf_spec` loading the colour faces."""
    serve(monkeypatch, raf_root)
    return serve_dataset(monkeypatch, raf_spec, raf_faces)


@pytest.fixture
def explained(monkeypatch) -> list:
    """The faces the Saliency page hands to `explain` (a fresh map cache, so every map is
    computed)."""
    maps.face_map.clear()
    faces, real = [], maps.explain
    monkeypatch.setattr(maps, "explain", lambda model, x, *a, **k: faces.append(x) or real(
        model, x, *a, **k))
    return faces


def open_page(page: str, **query) -> AppTest:
    at = apptest_helpers.open_page(page, **query)
    assert not at.error, [e.value for e in at.error]
    return at


def names(labels: list[str]) -> list[str]:
    return [label.removesuffix(" (true)") for label in labels]


def test_the_model_page_shows_the_checkpoints_task(raf_data):
    from fer_core.models.architectures import build_model
    from fer_core.models.layer_table import summarize

    at = open_page("views/model.py", data=raf_data, run=RUN)
    matrix = figure(at, "model_matrix")["data"][0]
    assert matrix["x"] == matrix["y"] == list(RAF_DB_NAMES)
    layers = at.dataframe[0].value
    task = FER2013.with_input(size=64, channels=3)
    expected = summarize(build_model("cnn3", task), task)
    assert layers["params"].iloc[-1] == expected.total_params != 669_127  # 3 input channels
    assert "512 x 16 x 16" in set(layers["output"])  # block3 of a 64-pixel face
    assert any(RAF in c.value for c in at.caption)


def test_confusions_names_the_checkpoints_classes(raf_data, raf_faces):
    at = open_page("views/confusions/page.py", data=raf_data, run=RUN, split="val", idx="0")
    heat = figure(at, "cm_matrix")["data"][0]
    assert heat["x"] == heat["y"] == list(RAF_DB_NAMES)
    assert sum(map(sum, heat["z"])) == (raf_faces.labels[raf_faces.indices("val")] >= 0).sum()
    hover = " ".join(figure(at, "cm_gallery")["data"][1]["hovertemplate"])
    assert any(f"<b>{name}</b>" in hover for name in RAF_DB_NAMES)
    charts = [json.loads(c.proto.spec)["data"][0] for c in at.get("plotly_chart")]
    [bars] = [c for c in charts if c["type"] == "bar" and c.get("orientation") == "h"]
    assert names(bars["y"]) == list(RAF_DB_NAMES)  # the opened face's probabilities


def test_saliency_explains_a_colour_face_with_the_checkpoints_classes(raf_data, explained):
    at = open_page("views/saliency/page.py", data=raf_data, run=RUN, split="val", idx="3",
                   target="happiness-neutral")
    assert names(figure(at, "sa_probs")["data"][0]["y"]) == list(RAF_DB_NAMES)
    assert [tuple(x.shape) for x in explained] == [(1, 3, 64, 64)]
    assert (at.selectbox(key="sa_class_a").value, at.selectbox(key="sa_class_b").value) == (3, 6)
    assert any("explaining **happiness - neutral**" in c.value for c in at.caption)
    assert at.query_params["target"] == "happiness-neutral"


@pytest.fixture(scope="module")
def colour_photo() -> bytes:
    """scikit-image's astronaut, a colour photo with one face, as a JPEG."""
    skimage_data = pytest.importorskip("skimage.data")
    buffer = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("colour", [True, False], ids=["colour-64", "fer2013"])
def test_an_uploaded_photo_is_cut_as_the_checkpoint_takes_faces(raf_data, explained,
                                                                colour_photo, colour):
    query = dict(data=raf_data, run=RUN) if colour else dict(data="builtin:300", run="tiny-a")
    at = open_page("views/saliency/page.py", **query)
    explained.clear()
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload("astronaut.jpg", colour_photo, "image/jpeg").run()
    assert not at.exception and not at.error
    [face] = explained
    assert tuple(face.shape) == ((1, 3, 64, 64) if colour else (1, 1, 48, 48))
    if colour:
        red, _, blue = face[0].float()
        assert (red - blue).abs().mean() > 20  # the photo's colours reach the model


@pytest.mark.parametrize("page", ["views/home.py", "views/training/page.py",
                                  "views/filters/page.py", "views/embeddings/page.py"])
def test_the_other_pages_open_on_the_colour_task(raf_data, page):
    open_page(page, data=raf_data, run=RUN)


def test_the_probe_strip_shows_colour_faces_named_by_the_runs_classes(raf_data, monkeypatch):
    from dashboard.views.training import probe_strip

    drawn, real = [], probe_strip.strip
    monkeypatch.setattr(probe_strip, "strip", lambda found, at, classes: drawn.append(
        (classes, real(found, at, classes))) or drawn[-1][1])
    at = open_page("views/training/page.py", data=raf_data, run=RUN)
    assert any("val faces with the gradient map" in c.value for c in at.caption)
    [(classes, sheet)] = drawn
    assert classes == RAF_DB_NAMES
    red, _, blue, _ = np.moveaxis(np.asarray(sheet, dtype=int), -1, 0)
    face = slice(18, 18 + 64 * probe_strip.SCALE), slice(0, 64 * probe_strip.SCALE)
    assert (red[face] - blue[face]).mean() > 10  # the first probe face, in colour


def test_filters_maximize_colour_images_beside_the_best_colour_faces(raf_data):
    at = open_page("views/filters/page.py", data=raf_data, run=RUN)
    at.slider(key="fi_steps").set_value(8).run()
    at.button(key="fi_run").click().run()
    job = at.session_state["fi_job"]
    assert job.done.wait(timeout=120) and job.error is None, job.error
    assert job.latest.images.shape == (16, 3, 64, 64)
    at.run()
    assert not at.exception and any("step 8 of 8 (done)" in c.value for c in at.caption)


def test_home_counts_the_datasets_classes_in_its_order(raf_data):
    at = open_page("views/home.py", data=raf_data, run=RUN)
    assert list(at.dataframe[0].value.columns) == [*RAF_DB_NAMES, "total"]


def mapped_note(at: AppTest) -> str:
    """The one note saying how a FER2013 checkpoint sees the RAF-DB faces (no error)."""
    assert not at.error, [e.value for e in at.error]
    [note] = [i.value for i in at.main.info if "Shown as the model sees the data" in i.value]
    assert note.startswith(f"**tiny-a** is a model of {FER2013.describe()}: Angry, ")
    assert f"the dataset holds {RAF}: {', '.join(RAF_DB_NAMES)}." in note
    assert "faces converted from 64x64 colour to the model's 48x48 grey" in note
    return note


@pytest.mark.parametrize("page", SCORING_PAGES)
def test_a_checkpoint_of_another_task_scores_the_faces_mapped_by_name(raf_data, page):
    at = apptest_helpers.open_page(page, data=raf_data, run="tiny-a")
    mapped_note(at)
    assert at.main.selectbox or at.main.slider  # the page went on past the note to its controls


def test_confusions_of_a_fer2013_model_on_raf_faces_counts_them_in_its_classes(raf_data,
                                                                                 raf_faces):
    at = apptest_helpers.open_page("views/confusions/page.py", data=raf_data, run="tiny-a",
                                   split="val")
    mapped_note(at)
    heat = figure(at, "cm_matrix")["data"][0]
    assert heat["x"] == heat["y"] == list(FER2013.classes)
    val = raf_faces.labels[raf_faces.indices("val")]
    rows = np.array(heat["z"]).sum(1)  # RAF-DB's names matched to FER2013's by meaning
    for k, name in enumerate(RAF_DB_NAMES):
        fer = {"surprise": "Surprise", "fear": "Fear", "disgust": "Disgust", "happiness": "Happy",
               "sadness": "Sad", "anger": "Angry", "neutral": "Neutral"}[name]
        assert rows[FER2013.classes.index(fer)] == (val == k).sum()


def test_the_model_page_of_another_task_keeps_its_table_and_maps_the_matrix(raf_data):
    at = apptest_helpers.open_page("views/model.py", data=raf_data, run="tiny-a")
    mapped_note(at)
    assert at.dataframe[0].value["params"].iloc[-1] == 669_127
    matrix = figure(at, "model_matrix")["data"][0]
    assert matrix["x"] == matrix["y"] == list(FER2013.classes)


def test_two_checkpoints_of_different_tasks_are_not_compared(raf_data):
    at = open_page("views/confusions/page.py", data=raf_data, run=RUN, split="val")
    at.selectbox(key="cm_compare").set_value("tiny-a").run()
    [message] = [e.value for e in at.main.error]
    assert message.startswith(f"tiny-a is a model of {FER2013.describe()}")
    assert "need the same classes" in message
