"""Real browser: headless Chromium against `streamlit run dashboard/app.py`. Start a short run
from the Training page, watch the curves gain points and the probe faces' maps move on to later
epochs without reloading the page, then stop it.

Skipped when Debian's chromium or the playwright package is missing (see conftest.py).
"""

import re
import time

import pytest
from browser_helpers import ARTIFACTS, IMAGES_JS, start_run, streamlit_server, wait_for_points


@pytest.fixture
def app_url(run_root, tmp_path):
    """A streamlit server over an empty checkpoints root, on the small built-in set."""
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(run_root),
                          FER_DATA="builtin:300") as url:
        yield url


def test_training_curves_grow_live_and_the_run_stops(app_url, browser_page):
    page = browser_page
    (ARTIFACTS / "training-failure.png").unlink(missing_ok=True)
    try:
        start_a_run(page, app_url)
        chart = page.locator(".st-key-curves-browser-run .js-plotly-plot").last  # the newest
        first = wait_for_points(chart, 0, 180)
        grown = wait_for_points(chart, max(first, 14), 180)  # an epoch or more, no reload
        assert grown > first
        shown = strip_epoch(page, 0, 120)
        later = strip_epoch(page, shown, 120)  # the strip moved on with the run, no reload
        strip = page.evaluate(IMAGES_JS, "")  # the page's one picture
        assert len(strip) == 1 and strip[0]["complete"] and strip[0]["colours"] > 100
        assert later > shown
        page.screenshot(path=str(ARTIFACTS / "training.png"))

        # .first: while a rerun replaces an element, the old copy lingers for a moment
        page.locator(".st-key-stop_run").get_by_role("button", name="Stop").first.click()
        status = page.locator('[data-testid="stMetric"]').filter(has_text="Status")
        status.filter(has_text="stopped").first.wait_for()
        resume = page.locator(".st-key-resume_run").get_by_role("button", name="Resume")
        resume.first.wait_for()  # a stopped run can be resumed
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "training-failure.png"))
        raise


def strip_epoch(page, after: int, seconds: float) -> int:
    """The epoch the probe strip's caption names ("Epoch N: ..."), once it is past `after`."""
    caption = page.get_by_text(re.compile(r"^Epoch \d+: \d+ val faces"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for text in caption.all_inner_texts():
            if (epoch := int(re.match(r"Epoch (\d+)", text).group(1))) > after:
                return epoch
        time.sleep(0.5)
    raise AssertionError(f"the probe strip never showed an epoch after {after}")


def start_a_run(page, app_url: str) -> None:
    """Open the app, go to Training, and start a short run on a small built-in set."""
    page.goto(app_url)
    page.get_by_role("link", name="Training").click()
    page.wait_for_url("**/training?*")
    assert "data=builtin" in page.url  # the sidebar choice survives the page change
    start_run(page, "browser-run", "builtin:100", epochs=100)


def test_choosing_a_recipe_fills_the_form_in_the_browser(app_url, browser_page):
    """AppTest reads session state; only a browser shows whether the widgets took the values
    (a widget whose state is dropped rather than set keeps showing its old value)."""
    page = browser_page
    page.goto(app_url)
    page.get_by_role("link", name="Training").click()
    page.get_by_role("textbox", name="Run name", exact=True).wait_for(timeout=90_000)
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    assert epochs.input_value() == "10"
    page.get_by_role("combobox", name="Recipe").click()
    page.get_by_role("option", name="fer2013-resnet18").click()
    page.wait_for_function("() => [...document.querySelectorAll('input')].some("
                           "i => i.getAttribute('aria-label') === 'Epochs' && i.value === '60')")
    assert page.get_by_role("spinbutton", name="Batch size", exact=True).input_value() == "256"
    assert page.get_by_role("combobox", name="Architecture").input_value() == "resnet18"
    assert not page.get_by_text("Session State API").count()  # no duplicated-state warning
