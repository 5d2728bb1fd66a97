"""Where a training epoch's time goes: one epoch of the real trainer under torch.profiler, in
fp32 and in the device's reduced precision: its busiest operations, the CPU's and the GPU's busy
time and the number of kernel launches (on a GPU, a small model's epoch can be bound by the CPU
launching kernels).

    python benchmarks/profile_train.py [--faces 32768] [--batch-size 128] [--head flat]
        [--device auto] [--rows 12]

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
    config = TrainConfig(arch="cnn3", arch_options={"head": args.head}, epochs=1,
                         batch_size=args.batch_size, device=str(device), precision=precision)
    with tempfile.TemporaryDirectory() as tmp, profile(activities=activities) as prof:
        train(config, f"{tmp}/run", dataset)
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=32768)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--head", default="flat")
    parser.add_argument("--device", default=None)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = make_builtin_faces(n=args.faces, seed=0)
    precisions = sorted({"fp32", resolve_precision("auto", device)}, reverse=True)
    print(f"{describe_device(device)}; cnn3 ({args.head} head), {args.faces:,} built-in faces, "
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
