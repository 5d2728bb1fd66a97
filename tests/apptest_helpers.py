"""Helpers of the page tests (AppTest): point the dashboard at a checkpoints root and at a
dataset held in memory, open the app on a page with a URL, and read a plotly figure and its
arrays back from the page."""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
TIMEOUT = 120


def serve(monkeypatch, root: Path) -> Path:
    """Point the dashboard at the checkpoints root `root`, with no data set by the environment."""
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(root))
    monkeypatch.delenv("FER_DATA", raising=False)
    return root


def serve_dataset(monkeypatch, spec: str, dataset) -> str:
    """Make the dashboard load `dataset` for the data spec `spec` (any other spec loads as
    usual), as if a reader had read it there. `spec` must be new to this test process: the
    dashboard keeps what it loaded by spec."""
    from dashboard.common import state

    real = state.load_dataset
    monkeypatch.setattr(state, "load_dataset",
                        lambda wanted, **kw: dataset if wanted == spec else real(wanted, **kw))
    return spec


def open_page(page: str, *, timeout: float = TIMEOUT, **query) -> AppTest:
    """The app opened with `query` in the URL on `page` ('views/NAME/page.py'); no exception.

    The app runs once (on Home) before switching: until st.navigation has registered the pages,
    AppTest knows a page by its file name only, and every page script is called page.py."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figure(at: AppTest, key: str) -> dict:
    """The JSON of the plotly chart with widget key `key`."""
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))
    return json.loads(chart.proto.spec)


def array(value) -> np.ndarray:
    """A plotly array from a figure's JSON: a list, or a typed array sent as base64."""
    if isinstance(value, dict):
        shape = [int(s) for s in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"]).reshape(shape)
    return np.asarray(value)
