"""The real-browser suite's page fixture: headless Debian Chromium driven by playwright. Every
test here skips when either is missing."""

import shutil
from pathlib import Path

import pytest
from browser_helpers import ARTIFACTS, BROWSER_ARGS, CHROMIUM, REPO
from PIL import Image


def pytest_collection_modifyitems(items):
    """Mark every test of this folder `browser`, so `-m "not browser"` skips the slow walks."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def browser_page():
    """A fresh headless Chromium page, 1400 pixels wide."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is missing")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(90_000)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def shipped_root(tmp_path):
    """A checkpoints root holding a copy of the shipped builtin-cnn3 (its best.pt only)."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(REPO / "checkpoints" / "builtin-cnn3", root / "builtin-cnn3",
                    ignore=shutil.ignore_patterns("last.pt"))
    return root


@pytest.fixture
def astronaut(tmp_path):
    """scikit-image's astronaut (one frontal face) as a JPEG file."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is missing")
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, "JPEG", quality=90)
    return path
