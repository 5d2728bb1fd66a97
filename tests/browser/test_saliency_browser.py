"""Real browser: on the Saliency page, upload a photo and see the face found in it, the model's
prediction (the same as the checkpoint gives for those bytes) and the map alone and over the
face; switch a builtin-trained model to the FER2013 one for the photo; follow a face from
the Confusions gallery's "Explain this face" link to its map here; and read the trust checks'
chart: every method's full name, a method that deletes worse than random in red."""

import json
import re
import shutil
import time

import numpy as np
import pytest
from browser_helpers import (
    ARTIFACTS,
    IMAGES_JS,
    REPO,
    TALL,
    TILES_JS,
    expected_prediction,
    streamlit_server,
)

from fer_core import cache
from fer_core.data.readers import load_dataset
from fer_core.evaluation.confusion import cell_positions
from fer_core.evaluation.predict import predict_split
from fer_core.explain.attribution import METHODS
from fer_core.explain.trust import PROBE_FACES, MethodTrust, TrustReport, report_key
from fer_core.models.checkpoint import load_checkpoint

CHECKPOINTS = REPO / "checkpoints"
BUILTIN_RUN, PHOTO_RUN = "builtin-cnn3", "fer2013-cnn3"
DATA = "builtin:2000"
PREDICTED = re.compile(r"Predicted (\w+) \((\d+\.\d)%\)")
MAP_CAPTION = re.compile(r"explaining .* Computed in \d+ ms")

IMAGES_LOADED_JS = """(n) => {
  const imgs = document.querySelectorAll('[data-testid="stImageContainer"] img');
  return imgs.length >= n && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);
}"""

# The probability chart's bar lengths, in class order.
PROBS_JS = """() => Array.from(
  document.querySelector('.st-key-sa_probs .js-plotly-plot').data[0].x).map(Number)"""

# The trust checks' chart: its y tick labels top to bottom (text, left edge from the chart's),
# and per facet the bars' fill colour and drawn width, in method order.
CHECKS_JS = """() => {
  const gd = document.querySelector('.st-key-sa_checks .js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const ticks = Array.from(gd.querySelectorAll('.ytick text')).map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left - box.left, top: r.top};
  }).sort((a, b) => a.top - b.top);
  const bars = Array.from(gd.querySelectorAll('.barlayer .trace')).map(trace =>
    Array.from(trace.querySelectorAll('.point path')).map(
      bar => ({fill: getComputedStyle(bar).fill, width: bar.getBoundingClientRect().width})));
  return {ticks: ticks, bars: bars};
}"""
RED = "rgb(255, 75, 75)"  # trust_charts.FLAGGED


@pytest.fixture
def photo_root(tmp_path):
    """Both shipped checkpoints: the builtin-trained one (the default for built-in data) and the
    FER2013-trained one the page offers for photos."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    for run in (BUILTIN_RUN, PHOTO_RUN):
        shutil.copytree(CHECKPOINTS / run, root / run,
                        ignore=shutil.ignore_patterns("last.pt", "*.md"))
    return root


def shown_prediction(page) -> tuple[str, float]:
    text = page.get_by_text(PREDICTED).first.inner_text()
    match = PREDICTED.search(text)
    return match.group(1), float(match.group(2))


def wait_for_prediction(page, run: str, name: str, percent: float) -> None:
    """Wait until the page shows `name` at `percent` (to the printed 0.1) for the photo, with
    `run` chosen in the URL."""
    page.wait_for_url(lambda u: f"run={run}" in u, timeout=30_000)
    deadline = time.monotonic() + 60
    while True:
        shown = shown_prediction(page)
        if shown[0] == name and abs(shown[1] - percent) <= 0.051:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{run}: page shows {shown}, expected {name} {percent:.2f}%")
        time.sleep(0.25)


def wait_for_probs(page, probs: np.ndarray) -> None:
    """Wait until the probability chart's bars are `probs` (the chart draws after the text)."""
    deadline = time.monotonic() + 30
    while True:
        page.locator(".st-key-sa_probs .js-plotly-plot .bars").first.wait_for()
        shown = page.evaluate(PROBS_JS)
        if shown == pytest.approx(probs.tolist(), abs=1e-4):
            return
        assert time.monotonic() < deadline, f"chart shows {shown}, expected {probs.tolist()}"
        time.sleep(0.25)


def images(page, count: int) -> dict[str, dict]:
    """The page's images by caption, once at least `count` have loaded."""
    page.wait_for_function(IMAGES_LOADED_JS, arg=count)
    return {i["caption"]: i for i in page.evaluate(IMAGES_JS, '')}


