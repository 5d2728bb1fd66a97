"""Does bf16 cost accuracy? Two checks, side by side with fp32 in one run.

1. A trained checkpoint's val predictions under bf16 autocast against its fp32 predictions:
   the share of faces whose predicted class agrees (the issue asks for at least 99%).
2. Short training runs in fp32 and in bf16 from the same seeds: validation accuracy of each,
   and their means (single runs are noisy), after one untimed epoch in each precision.

    python benchmarks/bench_precision.py [--checkpoint checkpoints/builtin-cnn3] [--data SPEC]
        [--train-data builtin:3000] [--epochs 3] [--seeds 0,1,2]

Without --data the checkpoint's own training data is used (FER2013_CSV for a FER2013 model).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device, resolve_precision
from fer_core.evaluation.predict import BATCH_SIZE, logits_on_device
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import train


@torch.no_grad()
def bf16_predictions(model: torch.nn.Module, faces: torch.Tensor) -> torch.Tensor:
    """Predicted classes with the forward pass under bf16 autocast."""
    model.eval()
    out = []
    with torch.autocast(faces.device.type, dtype=torch.bfloat16):
        for start in range(0, len(faces), BATCH_SIZE):
            x = faces[start:start + BATCH_SIZE].float().div(255)
            out.append(model(x).float().argmax(1))
    return torch.cat(out)


def agreement(checkpoint: str, data: str | None, device: torch.device) -> dict:
    ckpt = load_checkpoint(checkpoint, device)
    spec = data or ckpt.meta["config"].get("data", "builtin")
    if not spec.startswith("builtin") and os.environ.get("FER2013_CSV") and not Path(spec).exists():
        spec = os.environ["FER2013_CSV"]
    dataset = load_dataset(spec)
    rows = dataset.indices("val")
    faces = torch.from_numpy(dataset.images[rows]).to(device)
    labels = torch.from_numpy(dataset.labels[rows]).to(device)
    fp32 = logits_on_device(ckpt.model, faces).argmax(1)
    bf16 = bf16_predictions(ckpt.model, faces)
    return {"checkpoint": str(ckpt.path), "data": spec, "faces": len(rows),
            "agree": float((fp32 == bf16).float().mean()),
            "fp32_accuracy": float((fp32 == labels).float().mean()),
            "bf16_accuracy": float((bf16 == labels).float().mean())}


def short_runs(data: str, epochs: int, seeds: list[int], device: torch.device) -> dict:
    dataset = load_dataset(data)
    results = {"fp32": {}, "bf16": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in results:  # untimed: the first run on a GPU pays CUDA's and cuDNN's setup
            train(TrainConfig(data=data, epochs=1, precision=precision, device=str(device)),
                  str(Path(tmp) / f"warm-up-{precision}"), dataset)
        for seed in seeds:
            for precision in results:
                out = Path(tmp) / f"{precision}-{seed}"
                start = time.perf_counter()
                train(TrainConfig(data=data, epochs=epochs, seed=seed, precision=precision,
                                  device=str(device)), str(out), dataset)
                best = max(e["val_acc"] for e in RunFolder(out).epochs())
                results[precision][seed] = {"best_val_acc": best,
                                            "seconds": round(time.perf_counter() - start, 1)}
                print(f"  seed {seed} {precision}: best val acc {best:.4f} "
                      f"({results[precision][seed]['seconds']} s)", flush=True)
    for precision, runs in results.items():
        accs = [r["best_val_acc"] for r in runs.values()]
        results[precision] = {"runs": runs, "mean_best_val_acc": statistics.mean(accs)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--train-data", default="builtin:3000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    native = resolve_precision("auto", device) == "bf16"
    print(f"{describe_device(device)}; bf16 native here: {native}")
    agree = agreement(args.checkpoint, args.data, device)
    print(f"{agree['checkpoint']} on {agree['data']} val ({agree['faces']} faces): bf16 and fp32 "
          f"predictions agree on {agree['agree']:.2%} (target >= 99%); accuracy fp32 "
          f"{agree['fp32_accuracy']:.4f}, bf16 {agree['bf16_accuracy']:.4f}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = short_runs(args.train_data, args.epochs, seeds, device)
    print(f"{args.epochs}-epoch runs on {args.train_data}, seeds {seeds}: mean best val acc "
          f"fp32 {runs['fp32']['mean_best_val_acc']:.4f}, "
          f"bf16 {runs['bf16']['mean_best_val_acc']:.4f}")
    result = {"device": describe_device(device), "bf16_native": native, "agreement": agree,
              "short_runs": {"data": args.train_data, "epochs": args.epochs, **runs}}
    save_results(f"precision_{device.type}.json", result)


if __name__ == "__main__":
    main()
