"""Training speed of each --labels mode against hard labels (majority), in one run.

The faces are built-in faces given FER+'s task and crowd-like votes (6 votes for the face's
class, 4 spread at random), so every mode keeps most of them. One Trainer per mode is built on
the same faces; then the trainers take turns, a few training steps each (the same batches,
augmentation and all), round after round, so that the machine's drift (this shared CPU moves
by 15% from minute to minute) hits every mode alike. A mode's epoch time is its median step
time times the steps of an epoch, plus its once-an-epoch work (`Targets.for_epoch`: the
probability mode's draw); the validation is the same for every mode and left out.

    python benchmarks/bench_vote_modes.py [--faces 2048] [--rounds 12] [--steps 4] [--arch cnn3]
"""

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results, seconds
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.ferplus import FERPLUS, majority_labels
from fer_core.device import choose_device, describe_device
from fer_core.training.config import LABEL_MODES, TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import Trainer


def faces_with_votes(n: int, seed: int = 0):
    """Built-in faces with FER+'s 8 emotions: 6 votes for the face's class (in FER+'s order)
    and 4 spread at random over all 10 columns."""
    faces = make_builtin_faces(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    votes = rng.multinomial(4, rng.dirichlet(np.full(10, 0.5)), size=n)
    votes[np.arange(n), faces.labels % FERPLUS.num_classes] += 6
    votes = votes.astype(np.uint8)
    return dataclasses.replace(faces, task=FERPLUS, labels=majority_labels(votes), votes=votes,
                               fingerprint=f"bench-votes-{n}-{seed}")


def step_seconds(trainer: Trainer, steps: int, first: int) -> float:
    """Seconds per step over `steps` training steps, from step `first` of epoch 1's order."""
    b = trainer.config.batch_size
    perm = trainer._epoch_permutation(1)
    n = trainer.steps_per_epoch() - 1  # whole batches only

    def run():
        for k in range(first, first + steps):
            trainer._train_step(perm[(k % n) * b:(k % n + 1) * b], (0, 1, k))

    return seconds(run, trainer.device) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4, help="steps per turn")
    parser.add_argument("--arch", default="cnn3")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    dataset = faces_with_votes(args.faces)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {mode: Trainer(TrainConfig(arch=args.arch, labels=mode, device=str(device),
                                              snapshots=0, probes=0),
                                  RunFolder(f"{tmp}/{mode}"), dataset)
                    for mode in LABEL_MODES}
    draws = {}
    for mode, t in trainers.items():
        start = time.perf_counter()
        t.epoch_targets = t.targets.for_epoch(1)
        draws[mode] = time.perf_counter() - start
        step_seconds(t, 2, 0)  # warm up
    times = {mode: [] for mode in LABEL_MODES}
    for r in range(args.rounds):
        for k in range(len(LABEL_MODES)):
            mode = LABEL_MODES[(r + k) % len(LABEL_MODES)]
            times[mode].append(step_seconds(trainers[mode], args.steps, r * args.steps))
    steps = {mode: t.steps_per_epoch() for mode, t in trainers.items()}
    epoch = {mode: statistics.median(times[mode]) * steps[mode] + draws[mode]
             for mode in LABEL_MODES}
    base = epoch["majority"] / steps["majority"]
    print(f"{describe_device(device)}, {args.arch}, {args.faces} faces, batch 128; medians of "
          f"{args.rounds} turns of {args.steps} steps")
    print(f"{'labels':<14}{'steps':>7}{'ms/step':>10}{'draw ms':>9}{'epoch time / step':>19}"
          f"{'vs majority':>13}")
    rows = {}
    for mode in LABEL_MODES:
        per_step = epoch[mode] / steps[mode]
        rows[mode] = {"steps": steps[mode], "ms_per_step": 1e3 * statistics.median(times[mode]),
                      "draw_ms": 1e3 * draws[mode], "epoch_time_vs_majority": per_step / base}
        print(f"{mode:<14}{steps[mode]:>7}{rows[mode]['ms_per_step']:>10.1f}"
              f"{rows[mode]['draw_ms']:>9.2f}{1e3 * per_step:>17.1f}ms"
              f"{rows[mode]['epoch_time_vs_majority']:>12.3f}x")
    save_results(f"vote_modes_{args.arch}_{device.type}.json",
                 {"device": describe_device(device), "arch": args.arch, "faces": args.faces,
                  "rounds": args.rounds, "steps_per_turn": args.steps, "modes": rows})


if __name__ == "__main__":
    main()
