"""Embeddings speed: penultimate features, PCA, t-SNE (and UMAP) of a split, and the Embeddings
page with a large split and warm caches.

Features: the prediction path with features (`predict_split(..., features=True)`: uint8 faces
to the device once, fp32 forward, a hook on the final linear layer keeping its input) against
two baselines in the same run, alternating so machine noise hits them alike: the same path
without features (what the hook costs), and a bare forward to the penultimate layer (the model
with its final linear layer replaced by an identity, over float batches prepared beforehand).
Model then Embeddings: the forward passes and seconds of the pages' path (`cached_predict_split`:
probabilities for Model, then features for Embeddings) with an empty disk cache, beside the
two passes it cost before the features were kept from the first (probabilities, then both).
Projections: PCA against t-SNE (and UMAP), each after a small warm-up run (scikit-learn's
import, numba's compilation), timed on the features of the same split. The issue's budgets on
this CPU: t-SNE of FER2013 PublicTest (3,589 faces) within 30 s, PCA within 1 s, and the page
with 28,709 points within 1 s median with caches warm (timed as AppTest script runs, with
--page, beside AppTest rerunning a script of one st.write: the framework's floor).

    python benchmarks/bench_embeddings.py [--data PATH|builtin:N] [--split val]
        [--checkpoint checkpoints/builtin-cnn3] [--repeats 3] [--page train]

Without --data, FER2013_CSV is used when set (PublicTest is the val split: 3,589 faces; train
has 28,709), else 35,890 built-in faces stand in (3,589 in val, 28,7xx in train). The shipped
builtin-cnn3 is the default model on both: its features of real faces mean little, but they
cost the same to compute and to project as a FER2013 model's.
"""

import argparse
import copy
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import apptest_floor_ms, bare_forward_seconds, save_results
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.evaluation import predict
from fer_core.evaluation.predict import BATCH_SIZE, cached_predict_split, predict_split
from fer_core.explain.embeddings import project
from fer_core.models.architectures import final_linear_name
from fer_core.models.checkpoint import load_checkpoint, resolve_checkpoint_path

