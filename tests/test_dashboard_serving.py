"""The dashboard served to others: bad query parameters get a message and the default, a dataset
that vanishes keeps its last good state on every page, FER_ALLOW_TRAINING=0 leaves the Training
page read-only, what the caches share cannot be changed, and the launcher starts one trainer per
run with absolute paths."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from thread_helpers import run_at_once

from dashboard.common import runs, state
from dashboard.views.training import launcher
from fer_core.atomic import write_json
from fer_core.errors import RunError
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ("views/home.py", "views/model.py", "views/training/page.py", "views/confusions/page.py")
TIMEOUT = 120


def app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def on_page(page: str, **query) -> AppTest:
    at = app(**query)
    at.switch_page(page).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> str:
    return " | ".join(e.value for e in elements)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def kaggle_csv(path: Path, n: int = 21) -> Path:
    rows = [f"{k % 7},{' '.join([str(k)] * 2304)},{('Training', 'PublicTest')[k % 2]}"
            for k in range(n)]
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path


# ---- query parameters -------------------------------------------------------------------------

def test_a_huge_builtin_count_in_the_url_is_refused_at_once(dashboard_root):
    started = time.monotonic()
    at = app(data="builtin:50000000")
    assert_clean(at)
    assert time.monotonic() - started < 60
    assert "N from 1 to 100,000" in texts(at.sidebar.error)
    assert metric(at, "Dataset") == "Built-in faces"


def test_an_unknown_run_in_the_url_gets_a_message_and_the_default(dashboard_root):
    at = app(data="builtin:300", run="no-such-run")
    assert_clean(at)
    assert "checkpoint" in texts(at.sidebar.warning)
    assert at.sidebar.selectbox(key="ckpt").value in ("tiny-a", "tiny-b")


def test_an_unknown_arch_in_the_url_gets_a_message_and_the_default(dashboard_root):
    at = on_page("views/model.py", data="builtin:300", run="tiny-a", arch="vgg19")
    assert "`arch`" in texts(at.warning)
    assert at.segmented_control(key="model_source").value == "checkpoint"


def test_bad_confusions_parameters_get_messages_and_the_defaults(dashboard_root):
    at = on_page("views/confusions/page.py", data="builtin:300", run="tiny-a", split="secret",
                 true="9", pred="x", idx="99999999")
    warnings = texts(at.warning)
    for name in ("`split`", "`true`", "`idx`"):
        assert name in warnings, warnings
    assert at.segmented_control(key="cm_split").value == "val"
    assert "idx" not in at.query_params


def test_odd_face_numbers_in_the_url_are_refused_not_raised():
    from dashboard.common.clicks import parse_index

    for text in ("\u00b2", "\u0663", "9" * 5000, "1e9", "-1", " ", "12"):
        assert parse_index(text, 10) is None, text
    assert parse_index(" 7 ", 10) == 7


def test_an_unknown_followed_run_gets_a_message(dashboard_root):
    at = on_page("views/training/page.py", data="builtin:300", follow="nope")
    assert "`follow`" in texts(at.warning)


# ---- a dataset that vanishes --------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_a_deleted_dataset_keeps_its_last_good_state_on_every_page(dashboard_root, tmp_path,
                                                                   page):
    csv = kaggle_csv(tmp_path / "faces.csv")
    at = on_page(page, data=str(csv), run="tiny-a")
    assert not at.sidebar.error
    csv.unlink()
    at.run()
    assert_clean(at)
    assert "no such file" in texts(at.sidebar.error)
    if page == "views/home.py":
        assert metric(at, "Faces") == "21"
    if page in ("views/home.py", "views/confusions/page.py"):
        assert "Showing the faces loaded earlier" in texts(at.warning)


def test_an_image_folder_is_reloaded_within_stamp_s_when_an_image_inside_changes(tmp_path,
                                                                                 monkeypatch):
    image, other = tmp_path / "train" / "happy" / "a.png", tmp_path / "train" / "sad" / "b.png"
    for path in (image, other):
        path.parent.mkdir(parents=True)
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(path)
    clock = [time.monotonic()]
    monkeypatch.setattr(state.time, "monotonic", lambda: clock[0])
    first, _ = state.load_faces(str(tmp_path))
    Image.fromarray(np.full((48, 48), 200, np.uint8)).save(image)
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    unchanged, _ = state.load_faces(str(tmp_path))  # the folder's stamp is not looked up yet
    clock[0] += state.STAMP_S
    second, _ = state.load_faces(str(tmp_path))
    assert first.images.max() == unchanged.images.max() == 0 and second.images.max() == 200


# ---- shared caches ----------------------------------------------------------------------------

def test_cached_datasets_and_models_cannot_be_changed(dashboard_root):
    dataset, _ = state.load_faces("builtin:300")
    for array in (dataset.images, dataset.labels, dataset.split_codes, dataset.sources):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = array[1]
    model = state.checkpoint(dashboard_root / "tiny-a").model
    assert not any(p.requires_grad for p in model.parameters())


# ---- the Training page and the launcher --------------------------------------------------------

def stopped_run(root: Path, name: str = "paused") -> RunFolder:
    folder = RunFolder(root / name)
    folder.path.mkdir(parents=True)
    write_json(folder.config_path, {"arch": "cnn3", "data": "builtin:100", "epochs": 2})
    write_json(folder.status_path, {"state": "stopped", "epoch": 1, "epochs": 2,
                                           "updated": time.time()})
    return folder


def test_training_can_be_switched_off(run_root, monkeypatch):
    stopped_run(run_root)
    monkeypatch.setenv("FER_ALLOW_TRAINING", "0")
    at = on_page("views/training/page.py", data="builtin:100", follow="paused")
    assert not at.button, [b.label for b in at.button]
    assert "FER_ALLOW_TRAINING" in texts(at.caption)
    for action in (lambda: launcher.start_run(run_root, "new", TrainConfig()),
                   lambda: launcher.resume_run(RunFolder(run_root / "paused")),
                   lambda: launcher.stop_run(RunFolder(run_root / "paused"))):
        with pytest.raises(RunError, match="FER_ALLOW_TRAINING"):
            action()
    assert sorted(p.name for p in run_root.iterdir()) == ["paused"]
    assert not (run_root / "paused" / "STOP").exists()


@pytest.fixture
def fake_trainer(monkeypatch):
    """Launches stand-ins for trainer processes and yields their commands. Launching one takes
    a while (as importing torch does); its pid is this test process, alive but no trainer."""
    launched = []

    class FakeTrainer:
        def __init__(self, command, **kwargs):
            time.sleep(0.5)
            launched.append(command)
            self.pid = os.getpid()

        def poll(self):
            return None

    monkeypatch.setattr(launcher.subprocess, "Popen", FakeTrainer)
    yield launched
    runs.CHILDREN.pop(os.getpid(), None)


def test_two_tabs_resuming_at_once_launch_one_trainer(run_root, fake_trainer):
    folder = stopped_run(run_root)
    start, outcomes = threading.Barrier(2), []

    def click():
        start.wait()
        try:
            launcher.resume_run(RunFolder(folder.path))
            outcomes.append("launched")
        except RunError as e:
            outcomes.append(str(e))

    run_at_once(click, click, timeout=30)
    assert len(fake_trainer) == 1, outcomes
    refused = [o for o in outcomes if o != "launched"]
    assert len(refused) == 1 and "run paused" in refused[0], outcomes


def test_relative_paths_are_resolved_before_the_trainer_starts(tmp_path, monkeypatch,
                                                               fake_trainer):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", "runs")
    kaggle_csv(tmp_path / "faces.csv")
    launcher.start_run(Path("runs"), "rel", TrainConfig(data="faces.csv", epochs=1))
    command = fake_trainer[0]
    assert command[command.index("--data") + 1] == str(tmp_path / "faces.csv")
    assert command[command.index("--out") + 1] == str(tmp_path / "runs" / "rel")
    from dashboard.common.paths import checkpoints_root

    assert checkpoints_root() == tmp_path / "runs"


def test_the_dashboard_listens_on_localhost_by_default():
    result = subprocess.run(
        [sys.executable, "-c",
         "from streamlit import config; print(config.get_option('server.address'))"],
        cwd=Path(APP).parent.parent, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "localhost"