def check_maps(page, count: int) -> dict[str, dict]:
    shown = images(page, count)
    for caption in ("The map", "Over the face"):
        assert caption in shown, f"no image captioned {caption!r} in {list(shown)}"
        assert (shown[caption]["width"], shown[caption]["height"]) == (240, 240), shown[caption]
        assert shown[caption]["colours"] > 1, f"{caption!r} is one flat colour"
    face = next(v for k, v in shown.items() if k.startswith("The model's input"))
    assert (face["width"], face["height"]) == (192, 192) and face["colours"] > 1, face
    return shown


def test_upload_a_photo_see_prediction_and_map_then_switch_model(photo_root, astronaut,
                                                                   tmp_path, browser_page):
    page = browser_page
    page.set_viewport_size(TALL)
    photo = astronaut.read_bytes()
    name, percent, probs = expected_prediction(CHECKPOINTS / BUILTIN_RUN, photo)
    name2, percent2, _ = expected_prediction(CHECKPOINTS / PHOTO_RUN, photo)
    assert (name, round(percent, 1)) != (name2, round(percent2, 1)), "the switch shows nothing"
    (ARTIFACTS / "saliency-upload-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(photo_root),
                          FER_DATA=DATA) as url:
        try:
            page.goto(f"{url}/saliency")
            page.get_by_text("Face #0 of val").first.wait_for()  # a dataset face by default
            page.locator(".st-key-sa_source").get_by_role("radio", name="Upload a photo").click()
            page.get_by_text(f"Switch to {PHOTO_RUN}").first.wait_for()
            page.get_by_text(f"{BUILTIN_RUN} learned from the built-in synthetic faces").first \
                .wait_for()
            page.locator(".st-key-sa_upload input[type=file]").set_input_files(astronaut)

            page.get_by_text("1 face found").first.wait_for()
            page.get_by_text("astronaut.jpg, face 1").first.wait_for()
            page.locator(".st-key-sa_probs .js-plotly-plot .bars").first.wait_for()
            wait_for_prediction(page, BUILTIN_RUN, name, percent)
            wait_for_probs(page, probs)
            page.get_by_text(MAP_CAPTION).first.wait_for()
            shown = check_maps(page, 4)
            preview = next(v for k, v in shown.items() if k.startswith("The photo"))
            assert (preview["width"], preview["height"]) == (480, 480), preview
            # a photo cannot travel in a link: the dataset face leaves the URL (at the run's end)
            page.wait_for_url(lambda u: "split=" not in u and "idx=" not in u, timeout=15_000)
            assert page.locator(".st-key-ckpt input").input_value().startswith(BUILTIN_RUN)
            page.screenshot(path=str(ARTIFACTS / "saliency_upload.png"), full_page=True)

            page.get_by_role("button", name=f"Switch to {PHOTO_RUN}").click()
            wait_for_prediction(page, PHOTO_RUN, name2, percent2)
            page.get_by_text("astronaut.jpg, face 1").first.wait_for()  # the same photo
            # no note for a FER2013-trained model (gone once the run ends)
            page.get_by_text(f"Switch to {PHOTO_RUN}").wait_for(state="detached", timeout=15_000)
            deadline = time.monotonic() + 30  # the map of the other model, not the old one
            while check_maps(page, 4)["The map"]["src"] == shown["The map"]["src"]:
                assert time.monotonic() < deadline, "the map did not change with the model"
                time.sleep(0.25)
            page.screenshot(path=str(ARTIFACTS / "saliency_upload_switched.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "saliency-upload-failure.png"), full_page=True)
            raise


def test_switch_to_the_photo_model_sticks(photo_root, astronaut, tmp_path, browser_page):
    page = browser_page
    name2, percent2, _ = expected_prediction(CHECKPOINTS / PHOTO_RUN, astronaut.read_bytes())
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(photo_root),
                          FER_DATA=DATA) as url:
        page.goto(f"{url}/saliency")
        page.locator(".st-key-sa_source").get_by_role("radio", name="Upload a photo").click()
        page.locator(".st-key-sa_upload input[type=file]").set_input_files(astronaut)
        page.get_by_text("1 face found").first.wait_for()
        page.get_by_role("button", name=f"Switch to {PHOTO_RUN}").click()
        wait_for_prediction(page, PHOTO_RUN, name2, percent2)
        page.locator(".st-key-sa_source").get_by_role("radio", name="Dataset face").click()
        page.wait_for_url(lambda u: "split=val" in u, timeout=30_000)  # the next run's URL
        assert f"run={PHOTO_RUN}" in page.url
        assert page.locator(".st-key-ckpt input").input_value().startswith(PHOTO_RUN)


def test_follow_a_face_from_the_confusions_gallery(shipped_root, tmp_path, browser_page):
    page = browser_page
    page.set_viewport_size(TALL)
    preds = predict_split(load_checkpoint(CHECKPOINTS / BUILTIN_RUN).model,
                          load_dataset(DATA), "val", "cpu")
    faces = [int(f) for f in cell_positions(preds, 0, 0)]
    assert len(faces) >= 2
    (ARTIFACTS / "saliency-confusions-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_DATA=DATA) as url:
        try:
            page.goto(f"{url}/confusions?true=0&pred=0")
            page.get_by_text("True Angry, predicted Angry").first.wait_for()
            page.locator(".st-key-cm_gallery .nsewdrag").first.wait_for()
            time.sleep(1)  # plotly draws after the script ends; let it settle
            tiles = page.evaluate(TILES_JS)
            assert [t[0] for t in tiles] == faces[:len(tiles)]
            position, x, y = next(t for t in tiles[1:] if t[0] != 0)  # not the page's default
            page.mouse.click(x, y)
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(f"Face #{position} of val").wait_for()

            dialog.get_by_role("link", name="Explain this face").click()
            page.wait_for_url(lambda u: "/saliency?" in u and "split=val" in u
                              and re.search(rf"[?&]idx={position}(&|$)", u) is not None
                              and f"run={BUILTIN_RUN}" in u, timeout=30_000)
            page.get_by_text(f"Face #{position} of val").first.wait_for()
            p = float(preds.probs[position, 0])
            page.get_by_text(f"Predicted Angry ({p:.1%}); true class Angry.").first.wait_for()
            caption = page.get_by_text(MAP_CAPTION).first
            caption.wait_for()
            assert "explaining Angry." in caption.inner_text()
            assert page.locator(".st-key-sa_idx input").input_value() == str(position)
            assert page.get_by_role("dialog").count() == 0
            check_maps(page, 3)
            page.screenshot(path=str(ARTIFACTS / "saliency_from_confusions.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "saliency-confusions-failure.png"),
                            full_page=True)
            raise


def stored_trust_report() -> TrustReport:
    """A report of every method for the shipped builtin-cnn3 on the page's default probe, stored
    in FER_CACHE_DIR where the page looks: Guided Backprop and Guided Grad-CAM delete worse than
    a random order (the areas issue 30 saw), every other check passes."""
    worse = {"guided": 0.519, "guidedgradcam": 0.508}
    methods = [MethodTrust(key, spec.title, [1.0, 0.6, 0.4, 0.3, 0.2],
                           deletion_auc=worse.get(key, 0.25), parts_share=0.4)
               for key, spec in METHODS.items()]
    report = TrustReport(methods, ["head.fc", "block3.conv", "block2.conv", "block1.conv"],
                         PROBE_FACES, random_deletion_auc=0.341, parts_area_share=0.23)
    key = report_key(CHECKPOINTS / BUILTIN_RUN / "best.pt", load_dataset(DATA), "val",
                     PROBE_FACES)
    text = json.dumps(report.as_dict()).encode()
    cache.save_arrays(key, {"report": np.frombuffer(text, dtype=np.uint8)})
    return report


def test_the_trust_chart_names_every_method_in_full_and_flags_bad_deletion(
        shipped_root, tmp_path, browser_page, monkeypatch):
    page = browser_page
    page.set_viewport_size(TALL)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    report = stored_trust_report()
    names = [m.title + (" ⚠" if report.failed_checks(m) else "") for m in report.methods]
    (ARTIFACTS / "saliency-trust-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_DATA=DATA, FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        try:
            page.goto(f"{url}/saliency")
            chart = page.locator(".st-key-sa_checks .js-plotly-plot .barlayer").first
            chart.wait_for()
            chart.scroll_into_view_if_needed()
            time.sleep(1)  # plotly draws after the script ends; let it settle
            shown = page.evaluate(CHECKS_JS)
            assert [t["text"] for t in shown["ticks"]] == names
            assert "Guided Backprop ⚠" in names and "Vanilla gradient" in names
            cut = [t for t in shown["ticks"] if t["left"] < 0]
            assert not cut, f"tick labels start left of the chart: {cut}"
            sanity, deletion = shown["bars"][0], shown["bars"][1]
            for m, bar in zip(report.methods, deletion):
                assert bar["width"] > 0, f"{m.title}'s deletion bar is not drawn"
                assert (bar["fill"] == RED) == (m.method in ("guided", "guidedgradcam")), m
            assert all(bar["fill"] != RED for bar in sanity)
            page.screenshot(path=str(ARTIFACTS / "saliency_trust.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "saliency-trust-failure.png"), full_page=True)
            raise