BUILTIN = "builtin:35890"


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def penultimate_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose final linear layer is an identity: its output is the features."""
    bare = copy.deepcopy(model)
    bare.set_submodule(final_linear_name(bare), torch.nn.Identity())
    return bare.eval()


def features_race(model, dataset, split: str, device, repeats: int) -> dict:
    """Images per second of the three ways to the features, medians over alternating runs."""
    rows = dataset.indices(split)
    faces = torch.from_numpy(dataset.images[rows]).to(device).float().div(255)
    batches = list(faces.split(BATCH_SIZE))
    bare = penultimate_model(model)
    times = {"predict_with_features": [], "predict_without": [], "bare_penultimate": []}
    for _ in range(repeats):
        times["predict_with_features"].append(
            timed(predict_split, model, dataset, split, device, features=True)[0])
        times["predict_without"].append(timed(predict_split, model, dataset, split, device)[0])
        times["bare_penultimate"].append(bare_forward_seconds(bare, batches, device))
    return {name: {"median_s": round(statistics.median(t), 3),
                   "images_per_s": round(len(rows) / statistics.median(t), 1)}
            for name, t in times.items()}


def model_then_embeddings(model, path: Path, dataset, split: str, device, repeats: int) -> dict:
    """Forward passes and median seconds of Model then Embeddings on `split`, each repeat with
    an empty disk cache: the pages' path against the two passes of before, alternating."""
    passes, real = [], predict.predict_split

    def counted(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    def pages_path() -> None:
        os.environ["FER_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_embeddings_cache_")
        cached_predict_split(model, path, dataset, split, device)
        cached_predict_split(model, path, dataset, split, device, features=True)
        shutil.rmtree(os.environ["FER_CACHE_DIR"], ignore_errors=True)

    def two_passes() -> None:
        counted(model, dataset, split, device)
        counted(model, dataset, split, device, features=True)

    results, cache_dir = {}, os.environ.get("FER_CACHE_DIR")
    predict.predict_split = counted
    try:
        for name, work in (("one_pass", pages_path), ("two_passes", two_passes)) * repeats:
            passes.clear()
            seconds = timed(work)[0]
            entry = results.setdefault(name, {"passes": len(passes), "s": []})
            entry["s"].append(seconds)
    finally:
        predict.predict_split = real
        os.environ.pop("FER_CACHE_DIR")
        if cache_dir is not None:
            os.environ["FER_CACHE_DIR"] = cache_dir
    return {name: {"forward_passes": r["passes"], "median_s": round(statistics.median(r["s"]), 2)}
            for name, r in results.items()}


def projections(features, methods: list[str], repeats: int) -> dict:
    """Seconds per projection (PCA: median of `repeats`; the others once), each after a warm-up
    on 500 faces: first calls import scikit-learn, and numba compiles UMAP."""
    out = {}
    for method in methods:
        project(features[:500], method)
        runs = repeats if method == "pca" else 1
        out[method] = round(statistics.median(timed(project, features, method)[0]
                                              for _ in range(runs)), 4)
    return out


def page_renders(data: str, checkpoint: Path, split: str, repeats: int) -> dict:
    """AppTest: the first visit (features and PCA computed), then reruns with warm caches."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        run = resolve_checkpoint_path(checkpoint).parent
        shutil.copytree(run, Path(tmp) / run.name, ignore=shutil.ignore_patterns("last.pt"))
        os.environ["FER_CHECKPOINTS_DIR"] = tmp
        os.environ.pop("FER_DATA", None)
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=3600)
        at.query_params.update({"data": data, "run": run.name, "split": split, "method": "pca"})
        at.run()
        first, _ = timed(at.switch_page("views/embeddings/page.py").run)
        assert not at.exception, [e.value for e in at.exception]
        warm = [timed(at.run)[0] * 1000 for _ in range(repeats)]
        colours = []
        for colour in ("pred", "correct", "confidence", "true"):
            at.segmented_control(key="em_colour").set_value(colour)
            colours.append(timed(at.run)[0] * 1000)
    return {"split": split, "faces": len(load_dataset(data).indices(split)),
            "first_visit_s": round(first, 1),
            "warm_rerun_ms": {"median": round(statistics.median(warm), 1),
                              "max": round(max(warm), 1)},
            "colouring_change_ms": {"median": round(statistics.median(colours), 1),
                                    "max": round(max(colours), 1)},
            "apptest_floor_ms": round(statistics.median(apptest_floor_ms(repeats)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FER2013_CSV") or BUILTIN)
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--page", default=None, metavar="SPLIT",
                        help="also time the page on this split (e.g. train) with warm caches")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = load_dataset(args.data)
    model = load_checkpoint(args.checkpoint, device).model
    n = len(dataset.indices(args.split))
    print(f"{args.data}, split {args.split} ({n:,} faces), {args.checkpoint}, "
          f"{describe_device(device)}, {torch.get_num_threads()} torch threads")
    results = {"data": args.data, "split": args.split, "faces": n, "device": device.type,
               "features": features_race(model, dataset, args.split, device, args.repeats)}
    for name, r in results["features"].items():
        print(f"  features, {name:<22} {r['median_s']:7.2f} s  {r['images_per_s']:8.1f} img/s")
    path = resolve_checkpoint_path(args.checkpoint)
    results["model_then_embeddings"] = model_then_embeddings(model, path, dataset, args.split,
                                                             device, args.repeats)
    for name, r in results["model_then_embeddings"].items():
        print(f"  Model then Embeddings, {name:<10} {r['forward_passes']} forward passes "
              f"{r['median_s']:7.2f} s")
    features = predict_split(model, dataset, args.split, device, features=True).features
    methods = ["pca", "tsne"] + (["umap"] if importlib.util.find_spec("umap") else [])
    results["projection_s"] = projections(features, methods, args.repeats)
    for method, seconds in results["projection_s"].items():
        print(f"  {method:<5} of {n:,} faces x {features.shape[1]} features: {seconds:7.2f} s")
    if args.page:
        os.environ["FER_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_embeddings_cache_")
        results["page"] = page_renders(args.data, Path(args.checkpoint), args.page,
                                       args.repeats * 5)
        shutil.rmtree(os.environ["FER_CACHE_DIR"], ignore_errors=True)
        page = results["page"]
        print(f"  page, {page['faces']:,} {args.page} faces: first visit {page['first_visit_s']}"
              f" s; warm rerun median {page['warm_rerun_ms']['median']} ms (max "
              f"{page['warm_rerun_ms']['max']}); colouring change median "
              f"{page['colouring_change_ms']['median']} ms; AppTest floor "
              f"{page['apptest_floor_ms']} ms")
    save_results("embeddings.json", results)


if __name__ == "__main__":
    main()
