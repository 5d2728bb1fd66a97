"""A run whose checkpoint is cut short (a truncated best.pt, its history.jsonl and config.json
intact): the sidebar says so on every page, the pages that score faces say why they cannot, and
the Model page still shows what the folder holds."""

import shutil

import apptest_helpers
import pytest

from dashboard.common.tables import settings_frame
from fer_core.training.runs import RunFolder

PAGES = ("views/home.py", "views/model.py", "views/training/page.py", "views/confusions/page.py",
         "views/saliency/page.py", "views/filters/page.py", "views/embeddings/page.py")
CUT = "not a PyTorch checkpoint (truncated"


@pytest.fixture(scope="module")
def damaged_checkpoints(dashboard_checkpoints, tmp_path_factory):
    """tiny-a, and 'cut': a copy of it whose best.pt keeps only its first half."""
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "tiny-a")
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "cut")
    best = root / "cut" / "best.pt"
    best.write_bytes(best.read_bytes()[:best.stat().st_size // 2])
    return root


@pytest.fixture
def damaged_root(damaged_checkpoints, monkeypatch):
    return apptest_helpers.serve(monkeypatch, damaged_checkpoints)


def sidebar_errors(at) -> list[str]:
    return [e.value for e in at.sidebar.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_the_checkpoint_is_cut_short(damaged_root, page):
    at = apptest_helpers.open_page(page, data="builtin:300", run="cut")
    assert any(CUT in e for e in sidebar_errors(at)), sidebar_errors(at)
    box = at.sidebar.selectbox(key="ckpt")
    assert box.format_func("cut") == "cut \u00b7 \u26a0 cut short"
    assert box.format_func("tiny-a").startswith("tiny-a \u00b7 ") and "\u26a0" not in \
        box.format_func("tiny-a")


def test_a_whole_checkpoint_has_no_sidebar_error(damaged_root):
    at = apptest_helpers.open_page("views/model.py", data="builtin:300", run="tiny-a")
    assert sidebar_errors(at) == []


def test_model_shows_the_folder_s_curves_layers_and_config(damaged_root):
    at = apptest_helpers.open_page("views/model.py", data="builtin:300", run="cut")
    assert any(CUT in e.value for e in at.main.error)
    assert apptest_helpers.figure(at, "model_curves")["data"]  # the curves of history.jsonl
    frames = [d.value for d in at.main.dataframe]
    layers = next(f for f in frames if "layer" in f.columns)
    assert layers["layer"].iloc[-1] == "total" and layers["params"].iloc[-1] > 0
    config = RunFolder(damaged_root / "cut").config()
    assert any(f.equals(settings_frame(config)) for f in frames)


def test_home_flags_the_cut_checkpoint_in_its_runs_table(damaged_root):
    at = apptest_helpers.open_page("views/home.py", data="builtin:300", run="cut")
    runs = next(d.value for d in at.main.dataframe if "status" in d.value.columns)
    status = dict(zip(runs["name"], runs["status"]))
    assert status == {"cut": "finished, checkpoint cut short", "tiny-a": "finished"}
