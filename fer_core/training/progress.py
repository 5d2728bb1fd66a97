"""Where training stands and who hears of it: the position inside the epoch, stop requests, and
the run's reports (step and epoch records in history.jsonl and to the caller's callbacks, its
state in status.json)."""

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..atomic import write_json
from .config import TrainConfig
from .runs import HistoryWriter, RunFolder, read_json

StepCallback = Callable[[dict], None]


@dataclass
class Progress:
    """Where training stands inside the current epoch (saved in last.pt for an exact resume)."""

    epoch: int
    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0  # weighted as the loss weighs a mixed face's two labels
    seen: int = 0
    seconds: float = 0.0


class StopRequested:
    """Turns SIGINT/SIGTERM and the run's STOP file into one flag the loop checks every step."""

    def __init__(self, run: RunFolder):
        self.folder = run
        self.signalled = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: rely on the STOP file alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signalled = True

    def __bool__(self) -> bool:
        return self.signalled or self.folder.stop_path.exists()


def step_record(p: Progress, steps: int) -> dict:
    """The history's record of a log point: the epoch's mean loss and accuracy so far."""
    return {
        "kind": "step", "epoch": p.epoch, "step": p.step, "steps": steps,
        "progress": round(p.epoch - 1 + p.step / steps, 4),
        "loss": p.loss_sum / max(p.seen, 1), "acc": p.correct / max(p.seen, 1),
        "time": time.time(),
    }


def epoch_record(p: Progress, val_loss: float | None, val_acc: float | None, lr: float,
                 ending: float) -> dict:
    """The history's record of the finished epoch `p`, with `lr` the rate it trained at and
    `ending` the seconds spent ending it (validation) beyond those `p` counted."""
    return {
        "kind": "epoch", "epoch": p.epoch,
        "train_loss": p.loss_sum / p.seen, "train_acc": p.correct / p.seen,
        "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
        "seconds": round(p.seconds + ending, 3),
        "images_per_s": round(p.seen / p.seconds, 1),
        "time": time.time(),
    }


class RunLog:
    """A run's reports: config.json and status.json, the records of history.jsonl (open between
    `open` and `close`) and the caller's callbacks. Rank 0 alone reports; on the other ranks
    every call does nothing."""

    def __init__(self, run: RunFolder, main: bool, on_step: StepCallback | None,
                 on_epoch: StepCallback | None):
        self.folder, self.main = run, main
        self.on_step, self.on_epoch = (on_step, on_epoch) if main else (None, None)
        self.history = HistoryWriter(None)

    def start(self, config: TrainConfig, epoch: int, best_val_acc: float | None,
              ranks: int) -> None:
        """config.json, then status.json saying the run is running (keeping when it started)."""
        if not self.main:
            return
        write_json(self.folder.config_path, dataclasses.asdict(config))
        started = (read_json(self.folder.status_path) or {}).get("started") or time.time()
        self.folder.write_status(state="running", pid=os.getpid(), epoch=epoch,
                                 epochs=config.epochs, best_val_acc=best_val_acc, error=None,
                                 started=started, ranks=ranks)

    def open(self) -> None:
        self.history = HistoryWriter(self.folder.history_path if self.main else None)

    def step(self, p: Progress, steps: int) -> None:
        record = step_record(p, steps)
        self.history.write(record)
        if self.on_step:
            self.on_step(record)

    def epoch(self, record: dict, best_val_acc: float | None) -> None:
        """An epoch ended: status.json, then its record."""
        if self.main:
            self.folder.write_status(state="running", epoch=record["epoch"],
                                     best_val_acc=best_val_acc)
        self.history.write(record)
        if self.on_epoch:
            self.on_epoch(record)

    def close(self) -> None:
        self.history.close()

    def finish(self, state: str, epoch: int, best_val_acc: float | None) -> None:
        """The run ended ('finished' or 'stopped'): its STOP file is spent."""
        if not self.main:
            return
        self.folder.stop_path.unlink(missing_ok=True)
        self.folder.write_status(state=state, epoch=epoch, best_val_acc=best_val_acc)
