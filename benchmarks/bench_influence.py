"""TracIn on the last layer (`fer_core.explain.influence`) vs a per-face autograd loop, in one run.

Ours: each snapshot's training features and errors from the prediction cache (cold: one pass over
the split per snapshot; warm: read back), then one face's proponents and opponents (its forward at
each snapshot and a few matrix-vector products), and the whole self-influence ranking. The
baseline takes each training face's last-layer gradient by autograd (forward, cross-entropy,
`torch.autograd.grad` on a copy of the final layer's weights) on a subset, and extrapolates to the
split; a query's scores then also need the dot products, left out (in the baseline's favour).

    python benchmarks/bench_influence.py [--checkpoint RUN] [--data PATH|builtin] [--subset 256]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.evaluation.predict import logits_on_device
from fer_core.explain.influence import (
    build_index,
    checkpoint_loader,
    ranked_self_influence,
    top_positions,
)
from fer_core.models.architectures import final_linear_name
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.snapshots import checkpoint_snapshots


def per_face_gradients_s(model: nn.Module, faces: np.ndarray, labels: np.ndarray) -> float:
    """Seconds for the last-layer gradient of each face, one face per autograd call."""
    final = model.get_submodule(final_linear_name(model))
    weight, bias = (p.detach().clone().requires_grad_(True) for p in (final.weight, final.bias))
    captured = []
    handle = final.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    start = time.perf_counter()
    try:
        for face, label in zip(faces, labels):
            captured.clear()
            with torch.no_grad():
                model(torch.from_numpy(face).float().div(255)[None])
            logits = nn.functional.linear(captured[0], weight, bias)
            loss = nn.functional.cross_entropy(logits, torch.tensor([int(label)]))
            torch.autograd.grad(loss, (weight, bias))
    finally:
        handle.remove()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/builtin-cnn3")
    parser.add_argument("--data", default=None, help="default: FER2013_CSV, else builtin")
    parser.add_argument("--subset", type=int, default=256, help="faces the baseline times")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = load_dataset(args.data or os.environ.get("FER2013_CSV") or "builtin")
    ckpt = load_checkpoint(args.checkpoint, device)
    snapshots = checkpoint_snapshots(ckpt.path, int(ckpt.meta.get("epoch", 0)))
    load = checkpoint_loader(device)  # loaded once, as the dashboard keeps its checkpoints
    with tempfile.TemporaryDirectory() as empty:  # cold: an empty prediction cache
        os.environ["FER_CACHE_DIR"] = empty
        start = time.perf_counter()
        build_index(snapshots, dataset, device, load=load)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        index = build_index(snapshots, dataset, device, load=load)
        warm_index_s = time.perf_counter() - start
    val = dataset.indices("val")
    query_s = []
    for i in range(args.repeats):
        start = time.perf_counter()
        face = torch.from_numpy(dataset.images[val[i]].copy())[None]
        predicted = int(logits_on_device(ckpt.model, face.to(device)).argmax(1))
        scores = index.scores(face, [predicted], load)[0]
        top_positions(scores, 10, 1), top_positions(scores, 10, -1)
        query_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    ranked_self_influence(index)
    self_s = time.perf_counter() - start
    n = len(index.rows)
    subset = index.rows[:args.subset]
    baseline_s = sum(per_face_gradients_s(load_checkpoint(s.path, "cpu").model, dataset.images[
        subset], dataset.labels[subset]) for s in snapshots) * n / len(subset)
    result = {"device": describe_device(device), "checkpoint": str(ckpt.path),
              "data": dataset.name, "train_faces": n, "snapshots": len(snapshots),
              "features": int(index.stages[0].train.features.shape[1]),
              "index_first_s": first_s, "index_warm_s": warm_index_s,
              "query_median_s": statistics.median(query_s), "self_influence_s": self_s,
              "baseline_subset": len(subset), "baseline_gradients_s": baseline_s}
    print(json.dumps(result, indent=2))
    save_results(f"influence_{device.type}.json", result)


if __name__ == "__main__":
    main()
