"""The Saliency page headless (AppTest): a dataset face (chosen, or arriving by a deep link)
with the prediction the prediction path gives, every method, the URL round trip of method,
parameters and target, uploads and webcam pictures (a face found, none found, a bad file), the
note and switch for a builtin-trained checkpoint, and the Confusions gallery's link here."""

import io
import json
import shutil

import apptest_helpers
import numpy as np
import pytest
import torch
from apptest_helpers import APP, TIMEOUT, figure
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.common import face_picker
from dashboard.common.gallery import face_link
from dashboard.common.state import Selection
from fer_core.data.classes import CLASSES
from fer_core.data.readers import load_dataset
from fer_core.evaluation.predict import predict_split
from fer_core.explain.attribution import METHODS
from fer_core.models.checkpoint import load_checkpoint, read_payload, save_atomic

skimage_data = pytest.importorskip("skimage.data")

PAGE = "views/saliency/page.py"
DATA = "builtin:300"


def open_page(**query) -> AppTest:
    return apptest_helpers.open_page(PAGE, data=DATA, **query)


def no_problems(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def map_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if "Computed in" in c.value)


def probabilities(at: AppTest) -> list[float]:
    return figure(at, "sa_probs")["data"][0]["x"]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return jpeg(Image.fromarray(skimage_data.astronaut()))


@pytest.fixture(scope="module")
def reference(dashboard_checkpoints):
    dataset = load_dataset(DATA)
    model = load_checkpoint(dashboard_checkpoints / "tiny-a").model
    return dataset, predict_split(model, dataset, "val", torch.device("cpu"))


def test_a_deep_link_opens_that_face_with_the_prediction_path_s_probabilities(dashboard_root,
                                                                              reference):
    _, preds = reference
    at = open_page(run="tiny-a", split="val", idx="7")
    no_problems(at)
    assert at.number_input(key="sa_idx").value == 7
    assert any(m.value.startswith("**Face #7 of val") for m in at.markdown)
    np.testing.assert_allclose(probabilities(at), preds.probs[7], atol=1e-5)
    predicted = CLASSES[int(preds.predicted[7])]
    assert any(f"Predicted **{predicted}**" in m.value for m in at.markdown)
    assert f"explaining **{predicted}**" in map_caption(at)
    assert at.query_params["split"] == "val" and at.query_params["idx"] == "7"


def test_choosing_another_face_updates_the_prediction_and_the_url(dashboard_root, reference):
    _, preds = reference
    at = open_page(run="tiny-a")
    at.number_input(key="sa_idx").set_value(12).run()
    no_problems(at)
    np.testing.assert_allclose(probabilities(at), preds.probs[12], atol=1e-5)
    assert at.query_params["idx"] == "12"


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_draws_a_map(dashboard_root, method):
    at = open_page(run="tiny-a", split="val", idx="3", method=method)
    no_problems(at)
    assert at.selectbox(key="sa_method").value == method
    assert map_caption(at).startswith(METHODS[method].title)
    assert len(at.image[-1].value) == 2  # the map alone and over the face


def test_a_link_reproduces_method_parameters_and_a_contrast_target(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="3", method="ig", steps="64",
                   baseline="blurred", target="Happy-Sad")
    no_problems(at)
    assert at.slider(key="sa_ig_steps").value == 64
    assert at.segmented_control(key="sa_target_kind").value == "contrast"
    caption = map_caption(at)
    assert "steps 64, baseline blurred" in caption and "explaining **Happy - Sad**" in caption
    at.slider(key="sa_ig_steps").set_value(16).run()
    assert at.query_params["steps"] == "16" and at.query_params["target"] == "Happy-Sad"


def test_bad_link_values_are_ignored_with_a_warning(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="99999", method="nope", target="Joy",
                   steps="5000")
    no_problems(at)
    warned = " ".join(w.value for w in at.warning)
    for name in ("`idx`", "`method`", "`target`"):
        assert name in warned
    assert "99999" not in warned and "Joy" not in warned
    assert at.selectbox(key="sa_method").value == "vanilla"
    assert at.number_input(key="sa_idx").value == 0


def test_the_true_class_target_and_a_class_target(dashboard_root, reference):
    _, preds = reference
    at = open_page(run="tiny-a", split="val", idx="4")
    at.segmented_control(key="sa_target_kind").set_value("true").run()
    assert f"explaining **{CLASSES[int(preds.labels[4])]}**" in map_caption(at)
    at.segmented_control(key="sa_target_kind").set_value("class").run()
    at.selectbox(key="sa_class_a").set_value(5).run()
    assert "explaining **Surprise**" in map_caption(at)
    assert at.query_params["target"] == "Surprise"
    assert figure(at, "sa_deletion")["layout"]["yaxis"]["title"]["text"] == "p(Surprise)"


