"""Follow a run's history.jsonl incrementally: each refresh reads only the bytes appended since the
last one, so polling a long run stays cheap.

A resumed run rewrites its history (the trainer truncates it to the checkpoint and renames a new
file into place); a new inode or a shorter file starts the reading over.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from fer_core.training.runs import read_history


@dataclass
class RunHistory:
    """Step and epoch records read so far from one history.jsonl."""

    path: Path
    inode: int | None = None
    offset: int = 0
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)

    def refresh(self) -> bool:
        """Read the complete lines appended since the last call; True when any were new."""
        read = read_history(self.path, self.offset, self.inode)
        if read.restarted or self.inode is None:
            self.steps, self.epochs = [], []
        self.offset, self.inode = read.offset, read.inode
        for record in read.records:
            kind = record.get("kind")
            if kind == "step":
                self.steps.append(record)
            elif kind == "epoch":
                self.epochs.append(record)
        return bool(read.records) or read.restarted

    @property
    def progress(self) -> float:
        """Epochs done, fractional: the last step's progress or the last epoch's number."""
        last_step = self.steps[-1]["progress"] if self.steps else 0.0
        last_epoch = self.epochs[-1]["epoch"] if self.epochs else 0
        return max(last_step, last_epoch)

    def images_per_s(self) -> float | None:
        return self.epochs[-1].get("images_per_s") if self.epochs else None

    def eta_seconds(self, total_epochs: int | None, now: float | None = None) -> float | None:
        """Seconds left at the recent pace, from the last two records' times and progress,
        or None until the pace is known."""
        if not total_epochs or len(self.steps) < 2:
            return None
        pace = _seconds_per_epoch(self.steps, self.epochs)
        if pace is None:
            return None
        since_last = max(0.0, (now or time.time()) - self.steps[-1]["time"])
        return max(0.0, (total_epochs - self.progress) * pace - since_last)


def _seconds_per_epoch(steps: list[dict], epochs: list[dict]) -> float | None:
    """Wall seconds per epoch: the mean of the finished epochs' times (they include validation),
    else the pace of the steps of the epoch in progress."""
    if epochs:
        recent = epochs[-3:]
        return sum(e["seconds"] for e in recent) / len(recent)
    first, last = steps[0], steps[-1]
    done = last["progress"] - first["progress"]
    return (last["time"] - first["time"]) / done if done > 0 else None


def format_duration(seconds: float | None) -> str:
    """'1h 02m', '3m 05s', '42s', or an em dash when unknown."""
    if seconds is None:
        return "\u2014"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"
