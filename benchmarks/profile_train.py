"""Where a training epoch's time goes: one epoch of the real trainer under torch.profiler, in
fp32 and in the device's reduced precision: its busiest operations, the CPU's and the GPU's busy
time and the number of kernel launches (on a GPU, a small model's epoch can be bound by the CPU
launching kernels).

    python benchmarks/profile_train.py [--arch cnn3|resnet18] [--faces 32768] [--batch-size 128]
        [--head flat] [--compile] [--device auto] [--rows 12]

A diagnostic, not a same-run comparison against a baseline: bench_train.py gives the speeds.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.data.builtin import make_builtin_faces
from fer_core.device import choose_device, describe_device, resolve_precision
from fer_core.training.config import TrainConfig
from fer_core.training.trainer import train

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC")


def profiled_epoch(dataset, device: torch.device, precision: str, args) -> profile:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    options = {"head": args.head} if args.arch == "cnn3" else {}
    config = TrainConfig(arch=args.arch, arch_options=options, epochs=1,
                         batch_size=args.batch_size, device=str(device), precision=precision,
                         compile=args.compile)
    with tempfile.TemporaryDirectory() as tmp, profile(activities=activities) as prof:
        train(config, f"{tmp}/run", dataset)
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=32768)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch", default="cnn3", choices=("cnn3", "resnet18"))
    parser.add_argument("--head", default="flat", help="cnn3's head")
    parser.add_argument("--compile", action="store_true", help="the trainer's --compile")
    parser.add_argument("--device", default=None)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = make_builtin_faces(n=args.faces, seed=0)
    precisions = sorted({"fp32", resolve_precision("auto", device)}, reverse=True)
    model = f"cnn3 ({args.head} head)" if args.arch == "cnn3" else args.arch
    compiled = ", compiled" if args.compile else ""
    print(f"{describe_device(device)}; {model}{compiled}, {args.faces:,} built-in faces, "
          f"batch {args.batch_size}; one epoch each of {', '.join(precisions)}")
    profiled_epoch(dataset, device, "fp32", args)  # untimed: CUDA's and cuDNN's setup
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for precision in precisions:
        events = profiled_epoch(dataset, device, precision, args).key_averages()
        launches = sum(e.count for e in events if e.key in LAUNCHES)
        print(f"\n=== {precision}: {launches:,} kernel launches; the table's last lines give the "
              "CPU's busy time and, on a GPU, the GPU's")
        print(events.table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
