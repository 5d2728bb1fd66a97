"""The benchmarks `python -m benchmarks` runs: each script's arguments in quick and full mode, the
JSON it writes, and how that JSON becomes table rows.

Every row pairs one of our figures with its baseline from the same run. The speed-up always reads
the same way: baseline time / our time (our img/s / the baseline's img/s), so > 1 is faster.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
BUILTIN_RUN = "checkpoints/builtin-cnn3"
FER2013_RUN = "checkpoints/fer2013-cnn3"
CHROMIUM = Path("/usr/bin/chromium")  # browser benchmarks leave the full set without it
FER2013_FACES = 35_887  # rows of the Kaggle CSV, so the built-in stand-in has its size
QUICK_DATA = "builtin:2000"  # 200 val faces
FLOOR = "AppTest floor (a script of one st.write)"
USAGES = ("Training", "PublicTest", "PrivateTest")  # Kaggle names of SPLITS, in order


@dataclass(frozen=True)
class Context:
    """What the arguments depend on: the mode, FER2013 (full mode only), the Kaggle-format CSV
    that bench_load and bench_cli_start time ('' when no benchmark run needs it), Chromium."""

    quick: bool
    fer2013: str | None
    csv: str
    browser: bool

    def pick(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    def run_and_data(self) -> tuple[str, str]:
        """The checkpoint and data of the FER2013 figures (the shipped FER2013 model), or the
        built-in ones when there is no FER2013."""
        return (FER2013_RUN, self.fer2013) if self.fer2013 else (BUILTIN_RUN, "builtin")


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    results: str  # glob of the JSON the script writes in benchmarks/results
    args: Callable[[Context], list[str]]
    rows: Callable[[dict], list[dict]]
    quick: bool = True  # part of the --quick set
    needs_csv: bool = False  # times Context.csv
    browser: bool = False  # drives Chromium: left out of the full set when it is missing


def row(benchmark: str, measure: str, seconds: float, baseline: str,
        baseline_seconds: float) -> dict:
    """A time against the baseline's time: speed-up = baseline / ours."""
    return _row(benchmark, measure, "s", seconds, baseline, baseline_seconds,
                baseline_seconds / seconds if seconds > 0 else 0.0)


def rate_row(benchmark: str, measure: str, per_s: float, baseline: str,
             baseline_per_s: float) -> dict:
    """A throughput against the baseline's: speed-up = ours / baseline."""
    return _row(benchmark, measure, "img/s", per_s, baseline, baseline_per_s,
                per_s / baseline_per_s if baseline_per_s > 0 else 0.0)


def _row(benchmark: str, measure: str, unit: str, value: float, baseline: str,
         baseline_value: float, speedup: float) -> dict:
    check_positive(measure, value, baseline_value)
    return {"benchmark": benchmark, "measure": measure, "unit": unit, "value": value,
            "baseline": baseline, "baseline_value": baseline_value, "speedup": speedup}


def check_positive(measure: str, *values: float) -> None:
    """A zero (say, a time rounded away) would make a meaningless ratio: refuse it."""
    if not all(v > 0 for v in values):
        raise ValueError(f"{measure}: a figure is not positive ({values})")


def write_builtin_csv(path: Path, n: int) -> None:
    """`n` built-in faces as a Kaggle-format FER2013 CSV (emotion,pixels,Usage)."""
    from fer_core.data.builtin import make_builtin_faces

    faces = make_builtin_faces(n, seed=0)
    numbers = [str(v) for v in range(256)]
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for label, image, split in zip(faces.labels, faces.images, faces.split_codes):
            pixels = " ".join([numbers[v] for v in image.ravel().tolist()])
            f.write(f"{label},{pixels},{USAGES[split]}\n")


def load_rows(r: dict) -> list[dict]:
    source = f"{r['rows']:,} rows of {Path(r['csv']).name}"
    pandas = "pandas read_csv + row split"
    return [row("load", f"cold load (parse + cache write), {source}", r["cold_s"], pandas,
                r["baseline_s"]),
            row("load", f"warm load (cache), {source}", r["warm_median_s"], pandas,
                r["baseline_s"])]


