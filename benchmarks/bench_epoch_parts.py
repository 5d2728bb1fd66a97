"""Two parts of a training epoch, each beside what the trainer did before, in one run:

- the optimizer step, fused (one kernel for all parameters, what the trainer uses on CPUs and
  CUDA GPUs) against PyTorch's default (what it used before: a loop over the parameters on a
  CPU, one kernel per operation over all of them, "foreach", on a GPU), for Adam and SGD;
- the end of an epoch's checkpoint writes (best.pt, and last.pt with the optimizer state), as
  long as they hold the training loop: written by the trainer's background writer (the loop
  waits only for a CPU copy) against torch.save + fsync inline.

Runs alternate so machine noise hits both alike; medians are compared.

    python benchmarks/bench_epoch_parts.py [--archs cnn3,resnet18] [--repeats 7] [--device D]
"""

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results, seconds, sync
from fer_core.data.task import FER2013
from fer_core.device import choose_device, describe_device
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import make_payload, save_atomic
from fer_core.training.trainer import uses_channels_last
from fer_core.training.writer import CheckpointWriter

OPTIMIZERS = {
    "adam": lambda params, fused: torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4,
                                                   fused=fused),
    "sgd": lambda params, fused: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True,
                                                 weight_decay=5e-4, fused=fused),
}


def model_with_grads(arch: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    if uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def step_ms(arch: str, optimizer: str, fused: bool, device: torch.device, steps: int) -> float:
    """Milliseconds per optimizer step on ready gradients."""
    model = model_with_grads(arch, device)
    opt = OPTIMIZERS[optimizer](model.parameters(), fused or None)
    opt.step()
    return seconds(lambda: [opt.step() for _ in range(steps)], device) / steps * 1e3


def epoch_end_ms(arch: str, device: torch.device, background: bool, folder: Path) -> float:
    """Milliseconds the loop is held by writing best.pt and last.pt (Adam state included)."""
    model = model_with_grads(arch, device)
    opt = OPTIMIZERS["adam"](model.parameters(), None)
    opt.step()
    best = make_payload(model, arch=arch, arch_options={}, task=FER2013, dataset={}, epoch=1,
                        metrics={}, config={})
    last = {**best, "training_state": {"optimizer": opt.state_dict()}}
    files = [(best, folder / "best.pt"), (last, folder / "last.pt")]
    writer = CheckpointWriter()
    sync(device)
    start = time.perf_counter()
    if background:
        writer.write(files)
    else:
        for payload, path in files:
            save_atomic(payload, path)
    held = (time.perf_counter() - start) * 1e3
    writer.wait()
    return held


def alternate(measure, variants: dict, repeats: int) -> dict:
    """Median of `repeats` runs of measure(**variant) for each variant, run in turn."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, variant in variants.items():
            times[name].append(measure(**variant))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="cnn3,resnet18")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timing")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    result = {"device": describe_device(device), "optimizer_step_ms": {}, "epoch_end_ms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for name in OPTIMIZERS:
                ms = alternate(partial(step_ms, arch, name, device=device, steps=args.steps),
                               {"fused": {"fused": True}, "default": {"fused": False}},
                               args.repeats)
                result["optimizer_step_ms"][f"{arch} {name}"] = ms
                print(f"{arch} {name} step: fused {ms['fused']:.2f} ms, "
                      f"default {ms['default']:.2f} ms", flush=True)
            ms = alternate(partial(epoch_end_ms, arch, device, folder=Path(tmp)),
                           {"background": {"background": True},
                            "inline": {"background": False}}, args.repeats)
            result["epoch_end_ms"][arch] = ms
            print(f"{arch} epoch-end writes hold the loop: background {ms['background']:.1f} ms, "
                  f"inline {ms['inline']:.1f} ms", flush=True)
    save_results("epoch_parts.json", result)


if __name__ == "__main__":
    main()
