"""Activation maximization speed and success, each figure beside its baseline in the same run.

Speed, on cnn3's last conv block (block3.relu), 128 steps, per filter:
- the engine with 64 filters in one batch (`filters.visualize`);
- a naive loop: the whole model's forward, weight gradients computed too, one filter at a time
  (timed on --naive filters and reported per filter);
- the engine one filter at a time (timed on --single filters, per filter).
The issue asks: the batch at least 3x faster per filter than the naive loop, no slower than
one-filter runs, and one filter x 128 steps within 3 s.

Success: for --success (8) random filters of each conv block's output, the optimized image's
mean activation divided by the highest mean activation any face of the val split reaches (>= 1
means the image beats every real face); --success 0 skips it.

After the ascent: what the Filters page computes once a run ends, for 16 filters of the same
layer on the val split of --data: the real-face statistics (every val face through the model up
to the layer, into an empty cache), the same read back from the cache, and the grid of each
filter's image beside its top faces (composed and PNG-encoded), beside the bare forward of the
whole model over the same faces (the floor of any pass over them).

The Filters page (--browser): in headless Chromium, the seconds from a click on Run to the
"(done)" caption for 16 filters x 128 steps of the same layer, against the same ascent with the
page's snapshots (`filters.maximize`, one every views.filters.jobs.SNAPSHOT_EVERY steps) and no
page, timed in this process between the page's runs. The difference is what the page's polling costs
the run on one machine (the browser shares the CPU, as when a user runs the dashboard locally).

    python benchmarks/bench_filters.py [--checkpoint checkpoints/builtin-cnn3] [--data builtin]
        [--filters 64] [--naive 4] [--single 8] [--success 8] [--device auto] [--browser]

Results are printed and saved to benchmarks/results/filters_<device>.json.
"""

import argparse
import copy
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from benchmarks.timing import bare_forward_seconds, seconds
from fer_core.data.pictures import picture
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.explain.contact_sheet import gallery_grid
from fer_core.explain.filter_stats import filter_stats
from fer_core.explain.filters import Settings, ascent_dtype, visualize
from fer_core.explain.tensors import as_input, default_batch
from fer_core.models.checkpoint import load_checkpoint

LAYER, STEPS = "block3.relu", 128
PAGE_FILTERS, PAGE_RUNS = 16, 3  # the page's default choice (0-15) and timed runs
TOP_FACES = 4  # dashboard/views/filters/page.py: each filter's top real faces beside its image


