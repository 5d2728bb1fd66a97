"""Trainer throughput vs a bare training loop, in one run.

The bare loop only runs forward, backward and optimizer step on ready tensors of the trainer's
batch shape, memory layout (channels-last where the trainer uses it) and precision; the trainer
adds device-side indexing, augmentation, metrics and history writing. Each precision (fp32, and
bf16 where native) is run by both, so the table shows the trainer's overhead at each precision
and its speed-up over the fp32 loop. Runs alternate so machine
noise hits every variant alike; the medians are compared.

    python benchmarks/bench_train.py [--arch cnn3] [--head pool|flat] [--batch-size 128]
        [--faces N] [--repeats 3] [--precisions fp32,bf16] [--compile]

--faces defaults to 2048 on a CPU and 32768 on a GPU.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results, seconds
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.task import Task
from fer_core.device import AUTOCAST_DTYPES, choose_device, describe_device, resolve_precision
from fer_core.models.architectures import build_model
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import make_optimizer, train, uses_channels_last

OPTIONS: dict[str, dict] = {}
# A GPU runs a 12-step epoch (2048 faces) in milliseconds, mostly kernel-launch latency and the
# epoch's first and last synchronisation; 32768 faces give it 200 steps to show its throughput.
CPU_FACES, GPU_FACES = 2048, 32768


def bare_loop(arch: str, task: Task, batch_size: int, steps: int, device: torch.device,
              precision: str, compiled: bool) -> float:
    """Images/s of forward + backward + the trainer's Adam step on one ready batch of faces of
    `task` (the trainer's data's), nothing else, in the trainer's memory layout and precision, so
    that the trainer's overhead is all that differs."""
    torch.manual_seed(0)
    model = build_model(arch, task, **OPTIONS.get(arch, {})).to(device).train()
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch_size, *task.shape, device=device)
    y = torch.randint(0, task.num_classes, (batch_size,), device=device)
    dtype = AUTOCAST_DTYPES.get(precision)
    if uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, TrainConfig())
    forward = torch.compile(model, dynamic=False) if compiled else model

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(forward(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    return steps * batch_size / seconds(lambda: [step() for _ in range(steps)], device)


def trainer_run(arch: str, batch_size: int, dataset, device: torch.device, precision: str,
                compiled: bool) -> float:
    """Images/s the trainer reports for its second epoch (the first one warms up)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(arch=arch, arch_options=OPTIONS.get(arch, {}), epochs=2,
                             batch_size=batch_size, device=str(device), precision=precision,
                             compile=compiled)
        train(config, f"{tmp}/run", dataset)
        return RunFolder(f"{tmp}/run").epochs()[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn3")
    parser.add_argument("--head", default="pool", help="cnn3 head (pool or flat)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--faces", type=int, default=None,
                        help="built-in faces, 80%% train (default 2048 on a CPU, 32768 on a GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model in both (the trainer's --compile)")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated (default: fp32 and the native reduced precision)")
    args = parser.parse_args()
    device = choose_device(args.device)
    OPTIONS["cnn3"] = {"head": args.head}
    precisions = (args.precisions.split(",") if args.precisions
                  else sorted({"fp32", resolve_precision("auto", device)}, reverse=True))
    faces = args.faces or (CPU_FACES if device.type == "cpu" else GPU_FACES)
    dataset = make_builtin_faces(n=faces, seed=0)
    steps = len(dataset.indices("train")) // args.batch_size
    if steps == 0:
        parser.error(f"--faces {faces} leave fewer training faces than one batch of "
                     f"{args.batch_size}")
    bare = {p: [] for p in precisions}
    trainer = {p: [] for p in precisions}
    for _ in range(args.repeats):  # alternate, so machine noise hits every variant alike
        for p in precisions:
            bare[p].append(bare_loop(args.arch, dataset.task, args.batch_size, steps, device, p,
                                     args.compile))
            trainer[p].append(trainer_run(args.arch, args.batch_size, dataset, device, p,
                                          args.compile))
            print(f"  {p}: bare {bare[p][-1]:8.1f} img/s   trainer {trainer[p][-1]:8.1f} img/s",
                  flush=True)
    baseline = statistics.median(bare["fp32"]) if "fp32" in bare else None
    rows = {}
    for p in precisions:
        b, t = statistics.median(bare[p]), statistics.median(trainer[p])
        rows[p] = {"bare_images_per_s": b, "trainer_images_per_s": t, "trainer_over_bare": t / b,
                   "trainer_over_bare_fp32": t / baseline if baseline else None}
    result = {"device": describe_device(device), "arch": args.arch, "head": args.head,
              "compiled": args.compile,
              "batch_size": args.batch_size, "steps_per_epoch": steps, "precisions": rows}
    print(f"{result['device']}, {args.arch}, batch {args.batch_size}"
          f"{', compiled' if args.compile else ''} (medians of {args.repeats}; the bare loop in the trainer's layout and precision)")
    print(f"{'precision':<10}{'bare img/s':>12}{'trainer img/s':>15}{'trainer/bare':>14}"
          f"{'vs bare fp32':>14}")
    for p, r in rows.items():
        vs = f"{r['trainer_over_bare_fp32']:.2f}x" if baseline else "n/a"
        print(f"{p:<10}{r['bare_images_per_s']:>12.1f}{r['trainer_images_per_s']:>15.1f}"
              f"{r['trainer_over_bare']:>14.3f}{vs:>14}")
    compiled = "_compiled" if args.compile else ""
    save_results(f"train_{args.arch}_{device.type}{compiled}.json", result)


if __name__ == "__main__":
    main()
