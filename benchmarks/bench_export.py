"""Exporting a split's explanations: faces per second per method, the batched export beside the
naive loop that explains one face at a time, in one run.

- export: `fer_core.explain.export.export_split` of every face of the split with one method,
  into a fresh folder (chunks of 512 faces explained in batches, written to disk and hashed; the
  predictions and features, cached once beforehand, are not timed);
- naive loop: `explain` called on one face at a time (as a page explains the face it shows) for
  the split's first --naive faces, nothing written.

Occlusion is left out of the default methods (its sliding windows cost about 50 gradients a
face: minutes on a CPU); name it in --methods to time it.

    python benchmarks/bench_export.py [--checkpoint checkpoints/builtin-cnn3]
        [--data builtin:3000] [--split val] [--methods vanilla,gradcam,...] [--naive 16]
        [--batch N] [--device auto]

Results are printed and saved to benchmarks/results/export_<device>.json.
"""

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results, seconds
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.evaluation.predict import cached_predict_split
from fer_core.explain.attribution import METHODS, Target, explain
from fer_core.explain.export import ExportRequest, export_split, resolve_methods
from fer_core.models.checkpoint import load_checkpoint

DEFAULT_METHODS = ",".join(m for m in METHODS if m != "occlusion")


def export_seconds(request: ExportRequest, folder: Path, device: torch.device,
                   batch: int | None) -> float:
    return seconds(lambda: export_split(request, folder, device, batch=batch), device)


def naive_seconds(model, faces: torch.Tensor, method: str, params: dict,
                  device: torch.device) -> float:
    """One `explain` call per face."""
    return seconds(lambda: [explain(model, faces[i:i + 1], method, Target("predicted"),
                                    **params) for i in range(len(faces))], device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--data", default="builtin:3000")
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--naive", type=int, default=16, help="faces of the naive loop")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    model = ckpt.model.requires_grad_(False)
    dataset = load_dataset(args.data)
    rows = dataset.indices(args.split)
    naive_faces = torch.from_numpy(dataset.images[rows[:args.naive]]).to(device)
    methods = resolve_methods(ckpt, {m.strip(): {} for m in args.methods.split(",")})
    figures = {"device": describe_device(device),
               "machine": platform.processor() or platform.machine(),
               "torch_threads": torch.get_num_threads(), "checkpoint": str(ckpt.path),
               "data": args.data, "split": args.split, "faces": len(rows),
               "naive_faces": len(naive_faces), "batch": args.batch, "methods": {}}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["FER_CACHE_DIR"] = str(Path(scratch) / "cache")
        cached_predict_split(model, ckpt.path, dataset, args.split, device, features=True)
        for method, params in methods.items():
            request = ExportRequest(model, ckpt.path, ckpt.task, dataset, args.split,
                                    {method: params})
            explain(model, naive_faces[:1], method, Target("predicted"), **params)  # warm-up
            batched = export_seconds(request, Path(scratch) / method, device, args.batch)
            naive = naive_seconds(model, naive_faces, method, params, device)
            figures["methods"][method] = {
                "title": METHODS[method].title, "params": params,
                "export_s": batched, "export_faces_per_s": len(rows) / batched,
                "naive_s": naive, "naive_faces_per_s": len(naive_faces) / naive,
                "speedup": (len(rows) / batched) / (len(naive_faces) / naive)}
            m = figures["methods"][method]
            print(f"{m['title']:<22} export {m['export_faces_per_s']:8.1f} faces/s   one face "
                  f"per call {m['naive_faces_per_s']:8.1f} faces/s   ({m['speedup']:.1f}x)",
                  flush=True)
    print(f"{figures['device']}, {figures['torch_threads']} torch threads; {len(rows)} "
          f"{args.split} faces of {args.data} exported, the naive loop on {len(naive_faces)}")
    save_results(f"export_{device.type}.json", figures)


if __name__ == "__main__":
    main()
