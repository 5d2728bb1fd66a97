"""Snapshots: the weights a run had at N epochs evenly spaced over its planned epochs (the last
included), each in half precision with the learning rate of its epoch. The timeline of how the
model learned to look and TracIn's training-face influence read them.

    <run folder>/snapshots/epoch-0003.pt   a checkpoint like best.pt (fp16 weights, no training
                                           state), its metrics holding "lr"

A run without snapshots (made before they existed, or with --snapshots 0) is read as having
one: its best.pt, with the learning rate its config started from.
"""

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..models.checkpoint import read_payload

SNAPSHOTS = "snapshots"
_NAME = re.compile(r"epoch-(\d{4})\.pt")


@dataclass(frozen=True, order=True)
class Snapshot:
    epoch: int
    path: Path


def snapshot_epochs(epochs: int, count: int) -> list[int]:
    """The epochs of `count` snapshots evenly spaced over `epochs`, the last included: 4 over 10
    epochs are 3, 5, 8 and 10; as many as there are epochs, at most."""
    count = min(count, epochs)
    return sorted({math.ceil(k * epochs / count) for k in range(1, count + 1)}) if count else []


def snapshot_path(run: str | os.PathLike, epoch: int) -> Path:
    return Path(run) / SNAPSHOTS / f"epoch-{epoch:04d}.pt"


def saved_snapshots(run: str | os.PathLike) -> list[Snapshot]:
    """The snapshots the run folder holds, oldest first (a listing: no file is read)."""
    return sorted(Snapshot(int(m.group(1)), p) for p in (Path(run) / SNAPSHOTS).glob("epoch-*.pt")
                  if (m := _NAME.fullmatch(p.name)))


def list_snapshots(run: str | os.PathLike) -> list[Snapshot]:
    """The run's snapshots, oldest first; [its best.pt, as the last epoch] when it has none."""
    run = Path(run)
    found = saved_snapshots(run)
    if found or not (run / "best.pt").is_file():
        return found
    return [Snapshot(int(read_payload(run / "best.pt").get("epoch", 0)), run / "best.pt")]


def checkpoint_snapshots(checkpoint: str | os.PathLike, epoch: int) -> list[Snapshot]:
    """The snapshots that stand for a checkpoint file (of epoch `epoch`): its run folder's up to
    that epoch (a later one saw training the checkpoint never did: best.pt of epoch 5 in a run
    snapshotted at 3, 5, 8 and 10 takes 3 and 5), or itself when there are none (a run without
    snapshots, a .pt file elsewhere, a checkpoint older than the first snapshot)."""
    checkpoint = Path(checkpoint)
    found = [s for s in saved_snapshots(checkpoint.parent) if s.epoch <= epoch]
    return found or [Snapshot(epoch, checkpoint)]


def prune_snapshots(run: str | os.PathLike, keep: list[int]) -> None:
    """Delete the snapshots at epochs not in `keep` (a resumed run with another plan keeps the
    spacing of its new plan)."""
    for snapshot in saved_snapshots(run):
        if snapshot.epoch not in keep:
            snapshot.path.unlink(missing_ok=True)
