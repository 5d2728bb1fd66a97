"""The Training page and what it stands on: the launcher (names, refusals, the CLI flags, run
states), the incremental history reader, the curve figures, and a real run started, followed and
stopped from the page (AppTest)."""

import json
import os
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from apptest_helpers import array
from streamlit.testing.v1 import AppTest

from dashboard.common.curves import overlay_figure, training_figure
from dashboard.common.history import RunHistory, format_duration
from dashboard.common.runs import LAUNCH_FILE, LOG_FILE, run_info
from dashboard.views.training.launcher import start_run, validate_name
from fer_core.atomic import write_json
from fer_core.errors import FerError, RunError
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def step(epoch, step, steps=4, loss=1.5, t=0.0):
    return {"kind": "step", "epoch": epoch, "step": step, "steps": steps,
            "progress": epoch - 1 + step / steps, "loss": loss, "acc": 0.3, "time": t}


def epoch_record(epoch, seconds=10.0):
    return {"kind": "epoch", "epoch": epoch, "train_loss": 1.2, "train_acc": 0.5, "val_loss": 1.3,
            "val_acc": 0.45, "lr": 1e-3, "seconds": seconds, "images_per_s": 800.0, "time": 0.0}


def append(path: Path, *records, partial: str = "") -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write(partial)


# ---- launcher ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_unsafe_run_names_are_refused(name):
    with pytest.raises(RunError, match="not a safe folder name"):
        validate_name(name)


def test_an_existing_or_busy_run_folder_is_refused(tmp_path):
    (tmp_path / "done").mkdir()
    write_json(tmp_path / "done" / "status.json", {"state": "finished"})
    with pytest.raises(RunError, match="already exists"):
        start_run(tmp_path, "done", TrainConfig())
    busy = RunFolder(tmp_path / "busy")
    busy.acquire()
    try:
        with pytest.raises(RunError, match="in use"):
            start_run(tmp_path, "busy", TrainConfig())
    finally:
        busy.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "done"]


@pytest.mark.parametrize("init,message", [
    ("nowhere.pt", "no such checkpoint file or run folder"),
    ("broken.pt", "not a PyTorch checkpoint"),
])
def test_an_unusable_init_checkpoint_is_refused_before_any_folder(tmp_path, init, message):
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(FerError, match=message):
        start_run(tmp_path, "tuned", TrainConfig(init=str(tmp_path / init)))
    assert not (tmp_path / "tuned").exists()
    assert not (tmp_path / "busy" / LAUNCH_FILE).exists()


def test_a_trainer_that_died_before_writing_status_shows_the_logs_error(tmp_path):
    folder = tmp_path / "dead"
    folder.mkdir()
    write_json(folder / LAUNCH_FILE, {"pid": 2 ** 22 + 7, "started": time.time(),
                                             "arch": "cnn3", "data": "x.csv"})
    (folder / LOG_FILE).write_text("$ python -m fer_core train\nerror: x.csv: no such file\n")
    info = run_info(RunFolder(folder))
    assert (info.state, info.error, info.arch) == ("failed", "x.csv: no such file", "cnn3")


# ---- history and figures ----------------------------------------------------------------------

def test_history_is_read_incrementally_and_restarts_when_rewritten(tmp_path):
    path = tmp_path / "history.jsonl"
    reader = RunHistory(path)
    assert not reader.refresh()  # no file yet
    append(path, step(1, 1), step(1, 2))
    assert reader.refresh() and len(reader.steps) == 2
    offset = reader.offset
    assert not reader.refresh() and reader.offset == offset  # nothing new, nothing re-read
    append(path, step(1, 3), epoch_record(1))
    assert reader.refresh() and len(reader.steps) == 3 and len(reader.epochs) == 1
    rewritten = tmp_path / "new.jsonl"  # a resume truncates by renaming a new file into place
    append(rewritten, step(1, 1))
    os.replace(rewritten, path)
    assert reader.refresh() and len(reader.steps) == 1 and reader.epochs == []


def test_partial_last_line_waits_for_its_end(tmp_path):
    path = tmp_path / "history.jsonl"
    line = json.dumps(step(1, 1))
    append(path, partial=line[:10])
    reader = RunHistory(path)
    assert not reader.refresh() and reader.offset == 0
    append(path, partial=line[10:] + "\n")
    assert reader.refresh() and len(reader.steps) == 1


def test_eta_and_speed_follow_the_recent_pace(tmp_path):
    reader = RunHistory(tmp_path / "h.jsonl")
    reader.steps = [step(1, 1, t=100.0), step(1, 2, t=105.0)]  # 5 s per quarter epoch
    assert reader.eta_seconds(10, now=105.0) == pytest.approx((10 - 0.5) * 20)
    reader.epochs = [epoch_record(1, seconds=30.0)]
    reader.steps.append(step(2, 1, t=140.0))
    assert reader.eta_seconds(10, now=141.0) == pytest.approx((10 - 1.25) * 30 - 1)
    assert reader.images_per_s() == 800.0
    assert [format_duration(s) for s in (None, 42, 185, 3720)] == ["\u2014", "42s", "3m 05s",
                                                                    "1h 02m"]


def points(ys) -> int:
    """Points drawn by traces with these y arrays: the values that are not gaps (NaN)."""
    return sum(int(np.count_nonzero(~np.isnan(np.asarray(y, dtype=float)))) for y in ys)