def tree_rows(r: dict) -> list[dict]:
    source = f"{r['faces']:,} faces of {r['tree']} ({r['task']})"
    pillow = "Pillow loop, one thread"
    return [row("tree", f"cold read (decode + cache write), {source}", r["cold_median_s"],
                pillow, r["baseline_median_s"]),
            row("tree", f"cached read, {source}", r["cached_median_s"], pillow,
                r["baseline_median_s"]),
            row("tree", f"cached read and a first pass over its mapped pixels, {source}",
                r["cached_first_pass_s"], pillow, r["baseline_median_s"])]


def train_rows(r: dict) -> list[dict]:
    rows, runs = [], r["precisions"]
    epoch = f"{r['steps_per_epoch']} steps of {r['batch_size']} per epoch"
    for p, v in runs.items():
        measure = f"trainer, {p}, {epoch}"
        rows.append(rate_row("train", measure, v["trainer_images_per_s"], f"bare loop, {p}",
                             v["bare_images_per_s"]))
        if p != "fp32" and "fp32" in runs:
            rows.append(rate_row("train", measure, v["trainer_images_per_s"],
                                 "bare loop, fp32", runs["fp32"]["bare_images_per_s"]))
    return rows


def epoch_parts_rows(r: dict) -> list[dict]:
    rows = [row("epoch_parts", f"{name} optimizer step, fused", ms["fused"] / 1e3,
                "PyTorch's default step", ms["default"] / 1e3)
            for name, ms in r["optimizer_step_ms"].items()]
    rows += [row("epoch_parts", f"{arch} epoch-end checkpoint writes, background writer",
                 ms["background"] / 1e3, "torch.save + fsync inline", ms["inline"] / 1e3)
             for arch, ms in r["epoch_end_ms"].items()]
    return rows


def ddp_rows(r: dict) -> list[dict]:
    runs, setting = r["runs"], f"{r['arch']}, batch {r['batch_size']}, {r['device']}"
    return [rate_row("ddp", f"torchrun, 1 rank, {setting}", runs["ddp_1"]["images_per_s"],
                     runs["plain_1"]["name"], runs["plain_1"]["images_per_s"]),
            rate_row("ddp", f"torchrun, {r['ranks']} ranks, {setting}",
                     runs["ddp_n"]["images_per_s"], runs["plain_n"]["name"],
                     runs["plain_n"]["images_per_s"])]


def predict_rows(r: dict) -> list[dict]:
    faces = f"{r['faces']:,} {Path(r['data']).name} {r['split']} faces"
    return [row("predict", f"predict_split, {faces}", r["predict_seconds"], "bare model(x) loop",
                r["bare_seconds"])]


def attribution_rows(r: dict) -> list[dict]:
    bare, n = r["bare_backward_ms"] / 1e3, r["batched_faces"]
    faces = f"{r['faces']} val faces of {Path(r['data']).name}, {Path(r['checkpoint']).name}"
    return [row("attribution", f"{m['title']}, {faces}", m["ours_s"], "Captum direct",
                m["captum_s"]) for m in r["methods"].values()] + [
            row("attribution", "vanilla gradient, one face", r["vanilla_one_face_ms"] / 1e3,
                "bare backward()", bare),
            row("attribution", f"vanilla, {n} faces in one call (per face)",
                r["batched_ms_per_face"] / 1e3, f"{n} single-face calls (per face)",
                r["single_calls_ms_per_face"] / 1e3),
            row("attribution", "Integrated Gradients, 32 steps, one face",
                r["ig32_one_face_ms"] / 1e3, "bare backward()", bare)]


def export_rows(r: dict) -> list[dict]:
    faces = f"{r['faces']:,} {Path(r['data']).name} {r['split']} faces"
    return [rate_row("export", f"{m['title']}, export of {faces}", m["export_faces_per_s"],
                     "explain one face per call", m["naive_faces_per_s"])
            for m in r["methods"].values()]


def trust_rows(r: dict) -> list[dict]:
    return [row("trust", f"whole report, {Path(r['checkpoint']).name}, {r['faces']} faces",
                r["report_s"], "every method's maps once", r["floor_s"])]


