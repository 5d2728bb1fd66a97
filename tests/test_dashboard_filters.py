"""The Filters page headless (AppTest): a short run shows the images forming, then each
filter's activation beside the best real face's; bad filter choices get a message; the seed's
view is one click; the feature maps of a face show every channel of the chosen layer."""


import threading

import apptest_helpers
import numpy as np
import pytest
import streamlit as st
import torch
from apptest_helpers import APP
from streamlit.testing.v1 import AppTest

from dashboard.views.filters import jobs
from fer_core.data.readers import load_dataset
from fer_core.explain.filter_stats import filter_stats, mean_activations
from fer_core.explain.filters import Snapshot
from fer_core.models.checkpoint import load_checkpoint

PAGE = "views/filters/page.py"
DATA = "builtin:300"


def open_page(**query) -> AppTest:
    return apptest_helpers.open_page(PAGE, data=DATA, **query)


def run_to_the_end(at: AppTest, filters: str, steps: int) -> None:
    """Choose the filters and steps, press Run and wait for the run to end."""
    at.text_input(key="fi_filters").set_value(filters).run()
    at.slider(key="fi_steps").set_value(steps).run()
    at.button(key="fi_run").click().run()
    finish(at)


def finish(at: AppTest) -> None:
    """Wait for the session's run to end, then rerun the page as its poll would."""
    job = at.session_state["fi_job"]
    assert job.done.wait(timeout=120) and job.error is None, job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_short_run_shows_the_images_and_the_best_real_faces(dashboard_root, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    at = open_page(run="tiny-a")
    run_to_the_end(at, "0-3", steps=16)
    job = at.session_state["fi_job"]
    assert job.filters == [0, 1, 2, 3] and job.steps == [0, 4, 8, 12, 16]
    assert any("step 16 of 16 (done)" in c.value for c in at.caption)
    table = at.dataframe[0].value
    ckpt = load_checkpoint(dashboard_root / "tiny-a")
    stats = filter_stats(ckpt.model, ckpt.path, load_dataset(DATA), "val", "block3.relu", k=4)
    assert table["filter"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(table["best real"], stats.max_activation[:4].round(3),
                               atol=1e-3)
    np.testing.assert_allclose(table["image"], job.latest.activations.round(3))
    assert len(at.image) >= 1


def curves(at: AppTest) -> list:
    return [c for c in at.get("plotly_chart") if c.proto.id.endswith("-fi_curve")]


def test_done_only_once_the_real_faces_are_shown(dashboard_root, tmp_path, monkeypatch):
    """While the split's statistics compute, the caption says so and a bar follows the pass; the
    run's images and curve stay. The page is caught there by stopping the script at the
    statistics' first progress report (a real pass outlasts a rerun on large data: FER2013's
    val split took 68 s)."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    jobs.STATS.clear()  # none kept from an earlier test
    computed = jobs.real_face_stats

    def under_way(*args, **kwargs):
        args[5](128, 3589)
        st.stop()

    monkeypatch.setattr(jobs, "real_face_stats", under_way)
    at = open_page(run="tiny-a")
    run_to_the_end(at, "0-1", steps=8)
    captions = [c.value for c in at.caption]
    assert not any("(done)" in c for c in captions), captions
    assert any(c.endswith("step 8 of 8 · finding the real faces that drive each filter...")
               for c in captions), captions
    bars = [bar.text for bar in at.get("progress")]
    assert any("val faces that drive each filter of block3.relu hardest: 128 of 3,589" in text
               for text in bars), bars
    assert len(at.image) >= 1 and curves(at) and not at.dataframe

    monkeypatch.setattr(jobs, "real_face_stats", computed)
    at.run()
    assert any(c.value.endswith("step 8 of 8 (done)") for c in at.caption)
    assert at.dataframe and not at.get("progress")


def test_no_curve_before_the_second_snapshot(dashboard_root, monkeypatch):
    """At step 0 the run has one point: no chart (it drew empty axes from -1 to 1), until the
    next snapshot makes a line."""
    go_on = threading.Event()

    def two_snapshots(model, arch, options, layer, filters, settings, **_):
        def snapshot(step):
            return Snapshot(step, np.zeros((len(filters), 48, 48), np.uint8),
                                 np.full(len(filters), 0.1 * step, np.float32))
        yield snapshot(0)
        go_on.wait(timeout=60)
        yield snapshot(4)

    monkeypatch.setattr(jobs, "maximize", two_snapshots)
    at = open_page(run="tiny-a")
    at.text_input(key="fi_filters").set_value("0-1").run()
    at.button(key="fi_run").click().run()
    assert at.session_state["fi_job"].steps == [0]
    assert any("step 0 of 128 (running)" in c.value for c in at.caption)
    assert not curves(at)
    go_on.set()
    finish(at)
    assert apptest_helpers.array(apptest_helpers.figure(at, "fi_curve")["data"][0]["x"]) \
        .tolist() == [0, 4]


@pytest.mark.parametrize("text, message", [("0-999", "filters 0-511"), ("a,b", "numbers"),
                                           ("", "no filter chosen")])
def test_bad_filter_choices_get_a_message(dashboard_root, text, message):
    at = open_page(run="tiny-a")
    at.text_input(key="fi_filters").set_value(text).run()
    at.button(key="fi_run").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert "fi_job" not in at.session_state


def test_the_seed_s_view_is_one_click(dashboard_root):
    at = open_page(run="tiny-a")
    at.selectbox(key="fi_layer").set_value("block1.conv").run()
    at.button(key="fi_seed").click().run()
    assert at.selectbox(key="fi_layer").value == "block3.relu"
    assert at.text_input(key="fi_filters").value == "0-2"


def test_feature_maps_of_a_face(dashboard_root):
    at = open_page(run="tiny-a")
    at.selectbox(key="fi_map_layer").set_value("block2.relu").run()
    assert not at.exception
    assert any("The 128 channels of block2.relu" in c for image in at.image
               for c in image.captions)


def test_a_run_can_start_from_a_real_face(dashboard_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    at = open_page(run="tiny-a")
    at.text_input(key="fi_filters").set_value("7").run()
    at.slider(key="fi_steps").set_value(8).run()
    at.segmented_control(key="fi_init").set_value("face").run()
    at.number_input(key="fi_face").set_value(5).run()
    at.button(key="fi_run").click().run()
    job = at.session_state["fi_job"]
    assert job.done.wait(timeout=120) and job.error is None
    dataset = load_dataset(DATA)
    face = torch.from_numpy(dataset.images[dataset.indices("val")[5]][None].copy())
    model = load_checkpoint(dashboard_root / "tiny-a").model
    on_face = float(mean_activations(model, "block3.relu", face)[0, 7])
    assert job.steps[0] == 0  # the start image is the face: its activation is the face's
    assert job.activations[0][0] == pytest.approx(on_face, rel=1e-2, abs=1e-3)
    finish(at)


def test_first_16_is_one_click(dashboard_root):
    at = open_page(run="tiny-a")
    at.text_input(key="fi_filters").set_value("3").run()
    at.button(key="fi_first16").click().run()
    assert at.text_input(key="fi_filters").value == "0-15"


def test_feature_maps_after_the_saliency_page_in_the_same_session(dashboard_root):
    """The feature-maps tab keeps its own face choice (fm_* keys): sharing the Saliency page's
    widgets once left its split empty after a page change."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"data": DATA, "run": "tiny-a", "split": "val", "idx": "3"})
    at.run().switch_page("views/saliency/page.py").run()
    at.switch_page("views/filters/page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.segmented_control(key="fm_split").value == "val"
    at.number_input(key="fm_idx").set_value(7).run()
    assert any("Face #7 of val" in c for image in at.image for c in image.captions)


def test_another_checkpoint_drops_the_last_run(dashboard_root, tmp_path, monkeypatch):
    """A run's images belong to its model: choosing another checkpoint forgets the run instead
    of showing it beside the new model's faces."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    at = open_page(run="tiny-a")
    run_to_the_end(at, "0-1", steps=8)
    assert at.dataframe
    at.sidebar.selectbox(key="ckpt").set_value("tiny-b").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "fi_job" not in at.session_state and not at.dataframe
    assert any("then Run" in i.value for i in at.info)


def test_streamlit_runs_no_full_collection_after_each_rerun():
    """The page polls every half second while the ascent runs in a thread of the server; the full
    gc.collect(2) Streamlit runs after each rerun by default held the GIL and halved the
    ascent's speed (.streamlit/config.toml says more)."""
    from streamlit import config

    assert config.get_option("runner.postScriptGC") is False