def naive(model: torch.nn.Module, shape: tuple[int, int, int], layer: str, channel: int,
          device: torch.device) -> None:
    """The textbook loop: full forward to the logits, a hook keeping the layer's output, every
    weight's gradient computed, Adam on sigmoid pixels (one image of `shape`, C x H x W)."""
    net = copy.deepcopy(model).eval().requires_grad_(True)
    kept = {}
    net.get_submodule(layer).register_forward_hook(lambda _m, _i, out: kept.update(out=out))
    values = torch.zeros(1, *shape, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([values], lr=0.05)
    for _ in range(STEPS):
        optimizer.zero_grad()
        net.zero_grad()
        net(torch.sigmoid(values))
        (-kept["out"][0, channel].mean()).backward()
        optimizer.step()


def speed(ckpt, options: dict, device: torch.device, args) -> dict:
    """Per-filter seconds: the 64-filter batch (timed before and after the others), and
    one-filter engine runs and naive runs alternating, so machine noise hits all alike."""
    settings, task = Settings(steps=STEPS), ckpt.task
    filters = list(range(args.filters))
    visualize(ckpt.model, ckpt.arch, options, LAYER, [0], Settings(steps=2), task=task)  # warm-up

    def batch() -> float:
        return seconds(lambda: visualize(ckpt.model, ckpt.arch, options, LAYER, filters, settings,
                                         task=task), device) / len(filters)

    batches, singles, naives = [batch()], [], []
    for f in filters[:max(args.single, args.naive)]:
        if len(singles) < args.single:
            singles.append(seconds(lambda f=f: visualize(ckpt.model, ckpt.arch, options, LAYER,
                                                         [f], settings, task=task), device))
        if len(naives) < args.naive:
            naives.append(seconds(lambda f=f: naive(ckpt.model, task.shape, LAYER, f, device),
                                  device))
    batches.append(batch())
    per_batch, single, slow = np.median(batches), np.median(singles), np.median(naives)
    print(f"{LAYER}, {STEPS} steps, per filter (ascent precision: "
          f"{'bf16' if ascent_dtype('auto', device) else 'fp32'}):")
    print(f"  engine, {len(filters)} filters in one batch (median of 2): {per_batch:7.3f} s")
    print(f"  engine, one filter at a time (median of {len(singles)}): {single:7.3f} s "
          f"(batch speed-up {single / per_batch:.1f}x; asked: >= 1x); one filter x {STEPS} "
          f"steps: {single:.2f} s (asked: <= 3 s)")
    print(f"  naive loop, fp32 (median of {len(naives)}): {slow:7.3f} s "
          f"(engine batch {slow / per_batch:.1f}x faster; asked: >= 3x)")
    return {"filters": len(filters), "batch_per_filter_s": round(float(per_batch), 4),
            "single_s": round(float(single), 4), "naive_s": round(float(slow), 4)}


def success(ckpt, options: dict, dataset, count: int) -> dict:
    """Per conv block: the optimized activation over the best real face's, for `count`
    filters."""
    ratios = {}
    for layer in [e.name for e in ckpt_layers(ckpt) if e.kind == "relu" and e.size]:
        stats = filter_stats(ckpt.model, ckpt.path, dataset, "val", layer, k=1)
        chosen = sorted(np.random.default_rng(0).choice(len(stats.max_activation), count,
                                                       replace=False).tolist())
        result = visualize(ckpt.model, ckpt.arch, options, layer, chosen, Settings(steps=STEPS),
                           task=ckpt.task)
        ratio = result.activations / np.maximum(stats.max_activation[chosen], 1e-6)
        ratios[layer] = {"filters": chosen, "ratio": np.round(ratio, 2).tolist()}
        print(f"  {layer:<14} optimized / best real face: min {ratio.min():.2f}, median "
              f"{np.median(ratio):.2f}, max {ratio.max():.2f} (filters {chosen})")
    return ratios


def after_ascent(ckpt, dataset, device: torch.device) -> dict:
    """Seconds of what the page computes once a run ends, beside the bare forward of the whole
    model over the same val faces."""
    rows = dataset.indices("val")
    faces = torch.from_numpy(dataset.images[rows]).to(device)
    batch = default_batch(device)
    batches = [as_input(faces[i:i + batch]) for i in range(0, len(faces), batch)]
    bare_forward_seconds(ckpt.model, batches[:1], device)  # warm-up
    bare = bare_forward_seconds(ckpt.model, batches, device)

    def stats():
        return filter_stats(ckpt.model, ckpt.path, dataset, "val", LAYER, k=TOP_FACES)

    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, FER_CACHE_DIR=tmp):
        computed = seconds(stats, device)
        cached = seconds(stats, device)
        result = stats()
    grid = seconds(lambda: grid_png(dataset, rows, result))
    print(f"after the ascent, {LAYER} over {len(rows):,} val faces ({len(batches)} batches of "
          f"{batch}): statistics {computed:.2f} s (the bare forward of the whole model over "
          f"them: {bare:.2f} s); read back from the cache {cached:.3f} s; grid of "
          f"{PAGE_FILTERS} filters x {TOP_FACES} faces {grid:.3f} s")
    return {"faces": len(rows), "batches": len(batches), "stats_s": round(computed, 3),
            "bare_s": round(bare, 3), "cached_s": round(cached, 4), "grid_s": round(grid, 4)}


