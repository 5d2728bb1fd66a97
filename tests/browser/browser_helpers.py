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

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


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
