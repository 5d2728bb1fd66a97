"""Saliency speed, each figure beside its baseline in the same run.

- vanilla gradient of one face through `attribution.explain` vs a bare `backward()` (the input
  gradient of one logit, nothing else);
- 64 faces in one batched `explain` call vs 64 single-face calls (time per face);
- Integrated Gradients, 32 steps, one face.

The issue asks for vanilla <= 50 ms, batched no slower per face than single calls, and IG (32
steps) <= 1 s. Runs alternate so machine noise hits both sides alike; medians are reported.

    python benchmarks/bench_attribution.py [--checkpoint checkpoints/builtin-cnn3]
        [--device auto] [--repeats 7]

Results are printed and saved to benchmarks/results/attribution_<device>.json.
"""

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import seconds
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.explain.attribution import Target, explain
from fer_core.models.checkpoint import load_checkpoint

BATCH = 64


def bare_backward(model, face: torch.Tensor) -> torch.Tensor:
    """The floor: one forward, `backward()` of the top logit into the input, nothing else."""
    x = face.float().div(255).unsqueeze(1).requires_grad_(True)
    logits = model(x)
    logits[0, logits[0].argmax()].backward()
    return x.grad


def medians(cases: dict, repeats: int, device: torch.device) -> dict:
    """Median seconds per case, the cases alternating within each repeat (one warm-up run)."""
    for work in cases.values():
        work()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, work in cases.items():
            times[name].append(seconds(work, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = choose_device(args.device)
    model = load_checkpoint(args.checkpoint, device).model.requires_grad_(False)
    faces = torch.from_numpy(load_dataset(f"builtin:{BATCH}").images).to(device)
    one = faces[:1]
    target = Target("predicted")
    cases = {
        "bare_backward_1": lambda: bare_backward(model, one),
        "vanilla_1": lambda: explain(model, one, "vanilla", target),
        "vanilla_64_batched": lambda: explain(model, faces, "vanilla", target),
        "vanilla_64_single_calls": lambda: [explain(model, faces[i:i + 1], "vanilla", target)
                                            for i in range(BATCH)],
        "ig32_1": lambda: explain(model, one, "ig", target, steps=32),
    }
    t = medians(cases, args.repeats, device)
    figures = {
        "device": describe_device(device),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "bare_backward_ms": 1e3 * t["bare_backward_1"],
        "vanilla_one_face_ms": 1e3 * t["vanilla_1"],
        "batched_ms_per_face": 1e3 * t["vanilla_64_batched"] / BATCH,
        "single_calls_ms_per_face": 1e3 * t["vanilla_64_single_calls"] / BATCH,
        "batched_speedup": t["vanilla_64_single_calls"] / t["vanilla_64_batched"],
        "ig32_one_face_ms": 1e3 * t["ig32_1"],
        "repeats": args.repeats,
    }
    print(f"{figures['device']}, {figures['torch_threads']} torch threads, medians of "
          f"{args.repeats}")
    print(f"vanilla gradient, one face:  {figures['vanilla_one_face_ms']:.1f} ms "
          f"(bare backward(): {figures['bare_backward_ms']:.1f} ms; asked: <= 50 ms)")
    print(f"64 faces, one batched call:  {figures['batched_ms_per_face']:.2f} ms/face vs 64 "
          f"single calls {figures['single_calls_ms_per_face']:.2f} ms/face "
          f"(speed-up {figures['batched_speedup']:.1f}x)")
    print(f"Integrated Gradients, 32 steps, one face: {figures['ig32_one_face_ms']:.0f} ms "
          f"(asked: <= 1000 ms)")
    out = ROOT / "benchmarks" / "results" / f"attribution_{device.type}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
