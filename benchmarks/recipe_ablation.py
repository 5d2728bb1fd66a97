"""What each lever of a training recipe adds, in one run: the recipe, the recipe with one lever
taken out at a time, and the trainer's defaults for the same architecture and epochs (the
baseline), each trained by `python -m fer_core train` (several at once: a GPU is far from busy with one), then
scored on the val split (FER2013's PublicTest) with the final weights, as they are and with
test-time augmentation.

The final weights, not best.pt: best.pt is chosen on the very split reported, which flatters it.

    python benchmarks/recipe_ablation.py --data PATH [--recipe fer2013-resnet18] [--epochs N]
        [--arch cnn3] [--parallel 4] [--only recipe,no-mixup] [--root DIR] [--device cuda]

Each variant's figures are written to benchmarks/results/recipe_ablation.json as soon as it is
scored, so a run cut short keeps what it finished. Its run folders go under --root (default
benchmarks/results/ablation/), where a finished variant is scored again, not retrained.
"""

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.evaluation.report import evaluate_split
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.config import RECIPES
from fer_core.training.runs import RunFolder

OUT = ROOT / "benchmarks" / "results" / "recipe_ablation.json"
# Each lever of the recipe, and the flags that take it out.
WITHOUT = {
    "no-mixup": ["--mixup", "0"],
    "no-erasing": ["--erase", "0"],
    "no-weight-average": ["--ema", "0"],
    "no-label-smoothing": ["--label-smoothing", "0"],
    "cosine-not-onecycle": ["--schedule", "cosine"],
}


def variants(recipe: str, arch: str | None) -> dict[str, list[str]]:
    """Name -> train flags: the recipe, each lever out, and the defaults for its architecture
    (or for `arch`, which then replaces the recipe's in every variant)."""
    arch = arch or RECIPES[recipe].get("arch", "cnn3")
    return {"recipe": ["--recipe", recipe, "--arch", arch],
            **{name: ["--recipe", recipe, "--arch", arch, *flags]
               for name, flags in WITHOUT.items()},
            "defaults": ["--arch", arch]}


def train_variant(name: str, flags: list[str], args) -> float | None:
    """Train one variant into ROOT/name; its wall seconds (None when it was trained before)."""
    folder = Path(args.root) / name
    if (RunFolder(folder).status() or {}).get("state") == "finished":
        return None
    epochs = ["--epochs", str(args.epochs or RECIPES[args.recipe]["epochs"])]
    command = [sys.executable, "-m", "fer_core", "train", "--data", args.data, "--out",
               str(folder), *flags, *epochs, *(["--device", args.device] if args.device else [])]
    folder.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(folder.parent / f"{name}.log", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--recipe", default="fer2013-resnet18", choices=[r for r in RECIPES
                                                                         if r != "none"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every variant (default: the recipe's)")
    parser.add_argument("--arch", default=None,
                        help="train every variant with this architecture (default: the "
                             "recipe's), e.g. cnn3 to try the levers on a CPU")
    parser.add_argument("--parallel", type=int, default=4, help="trainings at once")
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--root", default=str(ROOT / "benchmarks" / "results" / "ablation"))
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    chosen = variants(args.recipe, args.arch)
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}
    device = choose_device(args.device)
    dataset = load_dataset(args.data)
    result = {"device": describe_device(device), "data": args.data, "recipe": args.recipe,
              "arch": args.arch, "parallel": args.parallel, "variants": {}}
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {name: pool.submit(train_variant, name, flags, args)
                   for name, flags in chosen.items()}
        for name, future in futures.items():
            seconds = future.result()
            result["variants"][name] = scored(Path(args.root) / name, chosen[name], seconds,
                                              dataset, device)
            OUT.parent.mkdir(exist_ok=True)
            OUT.write_text(json.dumps(result, indent=2) + "\n")
            print_row(name, result["variants"][name])
    print(f"saved {OUT.relative_to(ROOT)}")


def scored(folder: Path, flags: list[str], seconds: float | None, dataset,
           device: torch.device) -> dict:
    """The final weights' val accuracy, plain and with TTA, and how the run went."""
    model = load_checkpoint(folder / "last.pt", device).model
    epochs = RunFolder(folder).epochs()
    return {"flags": flags, "epochs": len(epochs),
            "val_acc": evaluate_split(model, dataset, "val", device)["accuracy"],
            "val_acc_tta": evaluate_split(model, dataset, "val", device, tta=True)["accuracy"],
            "best_val_acc_seen": max(e["val_acc"] for e in epochs),
            "median_epoch_s": epoch_wall_seconds(epochs), "wall_s": seconds}


def epoch_wall_seconds(epochs: list[dict]) -> float:
    """The median wall time from one epoch record to the next (training, validation and
    checkpoint writes); the first epoch's own time when there is only one."""
    gaps = sorted(b["time"] - a["time"] for a, b in pairwise(epochs))
    return gaps[len(gaps) // 2] if gaps else epochs[0]["seconds"]


def print_row(name: str, v: dict) -> None:
    wall = "trained before" if v["wall_s"] is None else f"{v['wall_s']:.0f} s"
    print(f"{name:<22} final {v['val_acc']:.4f}  TTA {v['val_acc_tta']:.4f}  "
          f"({v['epochs']} epochs, {v['median_epoch_s']:.2f} s each, {wall})", flush=True)


if __name__ == "__main__":
    main()
