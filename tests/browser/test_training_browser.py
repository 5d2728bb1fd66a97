"""Real browser: headless Chromium against `streamlit run dashboard/app.py`. Start a short run
from the Training page, watch the curves gain points without reloading the page, then stop it.

Skipped when Debian's chromium or the playwright package is missing.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
# Plotted points: _fullData holds the decoded arrays (data keeps plotly's base64 'bdata').
POINTS_JS = ("el => (el._fullData || []).reduce((n, t) => "
             "n + Array.from(t.y).filter(v => v !== null && !Number.isNaN(v)).length, 0)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture
def app_url(run_root, tmp_path):
    """A streamlit server on a free port over an empty checkpoints root; killed at teardown."""
    port = free_port()
    env = {**os.environ, "FER_CHECKPOINTS_DIR": str(run_root), "FER_DATA": "builtin:300",
           "FER_DEVICE": "cpu", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    with open(tmp_path / "streamlit.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def wait_for_points(chart, more_than: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if chart.count() and (points := chart.evaluate(POINTS_JS)) > more_than:
            return points
        time.sleep(0.5)
    raise AssertionError(f"the curves never got more than {more_than} points")


def test_training_curves_grow_live_and_the_run_stops(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "training-failure.png").unlink(missing_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(90_000)
        try:
            start_a_run(page, app_url)
            chart = page.locator(".st-key-curves-browser-run .js-plotly-plot").last  # the newest
            first = wait_for_points(chart, 0, 180)
            grown = wait_for_points(chart, max(first, 14), 180)  # an epoch or more, no reload
            assert grown > first
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
        finally:
            browser.close()


def start_a_run(page, app_url: str) -> None:
    """Open the app, go to Training, and start a short run on a small built-in set."""
    page.goto(app_url)
    page.get_by_role("link", name="Training").click()
    page.wait_for_url("**/training?*")
    assert "data=builtin" in page.url  # the sidebar choice survives the page change
    page.get_by_role("textbox", name="Run name", exact=True).fill("browser-run")
    page.get_by_role("textbox", name="Dataset", exact=True).fill("builtin:100")
    for label, value in (("Epochs", "100"), ("Batch size", "16"),
                         ("Loss point every N steps", "1")):
        page.get_by_role("spinbutton", name=label, exact=True).fill(value)
    page.get_by_role("button", name="Start training").click()
