"""The prediction path vs a bare `model(x)` loop over ready tensors, in one run.

`fer_core.evaluation.predict.predict_split` moves a split's uint8 faces to the device once,
converts each batch to floats there, runs the model in fp32, takes the softmax and copies the
probabilities to the host once. The bare loop only runs `model(x)` on float batches prepared
beforehand, at the same batch size. The issue asks for predict >= 0.9x the bare loop's images/s.
Runs alternate so machine noise hits both alike; medians are compared.

    python benchmarks/bench_predict.py [--data PATH|builtin] [--split val] [--arch cnn3]
        [--checkpoint PATH] [--repeats 5]

Without --data, FER2013_CSV is used when set (PublicTest is the val split: 3,589 faces), else
3,589 built-in faces stand in.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import bare_forward_seconds, save_results
from fer_core.data.matching import for_model
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.evaluation.predict import BATCH_SIZE, predict_split
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint

PUBLIC_TEST = 3589


def timed_predict(model, dataset, split: str, device: torch.device) -> float:
    start = time.perf_counter()
    predict_split(model, dataset, split, device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FER2013_CSV"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--arch", default="cnn3")
    parser.add_argument("--checkpoint", default=None, help="use this model instead of --arch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = load_dataset(args.data or f"builtin:{PUBLIC_TEST * 10}")
    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint, device)
        model, name = checkpoint.model, str(args.checkpoint)
        dataset = for_model(dataset, checkpoint.task)  # as the model takes faces
    else:
        torch.manual_seed(0)
        model = build_model(args.arch, dataset.task).to(device).eval()
        name = args.arch
    rows = dataset.indices(args.split)
    n = len(rows)
    faces = torch.from_numpy(dataset.images[rows]).to(device).float().div(255)
    batches = [faces[i:i + BATCH_SIZE].contiguous() for i in range(0, n, BATCH_SIZE)]
    bare_forward_seconds(model, batches[:1], device)  # warm up
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_forward_seconds(model, batches, device))
        ours.append(timed_predict(model, dataset, args.split, device))
        print(f"  bare {n / bare[-1]:8.1f} img/s   predict_split {n / ours[-1]:8.1f} img/s",
              flush=True)
    result = {
        "device": describe_device(device), "model": name, "data": dataset.name,
        "split": args.split, "faces": n, "batch_size": BATCH_SIZE,
        "bare_seconds": statistics.median(bare), "predict_seconds": statistics.median(ours),
    }
    result["bare_images_per_s"] = n / result["bare_seconds"]
    result["predict_images_per_s"] = n / result["predict_seconds"]
    result["ratio"] = result["predict_images_per_s"] / result["bare_images_per_s"]
    print(f"{result['device']}, {name}, {dataset.name} {args.split} ({n} faces, batch "
          f"{BATCH_SIZE}, medians of {args.repeats}): bare model(x) "
          f"{result['bare_images_per_s']:.1f} img/s ({result['bare_seconds']:.3f} s), "
          f"predict_split {result['predict_images_per_s']:.1f} img/s "
          f"({result['predict_seconds']:.3f} s), predict/bare = {result['ratio']:.3f} "
          f"(target >= 0.9)")
    save_results(f"predict_{device.type}.json", result)


if __name__ == "__main__":
    main()