def test_training_figure_has_step_lines_with_gaps_and_epoch_points(tmp_path):
    reader = RunHistory(tmp_path / "h.jsonl")
    reader.steps = [step(1, 2), step(1, 4), step(2, 2)]
    reader.epochs = [epoch_record(1)]
    figure = training_figure(reader)
    go.Figure(figure)  # a valid plotly figure
    running_loss = figure["data"][0]
    assert np.array_equal(running_loss["x"], [0.5, 1.0, np.nan, 1.5], equal_nan=True)
    assert points(t["y"] for t in figure["data"]) == 2 * (3 + 1 + 1)
    overlay = overlay_figure({"a": reader, "b": reader})
    go.Figure(overlay)
    assert len(overlay["data"]) == 8 and points(t["y"] for t in overlay["data"]) == 8


# ---- the page, with a real trainer process ----------------------------------------------------

def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def runs_table(at: AppTest):
    return next(d.value for d in at.dataframe if "status" in d.value.columns)


def curve_points(at: AppTest) -> int:
    """Points in the page's first chart; plotly sends float arrays as base64 ('bdata')."""
    charts = at.get("plotly_chart")
    if not charts:
        return 0
    ys = [t["y"] for t in json.loads(charts[0].proto.spec)["data"]]
    ys = [array(y).astype(float) for y in ys]
    return points(ys)


def test_start_follow_stop_and_resume_a_run_from_the_page(run_root):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    assert not at.exception
    at.text_input(key="train_name").input("t1")
    at.text_input(key="train_data").input("builtin:100")
    at.number_input(key="train_epochs").set_value(200)
    at.number_input(key="train_batch_size").set_value(16)
    at.number_input(key="train_log_every").set_value(1)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = runs_table(at)
    assert list(table["name"]) == ["t1"] and table["status"][0] in ("starting", "running")

    run = RunFolder(run_root / "t1")
    wait_for(lambda: any(r["kind"] == "step" for r in run.history()), 90, "the first step line")
    at.run()
    assert curve_points(at) > 0
    assert runs_table(at)["status"][0] == "running"
    assert at.query_params["follow"] == "t1"

    at.button(key="stop_run").click().run()
    wait_for(lambda: (run.status() or {}).get("state") == "stopped", 60, "the run to stop")
    at.run()
    assert runs_table(at)["status"][0] == "stopped"
    assert run.last_path.exists()

    stopped_at = run.status()["updated"]
    at.button(key="resume_run").click().run()
    assert runs_table(at)["status"][0] in ("starting", "running")
    wait_for(lambda: run.status()["state"] == "running" and run.status()["updated"] > stopped_at,
             90, "the resumed run to report")
    at.run()
    at.button(key="stop_run").click().run()
    wait_for(lambda: run.status()["state"] == "stopped" and run.status()["updated"] > stopped_at,
             60, "the resumed run to stop")


def test_refusals_show_under_the_form(run_root):
    (run_root / "taken").mkdir()
    (run_root / "taken" / "config.json").write_text("{}")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    cases = {"taken": ("builtin:100", "already exists"),
             "../x": ("builtin:100", "not a safe folder name"),
             "new": ("/no/such/faces.csv", "/no/such/faces.csv")}
    for name, (data, message) in cases.items():
        at.text_input(key="train_name").input(name)
        at.text_input(key="train_data").input(data)
        next(b for b in at.button if b.label == "Start training").click().run()
        assert not at.exception
        assert message in at.error[0].value
    assert sorted(p.name for p in run_root.iterdir()) == ["taken"]


def test_a_failed_run_shows_its_error(run_root):
    folder = run_root / "broken"
    folder.mkdir()
    write_json(folder / "config.json", {"arch": "cnn3", "data": "builtin"})
    write_json(folder / "status.json", {"state": "failed", "error": "CUDA out of memory",
                                               "epoch": 0, "epochs": 5, "updated": time.time()})
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(data="builtin:100", follow="broken")
    at.run()
    at.switch_page("views/training/page.py").run()
    assert not at.exception
    assert any("CUDA out of memory" in e.value for e in at.error)
    with pytest.raises(FerError):
        start_run(run_root, "broken", TrainConfig())


@pytest.mark.parametrize("run", ["tiny-a", "tiny-b"])
def test_the_page_follows_the_sidebar_s_checkpoint(dashboard_root, run):
    """The run panel opens on the sidebar's run, and follows the sidebar when it changes."""
    import apptest_helpers

    at = apptest_helpers.open_page("views/training/page.py", data="builtin:300", run=run)
    assert at.selectbox(key="follow").value == run
    other = {"tiny-a": "tiny-b", "tiny-b": "tiny-a"}[run]
    at.selectbox(key="ckpt").set_value(other).run()
    assert at.selectbox(key="follow").value == other and at.query_params["follow"] == other


def test_a_run_named_in_the_url_is_followed_over_the_sidebar_s(dashboard_root):
    import apptest_helpers

    at = apptest_helpers.open_page("views/training/page.py", data="builtin:300", run="tiny-a",
                                   follow="tiny-b")
    assert at.selectbox(key="follow").value == "tiny-b"
    at.run()  # and it stays there while the sidebar does not change
    assert at.selectbox(key="follow").value == "tiny-b"
