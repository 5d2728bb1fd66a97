"""Dashboard speed: page switches, sidebar changes, and the live training panel's refresh.

With caches warm, a page switch or a sidebar change should render in at most 300 ms (median) on
the built-in faces, and one polling refresh of a running training page should cost the server at
most 50 ms. Renders are timed with AppTest (`at.run()`, the whole script: sidebar and page). The
refresh is timed as the live fragment's work: read the new history lines, read the run's state,
build the figure, and validate and serialize it as st.plotly_chart does; the run folder holds a
realistic history (30 epochs, ~2000 step lines) that grows a few lines per refresh.

Baselines in the same run: for renders, AppTest rerunning a script of one st.write (the
framework's own cost of any script run); for the refresh, the same refresh with a fresh reader
that re-reads the whole history (what reading only the new lines saves).

    python benchmarks/bench_dashboard.py [--repeats 24]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import plotly.io
import plotly.tools
from streamlit.testing.v1 import AppTest

from benchmarks.timing import apptest_floor_ms
from dashboard.common.curves import training_figure
from dashboard.common.history import RunHistory
from dashboard.common.runs import run_info
from fer_core.atomic import write_json
from fer_core.data.builtin import make_builtin_faces
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import train

PAGES = ("views/home.py", "views/model.py", "views/training/page.py")
EPOCHS, STEPS_PER_EPOCH, LINES_PER_REFRESH = 30, 67, 3


def make_root(root: Path) -> RunFolder:
    """Two tiny trained checkpoints, and a 'running' run with a long history (returned, locked
    by this process so it reads as running)."""
    train(TrainConfig(epochs=1, batch_size=32, device="cpu"), root / "tiny-a",
          make_builtin_faces(n=210, seed=3))
    shutil.copytree(root / "tiny-a", root / "tiny-b")
    live = RunFolder(root / "long-run")
    live.acquire()
    write_json(live.config_path, {"arch": "cnn3", "data": "builtin", "epochs": EPOCHS + 5})
    write_json(live.status_path, {"state": "running", "pid": os.getpid(), "epoch": EPOCHS,
                                         "epochs": EPOCHS + 5, "best_val_acc": 0.61,
                                         "started": time.time() - 3600, "updated": time.time()})
    lines = [json.dumps(r) for e in range(1, EPOCHS + 1) for r in epoch_records(e)]
    live.history_path.write_text("\n".join(lines) + "\n")
    return live


def epoch_records(epoch: int, t0: float = 1e9) -> list[dict]:
    steps = [{"kind": "step", "epoch": epoch, "step": s, "steps": STEPS_PER_EPOCH,
              "progress": round(epoch - 1 + s / STEPS_PER_EPOCH, 4), "loss": 2.0 / (epoch + s / 67),
              "acc": 0.3 + epoch / 100, "time": t0 + epoch * 60 + s} for s in range(1, 68)]
    end = {"kind": "epoch", "epoch": epoch, "train_loss": 2.0 / epoch, "train_acc": 0.3 + epoch / 100,
           "val_loss": 2.1 / epoch, "val_acc": 0.28 + epoch / 100, "lr": 1e-3, "seconds": 60.0,
           "images_per_s": 900.0, "time": t0 + epoch * 60 + 60}
    return [*steps, end]


def timed(action, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def page_switches(at: AppTest, repeats: int) -> list[float]:
    cycle = iter(PAGES * repeats)
    return timed(lambda: at.switch_page(next(cycle)).run(), repeats)


def sidebar_changes(at: AppTest, repeats: int) -> list[float]:
    """Flip the sidebar checkpoint between two runs, on each page in turn."""
    names = iter(["tiny-a", "tiny-b"] * repeats)
    times = []
    for page in PAGES:
        at.switch_page(page).run()
        times += timed(lambda: at.sidebar.selectbox(key="ckpt").select(next(names)).run(),
                       max(1, repeats // len(PAGES)))
    return times


def refresh(live: RunFolder, reader: RunHistory, epoch: list[int]) -> None:
    """One live-panel refresh after the trainer appended a few lines."""
    with open(live.history_path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in epoch_records(epoch[0])[:LINES_PER_REFRESH])
    epoch[0] += 1
    run_info(live)
    reader.refresh()
    figure = plotly.tools.return_figure_from_figure_or_data(training_figure(reader), True)
    plotly.io.to_json(figure, validate=False)


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"n": len(times), "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("FER_DEVICE", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FER_CHECKPOINTS_DIR"] = tmp
        os.environ["FER_CACHE_DIR"] = str(Path(tmp) / ".cache")
        os.environ.pop("FER_DATA", None)
        live = make_root(Path(tmp))
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.run()
        for page in PAGES:  # warm every cache: data, checkpoints, tables, the grid image
            at.switch_page(page).run()
        at.sidebar.selectbox(key="ckpt").select("tiny-b").run()
        at.session_state["follow"] = "long-run"
        reader = RunHistory(live.history_path)
        start = time.perf_counter()
        reader.refresh()
        first_read_ms = (time.perf_counter() - start) * 1000
        epoch = [EPOCHS + 1]
        results = {
            "page_switch": summary(page_switches(at, args.repeats)),
            "sidebar_change": summary(sidebar_changes(at, args.repeats)),
            "training_refresh": summary(timed(lambda: refresh(live, reader, epoch),
                                              args.repeats)),
            "training_refresh_full_read": summary(timed(
                lambda: refresh(live, RunHistory(live.history_path), epoch), args.repeats)),
            "apptest_floor": summary(apptest_floor_ms(args.repeats)),
            "training_page_full_run": summary(timed(lambda: at.switch_page(PAGES[2]).run(),
                                                    args.repeats)),
            "history_first_read_ms": round(first_read_ms, 1),
            "history_lines": len(reader.steps) + len(reader.epochs),
        }
        live.release()
    budgets = {"page_switch": 300, "sidebar_change": 300, "training_refresh": 50}
    for name, budget in budgets.items():
        results[name]["budget_ms"] = budget
        results[name]["ok"] = results[name]["median_ms"] <= budget
    out = ROOT / "benchmarks" / "results" / "dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'measure':<28}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}{'budget':>8}")
    for name, r in results.items():
        if isinstance(r, dict):
            budget = f"{r['budget_ms']}" if "budget_ms" in r else "-"
            print(f"{name:<28}{r['n']:>4}{r['median_ms']:>11}{r['p90_ms']:>9}{r['max_ms']:>9}"
                  f"{budget:>8}")
    print(f"first read of a {results['history_lines']}-line history: "
          f"{results['history_first_read_ms']} ms")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