def filters_rows(r: dict) -> list[dict]:
    s = r["speed"]
    measure = f"{s['filters']} filters in one batch (per filter)"
    rows = [row("filters", measure, s["batch_per_filter_s"], "one-filter runs", s["single_s"]),
            row("filters", measure, s["batch_per_filter_s"], "naive full-model loop",
                s["naive_s"])]
    if "after" in r:
        after = r["after"]
        rows.append(row("filters", f"real-face statistics after the ascent, {after['faces']:,} "
                        "val faces", after["stats_s"], "bare forward of the whole model over "
                        "them", after["bare_s"]))
    if "page" in r:
        page = r["page"]
        rows.append(row("filters", f"{page['filters']} filters x {page['steps']} steps on the "
                        "Filters page, Chromium, Run to done (median)", page["page_s"],
                        "the same ascent without the page", page["bare_s"]))
    return rows


def embeddings_rows(r: dict) -> list[dict]:
    f, p = r["features"], r["projection_s"]
    faces = f"{r['faces']:,} {Path(r['data']).name} {r['split']} faces"
    rows = [row("embeddings", f"features via predict_split, {faces}",
                f["predict_with_features"]["median_s"], "bare penultimate forward",
                f["bare_penultimate"]["median_s"])]
    rows += [row("embeddings", f"{title} of {faces}", p[method], "PCA", p["pca"])
             for method, title in (("tsne", "t-SNE"), ("umap", "UMAP")) if method in p]
    if "page" in r:
        page = r["page"]
        rows.append(row("embeddings", f"page warm rerun, {page['faces']:,} points (median)",
                        page["warm_rerun_ms"]["median"] / 1e3, FLOOR,
                        page["apptest_floor_ms"] / 1e3))
    return rows


def dashboard_rows(r: dict) -> list[dict]:
    floor = r["apptest_floor"]["median_ms"] / 1e3
    rows = [row("dashboard", f"{name.replace('_', ' ')}, median (budget {r[name]['budget_ms']} ms)",
                r[name]["median_ms"] / 1e3, FLOOR, floor)
            for name in ("page_switch", "sidebar_change")]
    refresh = r["training_refresh"]
    rows.append(row("dashboard", f"training refresh, median (budget {refresh['budget_ms']} ms)",
                    refresh["median_ms"] / 1e3, "the same refresh re-reading the whole history",
                    r["training_refresh_full_read"]["median_ms"] / 1e3))
    return rows


def confusions_rows(r: dict) -> list[dict]:
    click, maps = r["cell_click_apptest"], r["cell_maps"]
    rows = [row("confusions", "cell click, AppTest, median (budget 500 ms)",
                click["median_ms"] / 1e3, "warm rerun of the page, no click",
                r["warm_rerun_apptest"]["median_ms"] / 1e3)]
    if "cell_click_browser" in r:
        rows.append(row("confusions", "cell click, Chromium, median (budget 500 ms)",
                        r["cell_click_browser"]["median_ms"] / 1e3,
                        "button click of a three-line app, Chromium",
                        r["button_click_browser"]["median_ms"] / 1e3))
    predict = f"predicting the {maps['val_faces']:,} val faces"
    for m in (maps["off_diagonal"], maps["diagonal"]):
        cell = f"{m['cell']} ({m['faces']:,} faces)"
        rows += [row("confusions", f"cell map, computed, {cell}", m["cold_ms"] / 1e3, predict,
                     maps["predict_split_ms"] / 1e3),
                 row("confusions", f"cell map, from the disk cache, {cell}", m["warm_ms"] / 1e3,
                     "computing it", m["cold_ms"] / 1e3)]
    return rows


def sessions_rows(r: dict) -> list[dict]:
    """The simple interaction (the Confusions colour mode, in Chromium) while other sessions
    work, against the same with its session alone."""
    load, alone = r["simple"]["load"], r["simple"]["alone"]
    n = r["sessions_n"]
    busy = f"with {n} session{'s' if n != 1 else ''} working other pages"
    return [row("sessions", f"Confusions colour mode, Chromium, {stat}, {busy}",
                load[f"{stat}_s"], f"the same, its session alone ({stat})", alone[f"{stat}_s"])
            for stat in ("median", "p95")]


