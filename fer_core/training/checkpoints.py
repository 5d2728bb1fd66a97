"""A run's checkpoint files: last.pt at the end of every epoch and on a stop, holding beside the
weights all a resumed run needs to continue exactly (the optimizer, the schedule, the random
streams, the position inside the epoch), best.pt when validation improves, and the snapshots.

The files are handed to a CheckpointWriter, which writes them while training goes on: status.json
and the history may so be a moment ahead of the files; a resume goes back to what last.pt holds.
Only rank 0 writes; every rank resumes."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from ..data.dataset import FaceDataset
from ..models.checkpoint import half_payload, load_weights, make_payload
from .averaging import WeightAverage
from .config import TrainConfig
from .progress import Progress
from .resume import extend_cosine, read_resumable, replanned, restore_rng, rng_state
from .runs import RunFolder
from .writer import CheckpointWriter

METRIC_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass(frozen=True)
class TrainingState:
    """What training changes, all of it saved in last.pt: the model, its running average, the
    optimizer, the schedule, the fp16 loss scaler and the augmentations' random stream."""

    model: nn.Module
    average: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    scaler: torch.amp.GradScaler
    aug_gen: torch.Generator
    device: torch.device

    @property
    def shipped(self) -> nn.Module:
        """The weights validated and saved: the running average when there is one."""
        return self.average.module if self.average else self.model


class Checkpoints:
    """Writes and resumes the checkpoints of the run in folder `run`; keeps the best validation
    accuracy (-1 until an epoch is validated), which decides best.pt."""

    def __init__(self, run: RunFolder, config: TrainConfig, dataset: FaceDataset, main: bool,
                 state: TrainingState):
        self.folder, self.config, self.dataset, self.main = run, config, dataset, main
        self.state = state
        self.best_val_acc = -1.0
        self.writer = CheckpointWriter()

    def best_or_none(self) -> float | None:
        return self.best_val_acc if self.best_val_acc >= 0 else None

    def end_epoch(self, epoch: int, metrics: dict, lr: float,
                  snapshot: Path | None) -> list[tuple[dict, Path]]:
        """The files an epoch ends with beside last.pt: best.pt when validation improved (every
        epoch without validation faces: the latest is kept), and the snapshot to `snapshot`."""
        files = []
        val_acc = metrics["val_acc"]
        if val_acc is None or val_acc > self.best_val_acc:
            self.best_val_acc = self.best_val_acc if val_acc is None else val_acc
            files.append((self._payload(epoch, metrics), self.folder.best_path))
        if snapshot is not None:
            files.append((half_payload(self._payload(epoch, {**metrics, "lr": lr})), snapshot))
        return files

    def save_last(self, epoch: int, progress: Progress | None, metrics: dict | None = None,
                  also: list[tuple[dict, Path]] | None = None) -> None:
        """Hand last.pt (after the files in `also`) to the writer. `metrics` None: stopped
        mid-epoch, last.pt carries the metrics of the last finished epoch."""
        if not self.main:
            return
        if metrics is None:
            previous = self.folder.epochs()[-1:]
            metrics = {k: previous[0].get(k) for k in METRIC_KEYS} if previous else {}
        s = self.state
        training_state = {
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
            **rng_state(s.aug_gen, s.device),
            "scaler": s.scaler.state_dict() if s.scaler.is_enabled() else None,
            "best_val_acc": self.best_val_acc,
            "progress": dataclasses.asdict(progress) if progress else None,
        }
        if s.average:
            training_state["raw_model"] = s.model.state_dict()  # the writer copies it to the CPU
            training_state["average_steps"] = s.average.steps
        last = self._payload(epoch, metrics, training_state)
        self.writer.write([*(also or []), (last, self.folder.last_path)])

    def _payload(self, epoch: int, metrics: dict, training_state: dict | None = None) -> dict:
        d = self.dataset
        return make_payload(
            self.state.shipped, arch=self.config.arch, arch_options=self.config.arch_options,
            task=d.task, dataset={"name": d.name, "layout": d.layout, "fingerprint": d.fingerprint},
            epoch=epoch, metrics={**metrics, "best_val_acc": self.best_or_none()},
            config=dataclasses.asdict(self.config), training_state=training_state)

    def wait(self) -> None:
        """Until every file handed over is written; raises what a write raised."""
        self.writer.wait()

    def resume(self, schedule: str) -> tuple[int, Progress | None]:
        """Load last.pt's weights and training state (refused as `read_resumable` says); returns
        the epochs it finished and its position inside the next. `schedule` says what a cosine
        schedule does when the run is resumed with another number of epochs (`extend_cosine`)."""
        s, config = self.state, self.config
        payload, state = read_resumable(self.folder, config, self.dataset.task, schedule,
                                        s.scheduler)
        self._load_weights(payload, state)
        s.optimizer.load_state_dict(state["optimizer"])
        if s.scheduler is not None and state.get("scheduler"):
            s.scheduler.load_state_dict(state["scheduler"])
            if replanned(payload, config):
                extend_cosine(s.scheduler, s.optimizer, payload["epoch"], config.epochs, schedule)
        if state.get("scaler") and s.scaler.is_enabled():
            s.scaler.load_state_dict(state["scaler"])
        restore_rng(state, s.aug_gen, s.device, config.seed, payload["epoch"])
        self.best_val_acc = state["best_val_acc"]
        progress = Progress(**state["progress"]) if state.get("progress") else None
        return payload["epoch"], progress

    def _load_weights(self, payload: dict, state: dict) -> None:
        """last.pt's weights: the average's (which it ships) and the model's own, with one."""
        path, arch, s = self.folder.last_path, payload["arch"], self.state
        load_weights(s.shipped, payload["model"], path, arch)
        if s.average:
            load_weights(s.model, state["raw_model"], path, arch)
            s.average.steps = state["average_steps"]