def test_all_methods_side_by_side(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="2")
    at.toggle(key="sa_all").set_value(True).run()
    no_problems(at)
    captions = [caption for image in at.image for caption in image.captions]
    for spec in METHODS.values():
        assert any(caption.startswith(f"{spec.title} (") for caption in captions), spec.title


def test_an_uploaded_photo_is_cut_at_its_face_and_explained(dashboard_root, astronaut_jpeg):
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("upload").run()
    assert not at.get("plotly_chart") or not any(
        c.proto.id.endswith("-sa_probs") for c in at.get("plotly_chart"))
    at.file_uploader(key="sa_upload").upload("astronaut.jpg", astronaut_jpeg, "image/jpeg").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("1 face found" in c.value for c in at.caption)
    assert sum(probabilities(at)) == pytest.approx(1.0, abs=1e-4)
    assert "explaining" in map_caption(at)
    assert "idx" not in at.query_params  # a photo cannot travel in a link


def test_with_several_faces_the_largest_is_used_and_another_can_be_picked(dashboard_root):
    astronaut = Image.fromarray(skimage_data.astronaut())
    group = Image.new("RGB", (768, 512), "white")
    group.paste(astronaut, (0, 0))
    group.paste(astronaut.resize((256, 256)).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                (512, 128))
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("upload").run()
    png = io.BytesIO()
    group.save(png, "PNG")  # as a JPEG, the cascade also finds a "face" on the suit
    at.file_uploader(key="sa_upload").upload("group.png", png.getvalue(), "image/png").run()
    no_problems(at)
    assert any("2 faces found" in c.value for c in at.caption)
    assert at.selectbox(key="sa_pick").value == 0
    largest = probabilities(at)
    at.selectbox(key="sa_pick").set_value(1).run()
    no_problems(at)
    assert any(m.value.startswith("**group.png, face 2") for m in at.markdown)
    assert probabilities(at) != largest  # the smaller, mirrored face went to the model


def test_a_photo_without_a_face_gets_a_centre_crop_the_user_can_move(dashboard_root):
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (160, 1))
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload("ramp.jpg", jpeg(Image.fromarray(ramp))).run()
    assert any("No face found" in w.value for w in at.warning)
    before = probabilities(at)
    at.slider(key="sa_cx").set_value(0.2).run()
    at.slider(key="sa_size").set_value(0.3).run()
    no_problems(at)
    assert probabilities(at) != before  # a darker part of the ramp went to the model


@pytest.fixture
def no_face_finding(opencv_without_cascades):
    """OpenCV without Haar cascades, and no photo's faces kept from an earlier test."""
    face_picker.faces_in.clear()
    face_picker.cut_face.clear()
    yield
    face_picker.faces_in.clear()
    face_picker.cut_face.clear()


def test_without_face_finding_an_upload_gets_the_centre_crop_and_one_line_why(
        dashboard_root, astronaut_jpeg, no_face_finding):
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload("astronaut.jpg", astronaut_jpeg, "image/jpeg").run()
    no_problems(at)
    why = [w.value for w in at.warning if "Face finding is unavailable" in w.value]
    assert len(why) == 1 and "OpenCV 5.0.0 has no Haar cascades" in why[0]
    assert not any("No face found" in w.value for w in at.warning)
    before = probabilities(at)
    at.slider(key="sa_size").set_value(0.4).run()  # the crop is still set by hand
    no_problems(at)
    assert probabilities(at) != before and "explaining" in map_caption(at)


@pytest.mark.parametrize("name, content", [("empty.png", b""), ("notes.jpg", b"plain text " * 40),
                                           ("cut.png", None)])