def grid_png(dataset, rows, stats) -> bytes:
    """The page's finished grid for PAGE_FILTERS filters (grey stand-ins for their images)."""
    tiles, captions = [], []
    for f in range(PAGE_FILTERS):
        tiles.append(np.full_like(picture(dataset.images[rows[0]]), 128))
        captions.append((f"filter {f}", "1.00"))
        for position, value in zip(stats.top_positions[f], stats.top_values[f]):
            tiles.append(picture(dataset.images[rows[position]]))
            captions.append((f"#{position}", f"{value:.2f}"))
    buffer = io.BytesIO()
    gallery_grid(np.stack(tiles), captions, columns=1 + TOP_FACES, scale=2).save(buffer, "PNG")
    return buffer.getvalue()


def page_speed(checkpoint: Path) -> dict:
    """Run to "(done)" on the Filters page (PAGE_RUNS times, after one untimed run that also
    computes the val faces' statistics), alternating with the same ascent in this process."""
    from browser_helpers import BROWSER_ARGS, CHROMIUM, TALL, filters_done, streamlit_server
    from playwright.sync_api import sync_playwright

    from dashboard.views.filters.jobs import SNAPSHOT_EVERY
    from fer_core.explain.filters import maximize

    cpu = torch.device("cpu")  # where streamlit_server runs the page
    ckpt = load_checkpoint(checkpoint, cpu)
    options, filters = ckpt.arch_options, list(range(PAGE_FILTERS))
    settings = Settings(steps=STEPS)

    def bare() -> None:
        for _ in maximize(ckpt.model, ckpt.arch, options, LAYER, filters, settings,
                          every=SNAPSHOT_EVERY, task=ckpt.task):
            pass

    done = filters_done(PAGE_FILTERS, STEPS)
    pages, bares = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(checkpoint, root / checkpoint.name,
                        ignore=shutil.ignore_patterns("last.pt"))
        with streamlit_server(root / "streamlit.log", FER_CHECKPOINTS_DIR=str(root),
                              FER_CACHE_DIR=str(root / "cache")) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport=TALL)
            page.set_default_timeout(300_000)
            page.goto(f"{url}/filters?data=builtin:300&run={checkpoint.name}")
            page.get_by_text("Choose a layer and filters, then Run").first.wait_for()
            for i in range(PAGE_RUNS + 1):
                caption = page.get_by_text(done).first
                start = time.perf_counter()
                page.locator(".st-key-fi_run").get_by_role("button", name="Run").click()
                if i:
                    caption.wait_for(state="detached")
                caption.wait_for()
                if i:
                    pages.append(time.perf_counter() - start)
                    bares.append(seconds(bare, cpu))
            browser.close()
    page_s, bare_s = float(np.median(pages)), float(np.median(bares))
    print(f"Filters page, {PAGE_FILTERS} filters x {STEPS} steps, Run to done (median of "
          f"{len(pages)}): {page_s:.2f} s; the same ascent without the page: {bare_s:.2f} s")
    return {"filters": PAGE_FILTERS, "steps": STEPS, "page_s": round(page_s, 3),
            "bare_s": round(bare_s, 3), "page_runs_s": [round(t, 3) for t in pages],
            "bare_runs_s": [round(t, 3) for t in bares]}


def ckpt_layers(ckpt):
    from fer_core.models.architectures import layer_registry

    return layer_registry(ckpt.arch, ckpt.task, **ckpt.arch_options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--data", default="builtin")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--naive", type=int, default=4)
    parser.add_argument("--single", type=int, default=8)
    parser.add_argument("--success", type=int, default=8, help="filters per block (0: skip)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--browser", action="store_true", help="also time a run on the page")
    args = parser.parse_args()
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    options = ckpt.arch_options
    print(f"{ckpt.arch} ({Path(args.checkpoint).name}), {describe_device(device)}")
    results = {"speed": speed(ckpt, options, device, args)}
    dataset = load_dataset(args.data)
    results["after"] = after_ascent(ckpt, dataset, device)
    if args.success:
        print(f"success on {args.data} val:")
        results["success"] = success(ckpt, options, dataset, args.success)
    if args.browser:
        results["page"] = page_speed(Path(args.checkpoint).resolve())
    out = ROOT / "benchmarks" / "results" / f"filters_{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "device": device.type, **results},
                              indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