def cli_start_rows(r: dict) -> list[dict]:
    pandas = "pandas process (read_csv + split)"
    return [row("cli_start", f"`data` process, cold, {Path(r['csv']).name}", r["data_cold_s"],
                pandas, r["baseline_pandas_s"]),
            row("cli_start", f"`data` process, warm, {Path(r['csv']).name}", r["data_warm_s"],
                pandas, r["baseline_pandas_s"]),
            row("cli_start", "`data` process, warm", r["data_warm_s"],
                "`import torch, torchvision` process", r["import_torch_torchvision_s"])]


def builtin_rows(r: dict) -> list[dict]:
    return [row("builtin", f"make_builtin_faces({r['n']:,}), per face",
                r["median_seconds"] / r["n"], "render_faces one face per call (per face)",
                r["loop_seconds_per_face"])]


def precision_rows(r: dict) -> list[dict]:
    runs, agree = r["short_runs"], r["agreement"]
    mean_s = {p: sum(v["seconds"] for v in runs[p]["runs"].values()) / len(runs[p]["runs"])
              for p in ("fp32", "bf16")}
    measure = (f"{runs['epochs']}-epoch run on {runs['data']}, bf16 (mean of "
               f"{len(runs['bf16']['runs'])}; best val acc {runs['bf16']['mean_best_val_acc']:.3f}"
               f" vs {runs['fp32']['mean_best_val_acc']:.3f}; predictions agree "
               f"{agree['agree']:.1%})")
    return [row("precision", measure, mean_s["bf16"], "the same run in fp32", mean_s["fp32"])]


def influence_rows(r: dict) -> list[dict]:
    setting = (f"{r['train_faces']:,} training faces x {r['snapshots']} snapshot"
               f"{'s' if r['snapshots'] != 1 else ''}, {Path(r['checkpoint']).parent.name}")
    baseline = f"per-face autograd last-layer gradients (extrapolated from {r['baseline_subset']})"
    grads = r["baseline_gradients_s"]
    return [row("influence", f"one face's proponents and opponents, cached features, {setting}",
                r["query_median_s"], baseline, grads),
            row("influence", f"self-influence ranking, cached features, {setting}",
                r["index_warm_s"] + r["self_influence_s"], baseline, grads),
            row("influence", f"features and errors, cold (a pass per snapshot), {setting}",
                r["index_first_s"], baseline, grads)]


def load_args(ctx: Context) -> list[str]:
    return ["--csv", ctx.csv]


def tree_args(ctx: Context) -> list[str]:
    return ctx.pick(["--faces", "2000", "--repeats", "1"], [])


def train_args(ctx: Context) -> list[str]:
    return ["--head", "flat", *ctx.pick(["--faces", "512", "--repeats", "1"], [])]


def epoch_parts_args(ctx: Context) -> list[str]:
    return ctx.pick(["--archs", "cnn3", "--repeats", "2"], [])


def ddp_args(ctx: Context) -> list[str]:
    return ctx.pick(["--data", "builtin:1000", "--epochs", "2"], [])


def predict_args(ctx: Context) -> list[str]:
    run, _ = ctx.run_and_data()
    data = ctx.fer2013 or ctx.pick(QUICK_DATA, "builtin:35890")
    return ["--data", data, "--checkpoint", run, *ctx.pick(["--repeats", "2"], [])]


def attribution_args(ctx: Context) -> list[str]:
    """Full mode: the script's defaults (200 FER2013 val faces when FER2013_CSV is set)."""
    return ctx.pick(["--data", QUICK_DATA, "--checkpoint", BUILTIN_RUN, "--faces", "8",
                     "--repeats", "3"], [])


def export_args(ctx: Context) -> list[str]:
    return ctx.pick(["--data", QUICK_DATA, "--methods", "vanilla,gradcam,guided", "--naive", "8"],
                    [])


def trust_args(ctx: Context) -> list[str]:
    run, data = ctx.run_and_data()
    return ["--checkpoint", run, "--data", data, "--faces", ctx.pick("4", "16")]


def filters_args(ctx: Context) -> list[str]:
    return ctx.pick(["--filters", "8", "--single", "1", "--naive", "1", "--success", "0"],
                    ["--browser"] if ctx.browser else [])