def test_a_bad_file_gets_one_message_and_the_page_keeps_working(dashboard_root, astronaut_jpeg,
                                                                name, content):
    content = astronaut_jpeg[:len(astronaut_jpeg) // 2] if content is None else content
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload(name, content).run()
    assert not at.exception
    assert len(at.error) == 1 and name in at.error[0].value
    at.segmented_control(key="sa_source").set_value("dataset").run()
    no_problems(at)
    assert "Computed in" in map_caption(at)


def test_a_webcam_picture_goes_through_the_same_path(dashboard_root, astronaut_jpeg):
    at = open_page(run="tiny-a")
    at.segmented_control(key="sa_source").set_value("camera").run()
    at.camera_input(key="sa_camera").upload("picture.jpg", astronaut_jpeg).run()
    no_problems(at)
    assert any("1 face found" in c.value for c in at.caption)
    assert "explaining" in map_caption(at)


@pytest.fixture
def photo_run(dashboard_root, tmp_path, monkeypatch):
    """A checkpoints root with the builtin-trained tiny-a and a copy that says it learned from
    a FER2013 file."""
    root = tmp_path / "checkpoints"
    shutil.copytree(dashboard_root / "tiny-a", root / "tiny-a")
    shutil.copytree(dashboard_root / "tiny-a", root / "photos")
    config = json.loads((root / "photos" / "config.json").read_text())
    config["data"] = "/data/fer2013.csv"
    (root / "photos" / "config.json").write_text(json.dumps(config))
    for name in ("best.pt", "last.pt"):
        if (root / "photos" / name).exists():
            payload = read_payload(root / "photos" / name)
            payload["config"]["data"] = "/data/fer2013.csv"
            save_atomic(payload, root / "photos" / name)
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(root))
    return root


def test_a_builtin_trained_checkpoint_gets_a_note_and_a_switch_for_photos(photo_run,
                                                                          astronaut_jpeg):
    at = open_page(run="tiny-a")  # a dataset face: no note
    assert not any("learned from the built-in" in w.value for w in at.warning)
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload("astronaut.jpg", astronaut_jpeg, "image/jpeg").run()
    assert any("learned from the built-in" in w.value and "**photos**" in w.value
               for w in at.warning)
    at.button(key="sa_switch").click().run()
    no_problems(at)
    assert at.selectbox(key="ckpt").value == "photos"
    assert at.query_params["run"] == "photos"
    assert not any("learned from the built-in" in w.value for w in at.warning)


def test_a_face_opened_on_the_confusions_page_links_here(dashboard_root, reference):
    _, preds = reference
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"data": DATA, "run": "tiny-a", "split": "val", "idx": "9"})
    at.run().switch_page("views/confusions/page.py").run()
    link = next(p.proto for p in at.get("page_link") if p.proto.label == "Explain this face")
    assert link.page == "saliency"
    query = dict(part.split("=") for part in link.query_string.split("&"))
    assert query == {"data": DATA.replace(":", "%3A"), "run": "tiny-a", "split": "val",
                     "idx": "9"}
    assert face_link(Selection(DATA, "tiny-a"), "val", 9) == "saliency?" + link.query_string
    arrived = open_page(run="tiny-a", split="val", idx="9")
    np.testing.assert_allclose(probabilities(arrived), preds.probs[9], atol=1e-5)


# ---- trust checks ------------------------------------------------------------------------------

def stored_report(dashboard_root, **changes):
    """A report of tiny-a on the first 4 val faces for two methods that pass every check, stored
    where the page looks for it; `changes` maps a method to new values of its fields, to make it
    fail a check (the page must show what the report says)."""
    from dataclasses import replace

    from fer_core import cache
    from fer_core.explain.trust import MethodTrust, TrustReport, report_key

    ckpt = load_checkpoint(dashboard_root / "tiny-a")
    dataset = load_dataset(DATA)
    methods = [MethodTrust("vanilla", METHODS["vanilla"].title, [1.0, 0.7, 0.4, 0.2, 0.1],
                           deletion_auc=0.21, parts_share=0.48),
               MethodTrust("guided", METHODS["guided"].title, [1.0, 0.8, 0.6, 0.4, 0.3],
                           deletion_auc=0.25, parts_share=0.41)]
    report = TrustReport([replace(m, **changes.get(m.method, {})) for m in methods],
                         ["head.fc", "block3.conv", "block2.conv", "block1.conv"], 4,
                         random_deletion_auc=0.341, parts_area_share=0.23)
    text = json.dumps(report.as_dict()).encode()
    cache.save_arrays(report_key(ckpt.path, dataset, "val", 4),
                      {"report": np.frombuffer(text, dtype=np.uint8)})
    return report


@pytest.fixture
def trust_cache(tmp_path, monkeypatch):
    """An empty disk cache, and no report job in memory (before and after the test)."""
    from dashboard.views.saliency import trust_jobs

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    trust_jobs._JOBS.clear()
    yield
    trust_jobs._JOBS.clear()


