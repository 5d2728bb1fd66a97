"""Confusions page speed with warm caches: how long a cell click takes to show its gallery.

AppTest level (as bench_dashboard.py): choose a cell (what the click's callback does) and time
the whole script run that draws the page with that cell's gallery and mean saliency, cycling
through the most confused cells. Browser level (--browser): in headless Chromium, click matrix
cells and time from the click until the new gallery's title is on screen. The issue's budget:
500 ms median. The first visit (predicting the split) and a revisit after a restart (the disk
cache) are timed too. Baselines of a click, in the same run: the page's warm rerun with no cell
changed (AppTest), and a button click of a three-line Streamlit app until its new text is on
screen (Chromium, with --browser).

Cell maps: the mean saliency of the largest off-diagonal and the largest diagonal cell of the
val split, cold (computed and stored) and warm (read from the disk cache), beside the time of
predicting the whole split (the baseline: a map is a forward and a backward pass over one
cell's faces, a prediction a forward pass over all of them).

    python benchmarks/bench_confusions.py [--data builtin] [--run checkpoints/builtin-cnn3]
        [--repeats 24] [--browser]
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
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from streamlit.testing.v1 import AppTest  # noqa: E402

from fer_core.evaluation.confusion import confusion_counts, ranked_pairs

PAGE = "views/confusions/page.py"


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"n": len(times), "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1)}


def open_page(data: str, run: str) -> tuple[AppTest, float]:
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.query_params.update({"data": data, "run": run})
    at.run()
    start = time.perf_counter()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at, (time.perf_counter() - start) * 1000


def busiest_cells(data: str, run_dir: Path) -> list[tuple[int, int]]:
    """The 12 most confused cells of the val split (predictions from the warm disk cache)."""
    import torch

    from fer_core.data.readers import load_dataset
    from fer_core.evaluation.predict import cached_predict_split
    from fer_core.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir)
    preds = cached_predict_split(ckpt.model, ckpt.path, load_dataset(data), "val",
                                 torch.device("cpu"))
    known, classes = preds.labelled, ckpt.task.classes
    pairs = ranked_pairs(confusion_counts(preds.labels[known], preds.predicted[known], classes),
                         classes)
    return [(p["true"], p["pred"]) for p in pairs[:12]]


def cell_map_times(data: str, run_dir: Path, cache_dir: Path) -> dict:
    """Milliseconds: predicting the val split, and the cold and warm maps of its largest
    off-diagonal and diagonal cells, with `cache_dir` as the (empty) disk cache."""
    import numpy as np
    import torch

    from fer_core.data.readers import load_dataset
    from fer_core.device import choose_device
    from fer_core.evaluation.predict import predict_split
    from fer_core.explain.cell_saliency import cached_cell_saliency, cell_mean_saliency
    from fer_core.models.checkpoint import load_checkpoint

    os.environ["FER_CACHE_DIR"] = str(cache_dir)
    device = choose_device()
    ckpt = load_checkpoint(run_dir, device)
    model, classes = ckpt.model.requires_grad_(False), ckpt.task.classes
    dataset = load_dataset(data)
    cell_mean_saliency(model, torch.from_numpy(dataset.images[:8]), 0, 1)  # warm-up
    preds = predict_split(model, dataset, "val", device)  # also warms the forward kernels
    predict_ms = timed(lambda: predict_split(model, dataset, "val", device))
    known = preds.labelled
    counts = confusion_counts(preds.labels[known], preds.predicted[known], classes)
    top = ranked_pairs(counts, classes)[0]
    diagonal = int(np.argmax(counts.diagonal()))
    results = {"device": device.type, "val_faces": len(preds.rows),
               "predict_split_ms": round(predict_ms, 1)}
    for name, (t, p) in (("off_diagonal", (top["true"], top["pred"])),
                         ("diagonal", (diagonal, diagonal))):
        def mean_map(t=t, p=p):
            return cached_cell_saliency(model, ckpt.path, dataset, preds, t, p)

        cold_ms = timed(mean_map)
        warm_ms = statistics.median(timed(mean_map) for _ in range(5))
        results[name] = {"cell": f"{classes[t]} -> {classes[p]}", "faces": int(counts[t, p]),
                         "cold_ms": round(cold_ms, 1), "warm_ms": round(warm_ms, 2)}
    return results


def timed(call) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def apptest_clicks(at: AppTest, cells: list, repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        at.session_state["cm_cell"] = cells[i % len(cells)]
        at.session_state["cm_face"] = None
        start = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def run_classes(run_dir: Path) -> tuple[str, ...]:
    """The class names of the run's checkpoint, in its output order (the matrix's)."""
    from fer_core.models.checkpoint import load_checkpoint

    return load_checkpoint(run_dir).task.classes


def apptest_reruns(at: AppTest, repeats: int) -> list[float]:
    """The baseline of a click: the same page rerun with its cell unchanged."""
    return [timed(at.run) for _ in range(repeats)]


FLOOR_APP = """import streamlit as st
st.button("again")
st.session_state.runs = st.session_state.get("runs", 0) + 1
st.write(f"run {st.session_state.runs}")
"""


def browser_floor(root: Path, repeats: int) -> list[float]:
    """The baseline of a browser click: click a three-line app's button, until its new text is
    on screen, served and measured the same way as the dashboard."""
    import signal
    import subprocess

    from browser_helpers import BROWSER_ARGS, CHROMIUM, free_port, wait_healthy
    from playwright.sync_api import sync_playwright

    (root / "floor_app.py").write_text(FLOOR_APP)
    port = free_port()
    with open(root / "floor.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(root / "floor_app.py"),
             "--server.port", str(port), "--server.headless", "true"],
            env={**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://localhost:{port}", server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            page.goto(f"http://localhost:{port}")
            page.get_by_text("run 1").first.wait_for()
            times = []
            for i in range(repeats):
                time.sleep(0.5)
                start = time.perf_counter()
                page.get_by_role("button", name="again").click()
                page.get_by_text(f"run {i + 2}", exact=True).first.wait_for()
                page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
                times.append((time.perf_counter() - start) * 1000)
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    return times


def browser_clicks(root: Path, data: str, run: str, cells: list, classes: tuple[str, ...],
                   repeats: int) -> list[float]:
    """Milliseconds from a click on each of `cells` of the matrix (of the run's `classes`) until
    its gallery's title shows."""
    from browser_helpers import BROWSER_ARGS, CHROMIUM, streamlit_server
    from playwright.sync_api import sync_playwright

    times = []
    with streamlit_server(root / "streamlit.log", FER_CHECKPOINTS_DIR=str(root),
                          FER_DATA=data) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/confusions?run={run}&true=0&pred=0")
        page.get_by_text(f"True {classes[0]}, predicted {classes[0]}").first.wait_for()
        area = page.locator(".st-key-cm_matrix .nsewdrag").first
        for i in range(repeats):
            t, p = cells[i % len(cells)]
            if i and cells[i % len(cells)] == cells[(i - 1) % len(cells)]:
                continue
            time.sleep(0.5)
            box = area.bounding_box()
            start = time.perf_counter()
            page.mouse.click(box["x"] + (p + 0.5) / len(classes) * box["width"],
                             box["y"] + (t + 0.5) / len(classes) * box["height"])
            page.get_by_text(f"True {classes[t]}, predicted {classes[p]}:").first.wait_for()
            page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
            times.append((time.perf_counter() - start) * 1000)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin")
    parser.add_argument("--run", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--repeats", type=int, default=24)
    parser.add_argument("--browser", action="store_true", help="also time clicks in Chromium")
    args = parser.parse_args()
    os.environ.setdefault("FER_DEVICE", "cpu")
    run_dir = Path(args.run).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(run_dir, root / run_dir.name, ignore=shutil.ignore_patterns("last.pt"))
        os.environ["FER_CHECKPOINTS_DIR"] = str(root)
        maps = cell_map_times(args.data, root / run_dir.name, root / ".cache-maps")
        os.environ["FER_CACHE_DIR"] = str(root / ".cache")
        os.environ.pop("FER_DATA", None)
        _, first_ms = open_page(args.data, run_dir.name)        # predicts the split
        from dashboard.common import state
        state.PREDICTIONS.clear()                              # as after a restart
        at, restart_ms = open_page(args.data, run_dir.name)    # from the disk cache
        cells = busiest_cells(args.data, root / run_dir.name)
        apptest_clicks(at, cells, len(cells))                  # warm the gallery and map caches
        results = {"data": args.data, "run": run_dir.name, "first_visit_ms": round(first_ms, 1),
                   "visit_after_restart_ms": round(restart_ms, 1), "cell_maps": maps,
                   "cell_click_apptest": summary(apptest_clicks(at, cells, args.repeats)),
                   "warm_rerun_apptest": summary(apptest_reruns(at, args.repeats))}
        if args.browser:
            results["cell_click_browser"] = summary(browser_clicks(
                root, args.data, run_dir.name, cells, run_classes(run_dir), args.repeats))
            results["button_click_browser"] = summary(browser_floor(root, args.repeats))
    out = ROOT / "benchmarks" / "results" / "confusions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"first visit (predicts the val split): {results['first_visit_ms']} ms; "
          f"after a restart (disk cache): {results['visit_after_restart_ms']} ms")
    for name in ("cell_click_apptest", "warm_rerun_apptest", "cell_click_browser",
                 "button_click_browser"):
        if name in results:
            r = results[name]
            budget = "  (budget 500 ms median)" if name.startswith("cell_click") else ""
            print(f"{name:<20} n={r['n']:<3} median {r['median_ms']} ms  p90 {r['p90_ms']} ms  "
                  f"max {r['max_ms']} ms{budget}")
    print(f"predicting the {maps['val_faces']:,} val faces ({maps['device']}): "
          f"{maps['predict_split_ms']} ms")
    for name in ("off_diagonal", "diagonal"):
        m = maps[name]
        print(f"cell map, largest {name.replace('_', '-')} cell ({m['cell']}, {m['faces']:,} "
              f"faces): cold {m['cold_ms']} ms, warm (disk cache) {m['warm_ms']} ms")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
