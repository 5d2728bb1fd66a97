"""What torchrun costs and gives: training throughput under DistributedDataParallel beside plain
runs of the same settings, each a real `python -m fer_core train` process.

- The wrapper's overhead: `torchrun --nproc_per_node=1` against a plain run, both on one thread
  (torchrun gives each CPU rank OMP_NUM_THREADS=1).
- Scaling: `--ranks N` processes (N GPUs with --device cuda, else N CPU processes of one thread
  each) against one plain process using N threads (on a CPU) or one GPU.

Throughput is the trainer's own figure (faces of the global batch per second of training, from
history.jsonl), averaged over the epochs after the first (which pays for start-up and warm-up).

    python benchmarks/bench_ddp.py [--data builtin:4000] [--arch cnn3] [--epochs 3]
        [--batch-size 64] [--ranks 2] [--device cpu|cuda]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results
from fer_core.training.runs import RunFolder


def train_command(args, out: Path, ranks: int | None) -> list[str]:
    """The trainer's command: plain (ranks None) or under torchrun with `ranks` processes."""
    launcher = [sys.executable]
    if ranks is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    return [*launcher, "-m", "fer_core", "train", "--data", args.data, "--arch", args.arch,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device",
            args.device, "--precision", args.precision, "--log-every", "50", "--out", str(out)]


def measure(args, name: str, ranks: int | None, threads: int) -> dict:
    """One run; its mean images/s and epoch seconds over the epochs after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(train_command(args, out, ranks), cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed: {done.stderr.strip().splitlines()[-1:]}")
        epochs = RunFolder(out).epochs()[1:]
    result = {"name": name, "ranks": ranks or 1, "threads_per_process": threads,
              "images_per_s": statistics.mean(e["images_per_s"] for e in epochs),
              "epoch_seconds": statistics.mean(e["seconds"] for e in epochs)}
    print(f"  {name}: {result['images_per_s']:.0f} img/s, {result['epoch_seconds']:.2f} s an "
          f"epoch", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin:4000")
    parser.add_argument("--arch", default="cnn3")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is not counted")
    cpu = args.device == "cpu"
    print(f"{args.arch} on {args.data}, batch {args.batch_size}, {args.device}, {args.precision}")
    runs = {
        "plain_1": measure(args, "plain, 1 process", None, 1),
        "ddp_1": measure(args, "torchrun, 1 rank", 1, 1),
        "plain_n": measure(args, f"plain, 1 process of {args.ranks} threads" if cpu
                           else "plain, 1 GPU", None, args.ranks if cpu else 1),
        "ddp_n": measure(args, f"torchrun, {args.ranks} ranks", args.ranks, 1),
    }
    result = {"data": args.data, "arch": args.arch, "epochs": args.epochs,
              "batch_size": args.batch_size, "device": args.device,
              "precision": args.precision, "ranks": args.ranks, "runs": runs}
    save_results(f"ddp_{args.device}.json", result)


if __name__ == "__main__":
    main()