def test_without_a_report_the_page_says_so_and_runs_the_checks_in_the_background(
        dashboard_root, trust_cache):
    from dashboard.views.saliency import trust_jobs

    at = open_page(run="tiny-a", split="val", idx="1")
    assert any("Sanity check not run" in c.value for c in at.caption)
    at.number_input(key="sa_trust_n").set_value(4).run()
    at.button(key="sa_trust_run").click().run()
    no_problems(at)
    job = next(iter(trust_jobs._JOBS.values()))
    assert job.done.wait(timeout=300) and job.error is None
    at.run()
    no_problems(at)
    table = at.dataframe[-1].value
    assert list(table["method"]) == [spec.title for spec in METHODS.values()]
    assert any("the sanity check" in c.value and "correlate" in c.value for c in at.caption)


def test_the_method_list_flags_what_the_report_flags(dashboard_root, trust_cache):
    report = stored_report(dashboard_root,
                           guided={"randomization_spearman": [1.0, 0.95, 0.9, 0.9, 0.9]})
    at = open_page(run="tiny-a", split="val", idx="1")
    at.number_input(key="sa_trust_n").set_value(4).run()
    options = at.selectbox(key="sa_method").options
    assert "Guided Backprop ⚠" in options and "Vanilla gradient" in options
    vanilla = report.by_method()["vanilla"].randomization_spearman[-1]
    assert any(f"correlate {vanilla:.2f}" in c.value for c in at.caption)
    at.selectbox(key="sa_method").set_value("guided").run()
    assert any("Fails the sanity check" in w.value and "0.90" in w.value for w in at.warning)
    assert any(c.proto.id.endswith("-sa_randomization") for c in at.get("plotly_chart"))
    assert any(c.proto.id.endswith("-sa_checks") for c in at.get("plotly_chart"))


def test_a_method_that_deletes_worse_than_random_is_flagged(dashboard_root, trust_cache):
    stored_report(dashboard_root, guided={"deletion_auc": 0.519})
    at = open_page(run="tiny-a", split="val", idx="1")
    at.number_input(key="sa_trust_n").set_value(4).run()
    no_problems(at)
    table = at.dataframe[-1].value
    assert list(table.columns) == ["method", "flags", "ρ, all randomized", "deletion area",
                                   "on the parts"]  # the baselines once, not a column each
    assert table.set_index("method")["flags"].to_dict() == {
        "Vanilla gradient": "passes every check",
        "Guided Backprop": "⚠ deletion worse than random"}
    assert any("random order's 0.341" in c.value for c in at.caption)
    assert "Guided Backprop ⚠" in at.selectbox(key="sa_method").options
    at.selectbox(key="sa_method").set_value("guided").run()
    assert any("Deletes worse than a random order" in w.value and "0.519 against 0.341" in w.value
               for w in at.warning)
    assert any("Passes the sanity check" in c.value for c in at.caption)
    checks = figure(at, "sa_checks")
    deletion = checks["data"][1]
    assert deletion["y"] == ["Vanilla gradient", "Guided Backprop ⚠"]
    assert deletion["marker"]["color"][0] != deletion["marker"]["color"][1]
    assert checks["layout"]["yaxis"]["automargin"] is True
    assert [s["x0"] for s in checks["layout"]["shapes"]] == [0.5, 0.341, 0.23]


def test_the_trust_section_shows_for_an_upload(dashboard_root, trust_cache, astronaut_jpeg):
    report = stored_report(dashboard_root)
    at = open_page(run="tiny-a")
    at.number_input(key="sa_trust_n").set_value(4).run()
    at.segmented_control(key="sa_source").set_value("upload").run()
    at.file_uploader(key="sa_upload").upload("astronaut.jpg", astronaut_jpeg, "image/jpeg").run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert any(c.endswith("-sa_deletion") for c in charts)
    assert any(c.endswith("-sa_randomization") for c in charts)
    assert at.dataframe[-1].value["method"].tolist() == [m.title for m in report.methods]
    assert at.dataframe[-1].value["deletion area"].tolist() == [
        round(m.deletion_auc, 3) for m in report.methods]


def test_a_link_to_a_face_opens_it_after_a_photo_was_shown(dashboard_root):
    at = open_page(run="tiny-a", split="val", idx="5")
    at.segmented_control(key="sa_source").set_value("upload").run()
    assert "idx" not in at.query_params
    at.switch_page("views/confusions/page.py").run()
    at.query_params.update({"split": "val", "idx": "5"})  # what Explain this face passes
    at.switch_page("views/saliency/page.py").run()
    no_problems(at)
    assert at.segmented_control(key="sa_source").value == "dataset"
    assert any(m.value.startswith("**Face #5 of val") for m in at.markdown)
