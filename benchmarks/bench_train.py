"""Trainer throughput vs a bare training loop, in one run.

The bare loop only runs forward, backward and optimizer step on ready tensors of the trainer's
batch shape; the trainer adds device-side indexing, augmentation, metrics and history writing.
The issue asks for trainer >= 85% of bare. Runs alternate (bare, trainer, bare, trainer...) so
machine noise hits both alike; the medians are compared.

    python benchmarks/bench_train.py [--arch cnn3] [--batch-size 128] [--faces 2048] [--repeats 3]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.builtin import make_builtin_faces  # noqa: E402
from fer_core.device import choose_device, describe_device  # noqa: E402
from fer_core.models import build_model  # noqa: E402
from fer_core.runs import RunFolder  # noqa: E402
from fer_core.trainer import TrainConfig, train  # noqa: E402


def bare_loop(arch: str, batch_size: int, steps: int, device: torch.device) -> float:
    """Images/s of forward + backward + Adam step on one ready batch, nothing else."""
    torch.manual_seed(0)
    model = build_model(arch).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch_size, 1, 48, 48, device=device)
    y = torch.randint(0, 7, (batch_size,), device=device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def trainer_run(arch: str, batch_size: int, dataset, device: torch.device) -> float:
    """Images/s the trainer reports for its second epoch (the first one warms up)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(arch=arch, epochs=2, batch_size=batch_size, device=str(device))
        train(config, f"{tmp}/run", dataset)
        return RunFolder(f"{tmp}/run").epochs()[-1]["images_per_s"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn3")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--faces", type=int, default=2048, help="built-in faces (80%% train)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = make_builtin_faces(n=args.faces, seed=0)
    steps = len(dataset.indices("train")) // args.batch_size
    bare, trainer = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(args.arch, args.batch_size, steps, device))
        trainer.append(trainer_run(args.arch, args.batch_size, dataset, device))
        print(f"  bare {bare[-1]:8.1f} img/s   trainer {trainer[-1]:8.1f} img/s", flush=True)
    result = {
        "device": describe_device(device), "arch": args.arch, "batch_size": args.batch_size,
        "steps_per_epoch": steps, "bare_images_per_s": statistics.median(bare),
        "trainer_images_per_s": statistics.median(trainer),
    }
    result["ratio"] = result["trainer_images_per_s"] / result["bare_images_per_s"]
    print(f"{result['device']}, {args.arch}, batch {args.batch_size}: bare loop "
          f"{result['bare_images_per_s']:.1f} img/s, trainer {result['trainer_images_per_s']:.1f} "
          f"img/s, trainer/bare = {result['ratio']:.3f} (target >= 0.85)")
    out = ROOT / "benchmarks" / "results" / f"train_{args.arch}_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