def embeddings_args(ctx: Context) -> list[str]:
    run, _ = ctx.run_and_data()
    if ctx.quick:
        return ["--data", QUICK_DATA, "--checkpoint", run, "--repeats", "1"]
    return ["--data", ctx.fer2013 or "builtin:35890", "--checkpoint", run, "--page", "train"]


def dashboard_args(ctx: Context) -> list[str]:
    return ctx.pick(["--repeats", "6"], [])


def confusions_args(ctx: Context) -> list[str]:
    run, data = ctx.run_and_data()
    browser = ["--browser"] if ctx.browser and not ctx.quick else []
    return ["--data", ctx.pick(QUICK_DATA, data), "--run", run,
            *ctx.pick(["--repeats", "6"], browser)]


def sessions_args(ctx: Context) -> list[str]:
    run, data = ctx.run_and_data()
    return ["--data", data, "--run", run]


def influence_args(ctx: Context) -> list[str]:
    run, data = ctx.run_and_data()
    return ["--checkpoint", run, "--data", ctx.pick(QUICK_DATA, data),
            *ctx.pick(["--subset", "64", "--repeats", "2"], [])]


def cli_start_args(ctx: Context) -> list[str]:
    return ["--csv", ctx.csv, *ctx.pick(["--repeats", "1"], [])]


def builtin_args(ctx: Context) -> list[str]:
    return ctx.pick(["--n", "2000", "--repeats", "1", "--loop", "50"], [])


def precision_args(ctx: Context) -> list[str]:
    run, data = ctx.run_and_data()
    data_args = ["--data", data] if ctx.fer2013 else []
    return ["--checkpoint", run, *data_args,
            *ctx.pick(["--train-data", "builtin:600", "--epochs", "1", "--seeds", "0"], [])]


BENCHMARKS = (
    Benchmark("builtin", "bench_builtin.py", "builtin.json", builtin_args, builtin_rows),
    Benchmark("load", "bench_load.py", "load.json", load_args, load_rows,
              needs_csv=True),
    Benchmark("tree", "bench_tree.py", "tree.json", tree_args, tree_rows),
    Benchmark("cli_start", "bench_cli_start.py", "cli_start.json", cli_start_args,
              cli_start_rows, quick=False, needs_csv=True),
    Benchmark("train", "bench_train.py", "train_cnn3_*.json", train_args, train_rows),
    Benchmark("epoch_parts", "bench_epoch_parts.py", "epoch_parts.json", epoch_parts_args,
              epoch_parts_rows),
    Benchmark("ddp", "bench_ddp.py", "ddp_*.json", ddp_args, ddp_rows, quick=False),
    Benchmark("precision", "bench_precision.py", "precision_*.json", precision_args,
              precision_rows, quick=False),
    Benchmark("predict", "bench_predict.py", "predict_*.json", predict_args, predict_rows),
    Benchmark("attribution", "bench_attribution.py", "attribution_*.json", attribution_args,
              attribution_rows),
    Benchmark("export", "bench_export.py", "export_*.json", export_args, export_rows),
    Benchmark("trust", "bench_trust.py", "trust_*.json", trust_args, trust_rows),
    Benchmark("filters", "bench_filters.py", "filters_*.json", filters_args, filters_rows),
    Benchmark("embeddings", "bench_embeddings.py", "embeddings.json", embeddings_args,
              embeddings_rows),
    Benchmark("dashboard", "bench_dashboard.py", "dashboard.json", dashboard_args,
              dashboard_rows),
    Benchmark("confusions", "bench_confusions.py", "confusions.json", confusions_args,
              confusions_rows),
    Benchmark("influence", "bench_influence.py", "influence_*.json", influence_args,
              influence_rows),
    Benchmark("sessions", "bench_sessions.py", "sessions.json", sessions_args, sessions_rows,
              quick=False, browser=True),
)


def select(only: str | None, quick: bool) -> list[Benchmark]:
    """The benchmarks named in `only` (comma-separated; any of them, even outside the quick
    set), else the quick or the full set."""
    if not only:
        return [b for b in BENCHMARKS if (b.quick or not quick)
                and (not b.browser or CHROMIUM.exists())]
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name: b for b in BENCHMARKS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
