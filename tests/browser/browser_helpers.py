"""Helpers of the real-browser suite: a streamlit server on a free port, and where things are."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fer_core.data.photos import face_from_upload
from fer_core.models.checkpoint import load_checkpoint

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
# Streamlit scrolls its main area itself, so a full-page screenshot shows only the window: make
# the window tall enough for the whole page.
TALL = {"width": 1400, "height": 2300}

# The Confusions gallery's faces as [position, x, y] in page pixels (the centres of the overlay's
# squares). page.evaluate(TILES_JS).
TILES_JS = """() => {
  const gd = document.querySelector('.st-key-cm_gallery .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const t = gd._fullData[1];
  const out = [];
  for (let j = 0; j < t.x.length; j++) {
    out.push([Number(t.customdata[j]), box.left + xa._offset + xa.l2p(t.x[j]),
              box.top + ya._offset + ya.l2p(t.y[j])]);
  }
  return out;
}"""

# Every face of the Embeddings scatter's class traces as [position, x, y] in page pixels, read
# from the plot's own axes (plotly decodes the binary arrays into typed arrays).
POINTS_JS = """(selector) => {
  const gd = document.querySelector(selector + ' .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const out = [];
  for (const t of gd._fullData) {
    if (!t.legendgroup) continue;
    for (let j = 0; j < t.x.length; j++) {
      out.push([t.customdata[j][0], box.left + xa._offset + xa.l2p(t.x[j]),
                box.top + ya._offset + ya.l2p(t.y[j])]);
    }
  }
  return out;
}"""


# Every st.image picture under the elements `scope` selects (a CSS selector; '' for the whole
# page): its caption, address, decoded size, and how many distinct colours its pixels hold (read
# through a canvas, up to 200: a blank picture has one). page.evaluate(IMAGES_JS, scope).
IMAGES_JS = """(scope) => Array.from(document.querySelectorAll(
    (scope ? scope + ' ' : '') + '[data-testid="stImageContainer"] img')).map(img => {
  let colours = 0;
  if (img.complete && img.naturalWidth > 0) {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const seen = new Set();
    for (let i = 0; i < px.length && seen.size < 200; i += 4) {
      seen.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    }
    colours = seen.size;
  }
  const box = img.closest('[data-testid="stImageContainer"]');
  const caption = box && box.querySelector('[data-testid="stImageCaption"]');
  return {caption: caption ? caption.innerText.trim() : '', src: img.src, complete: img.complete,
          width: img.naturalWidth, height: img.naturalHeight, colours: colours};
})"""


# Points plotted in a curves chart: _fullData holds the decoded arrays (data keeps plotly's
# base64 'bdata'). chart.evaluate(CURVE_POINTS_JS).
CURVE_POINTS_JS = ("el => (el._fullData || []).reduce((n, t) => "
                   "n + Array.from(t.y).filter(v => v !== null && !Number.isNaN(v)).length, 0)")


def wait_for_points(chart, more_than: int, seconds: float) -> int:
    """Wait until the curves chart `chart` (a locator) plots more than `more_than` points."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if chart.count() and (points := chart.evaluate(CURVE_POINTS_JS)) > more_than:
            return points
        time.sleep(0.5)
    raise AssertionError(f"the curves never got more than {more_than} points")


def filters_done(filters: int, steps: int) -> str:
    """The Filters page's caption once a run of `filters` filters x `steps` steps has ended."""
    return f"{filters} filters: step {steps} of {steps} (done)"


def start_run(page, name: str, data: str, epochs: int) -> None:
    """Fill the Training page's new-run form (batch 16, a loss point every step) and start it."""
    page.get_by_role("textbox", name="Run name", exact=True).fill(name)
    page.get_by_role("textbox", name="Dataset", exact=True).fill(data)
    for label, value in (("Epochs", str(epochs)), ("Batch size", "16"),
                         ("Loss point every N steps", "1")):
        page.get_by_role("spinbutton", name=label, exact=True).fill(value)
    page.get_by_role("button", name="Start training").click()


def click_at(page, selector: str, fx: float, fy: float) -> None:
    """Click at the fraction (fx, fy) of the plot area of the chart under `selector`."""
    area = page.locator(f"{selector} .nsewdrag").first
    area.wait_for()
    time.sleep(1)  # plotly draws after the script ends; let it settle
    box = area.bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def scatter_points(page) -> list[tuple[int, float, float]]:
    """The Embeddings scatter's faces as (position, x, y) in page pixels, once it is drawn."""
    page.locator(".st-key-em_scatter .nsewdrag").first.wait_for()
    time.sleep(1)  # plotly draws after the script ends; let it settle
    return [(int(p), x, y) for p, x, y in page.evaluate(POINTS_JS, ".st-key-em_scatter")]


def loneliest(points) -> tuple[int, float, float]:
    """The point farthest from any other: a click there cannot pick a neighbour."""
    def gap(a):
        return min((a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2 for b in points if b is not a)
    return max(points, key=gap)


def expected_prediction(run_dir: Path, photo: bytes) -> tuple[str, float, np.ndarray]:
    """The class and probability (in percent) the checkpoint gives the face cut from `photo`
    for its task, and all its class probabilities."""
    ckpt = load_checkpoint(run_dir)
    found = face_from_upload(photo, "astronaut.jpg", task=ckpt.task)
    with torch.no_grad():
        x = torch.from_numpy(found.face).float().div(255)[None]
        probs = torch.softmax(ckpt.model(x), dim=1)[0].numpy()
    k = int(probs.argmax())
    return ckpt.task.classes[k], float(probs[k]) * 100, probs


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


@contextmanager
def streamlit_server(log_path: Path, **env):
    """`streamlit run dashboard/app.py` on a free port with `env` added; yields its URL."""
    port = free_port()
    env = {**os.environ, "FER_DEVICE": "cpu", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", **env}
    with open(log_path, "wb") as log:
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
