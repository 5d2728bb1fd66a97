"""The trainer: the dataset lives on the device as uint8, batches are indexed and augmented there,
and every step, epoch and state change is written to the run folder as it happens.

Stopping (SIGINT, SIGTERM or a STOP file) finishes the current step and saves last.pt with the
position inside the epoch, so a resumed run continues exactly where it stopped: the history has
no duplicated and no lost epochs.

Under torchrun (see fer_core.distributed) the model is wrapped in DistributedDataParallel and
`batch_size` stays the global batch: every rank draws the augmentations, erasing, mixing and
dropout masks of the whole batch, as one process would, and trains on its own slice of it. The
last partial batch of an epoch is dropped. Rank 0 alone writes the run folder; losses,
accuracies and stop requests are combined across ranks at log points only.
"""

import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..atomic import write_json
from ..data.classes import NUM_CLASSES
from ..data.dataset import FaceDataset
from ..device import AUTOCAST_DTYPES, choose_device, resolve_precision
from ..errors import FerError, RunError
from ..evaluation.predict import logits_on_device
from ..models.architectures import BatchDropout, arch_options, build_model, last_conv_stage
from ..models.checkpoint import (
    half_payload,
    load_weights,
    make_payload,
    read_payload,
)
from .augment import AugmentConfig, augment_batch, erase_batch
from .averaging import WeightAverage
from .config import RESUME_SCHEDULES, TrainConfig
from .mixing import MixConfig, mix_batch
from .preflight import check_before_folder, load_init, refuse_dataset, refuse_setup
from .probes import choose_probes, drop_epochs_after, probe_maps, write_epoch, write_faces
from .runs import HistoryWriter, RunFolder, read_json, truncate_history
from .snapshots import SNAPSHOTS, prune_snapshots, snapshot_epochs, snapshot_path
from .writer import CheckpointWriter

METRIC_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


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


def uses_channels_last(device: torch.device) -> bool:
    """Whether the trainer keeps the model and its batches channels-last on `device` (faster for
    convolutions on CPUs and CUDA GPUs; MPS gains nothing)."""
    return device.type in ("cuda", "cpu")


class DeviceData:
    """A split's faces (uint8, N x 1 x 48 x 48) and labels, resident on the training device."""

    def __init__(self, dataset: FaceDataset, split: str, device: torch.device):
        rows = dataset.indices(split)
        rows = rows[dataset.labels[rows] >= 0]
        self.images = torch.from_numpy(dataset.images[rows]).unsqueeze(1).to(device)
        self.labels = torch.from_numpy(dataset.labels[rows]).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].float().div_(255)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]


StepCallback = Callable[[dict], None]


class Trainer:
    """Trains one model into one run folder. Use `run()`; it returns the final state."""

    def __init__(self, config: TrainConfig, run: RunFolder, dataset: FaceDataset,
                 on_step: StepCallback | None = None, on_epoch: StepCallback | None = None):
        config.validate()
        self.config, self.folder, self.dataset = config, run, dataset
        refuse_setup(config, distributed.launched_world(), choose_device(config.device))
        self.world, self.device = distributed.join(config.device)
        self.distributed = self.world.launched
        self.main = self.world.main
        self.on_step, self.on_epoch = (on_step, on_epoch) if self.main else (None, None)
        self.cuda = self.device.type == "cuda"
        self.channels_last = uses_channels_last(self.device)
        config.precision_used = resolve_precision(config.precision, self.device)
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.precision_used)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=config.precision_used == "fp16")
        refuse_dataset(dataset)
        self.train_data = DeviceData(dataset, "train", self.device)
        self.val_data = DeviceData(dataset, "val", self.device)
        self._check_ranks_agree()
        torch.manual_seed(config.seed)
        config.arch_options = arch_options(config.arch, **config.arch_options)
        self.model = self._build_model()
        if config.init and not run.last_path.exists():  # a resume takes last.pt's weights
            load_init(config, self.model)
        self.average = WeightAverage(self.model, config.ema) if config.ema > 0 else None
        self.forward = self._step_model()
        self._choose_probes()
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = self._make_scheduler()
        # One-cycle steps after every step; the other schedules after every epoch.
        self.steps_schedule = isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)
        weights = self._class_weights()
        self.loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        self.summed_loss = nn.CrossEntropyLoss(weight=weights, reduction="sum",
                                               label_smoothing=config.label_smoothing)
        self.augment = AugmentConfig(shift=config.shift, flip=config.flip, rotate=config.rotate)
        self.mix = MixConfig(mixup=config.mixup, cutmix=config.cutmix)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.epoch = 0
        self.best_val_acc = -1.0
        self.progress: Progress | None = None
        self.writer = CheckpointWriter()

    def _check_ranks_agree(self) -> None:
        """Every rank reads the same faces, and enough of them for one global batch."""
        if not self.distributed:
            return
        distributed.agree(self.dataset.fingerprint, f"the fingerprint of {self.dataset.name}")
        c = self.config
        if len(self.train_data) < c.batch_size:
            raise FerError(f"{len(self.train_data)} training faces make no global batch of "
                           f"{c.batch_size}: under torchrun the last partial batch is dropped")

    def _build_model(self) -> nn.Module:
        model = build_model(self.config.arch, **self.config.arch_options)
        if self.distributed and self.config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        for module in model.modules():
            if isinstance(module, BatchDropout):
                module.share = (self.world.rank, self.world.size)
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def _step_model(self) -> nn.Module:
        """What a training step calls: the model, wrapped in DDP under torchrun and compiled
        when asked. Checkpoints, validation and the average keep the model itself.
        dynamic=False: one more compile for the last, smaller batch, not kernels for every
        batch size."""
        model = self.model
        if self.distributed:
            model = DistributedDataParallel(model, device_ids=[self.device] if self.cuda else None)
        return torch.compile(model, dynamic=False) if self.config.compile else model

    def _choose_probes(self) -> None:
        """The probe faces on the device and their Grad-CAM layer (rank 0 alone keeps them).
        Found with the model in eval mode: no batch-norm statistic moves, no random draw."""
        c = self.config
        chosen = choose_probes(self.dataset, c.probes, c.seed) if c.probes and self.main else None
        self.probes = chosen if chosen is not None and len(chosen.rows) else None
        if self.probes is None:
            return
        faces = torch.from_numpy(self.probes.images).unsqueeze(1)
        self.probe_faces = faces.to(self.device).float().div_(255)
        self.model.eval()
        self.probe_layer = last_conv_stage(self.model)
        self.model.train()

    def _rank_weight(self, y: torch.Tensor) -> torch.Tensor | None:
        """With class weights under torchrun, what this rank divides its summed loss by: the
        global batch's total weight over the ranks (labels `y` of the whole batch; mixing's
        partners are the same labels reversed, so the same total). DDP then averages the ranks'
        gradients into those of one process's weighted mean over the whole batch, which a
        per-rank mean, divided by the rank's own weights, is not. None otherwise: the mean is."""
        if not self.distributed or self.loss_fn.weight is None:
            return None
        return self.loss_fn.weight[y].sum() / self.world.size

    def _class_weights(self) -> torch.Tensor | None:
        """'balanced': each class weighs n / (7 * its count) in the loss, as scikit-learn's
        compute_class_weight does, so rare Disgust counts as much as common Happy."""
        if self.config.class_weights == "none":
            return None
        counts = torch.bincount(self.train_data.labels, minlength=NUM_CLASSES).float()
        return len(self.train_data) / (NUM_CLASSES * counts.clamp(min=1))

    @property
    def shipped(self) -> nn.Module:
        """The weights validated and saved: the running average when there is one."""
        return self.average.module if self.average else self.model

    def _make_scheduler(self):
        c = self.config
        if c.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=c.lr, total_steps=c.epochs * self.steps_per_epoch(),
                cycle_momentum=False)
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5,
                                                              patience=2)
        return None

    # ---- resume -------------------------------------------------------------------------------

    def resume(self, schedule: str = "stretch") -> None:
        """Load last.pt's weights and training state; drop history written after it was saved.

        When the run is resumed with another number of epochs, `schedule` says what a cosine
        schedule does over the new length (see `_extend_cosine`).
        """
        if not self.folder.last_path.exists():
            raise RunError(f"cannot resume {self.folder.path}: it has no last.pt")
        payload = read_payload(self.folder.last_path)
        state = payload.get("training_state")
        if state is None:
            raise RunError(f"cannot resume {self.folder.path}: last.pt holds no training state")
        if payload["arch"] != self.config.arch:
            raise RunError(f"cannot resume {self.folder.path}: it trains {payload['arch']}, "
                           f"not {self.config.arch}")
        if schedule not in RESUME_SCHEDULES:
            raise FerError(f"resume schedule must be one of {RESUME_SCHEDULES}, got {schedule!r}")
        replanned = payload["config"].get("epochs", self.config.epochs) != self.config.epochs
        if replanned and self.config.schedule == "onecycle":
            raise RunError(f"cannot resume {self.folder.path} with {self.config.epochs} epochs: "
                           f"its one-cycle schedule is planned over "
                           f"{payload['config']['epochs']}")
        planned = (state.get("scheduler") or {}).get("total_steps")
        if self.steps_schedule and planned not in (None, self.scheduler.total_steps):
            raise RunError(f"cannot resume {self.folder.path} here: its one-cycle schedule is "
                           f"planned over {planned} steps, this run would take "
                           f"{self.scheduler.total_steps} (a torchrun run drops each epoch's "
                           f"last partial batch)")
        self._load_weights(payload, state)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
            if replanned:
                self._extend_cosine(payload["epoch"], schedule)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self._restore_rng(state, payload["epoch"])
        self.epoch = payload["epoch"]
        self.best_val_acc = state["best_val_acc"]
        self.progress = Progress(**state["progress"]) if state.get("progress") else None
        if self.main:
            self._truncate_history_to_checkpoint()
            drop_epochs_after(self.folder.path, self.epoch)
            prune_snapshots(self.folder.path, snapshot_epochs(self.config.epochs,
                                                              self.config.snapshots))

    def _load_weights(self, payload: dict, state: dict) -> None:
        """last.pt's weights: the average's (which it ships) and the model's own, with one."""
        path, arch = self.folder.last_path, payload["arch"]
        load_weights(self.shipped, payload["model"], path, arch)
        if self.average:
            load_weights(self.model, state["raw_model"], path, arch)
            self.average.steps = state["average_steps"]

    def _extend_cosine(self, done: int, mode: str) -> None:
        """A run resumed with another number of epochs, after `done` epochs of a cosine schedule:

        - stretch: fit the cosine to the new length; the learning rate is the closed form's for
          the epochs done, which raises it again when a finished run is extended;
        - constant: hold the learning rate of the last epoch trained;
        - restart: a fresh cosine from the base learning rate over the added epochs (a warm
          restart, as in SGDR).

        CosineAnnealingLR steps recursively from the current rate, so setting the rate, T_max,
        eta_min and last_epoch here is enough for every later step to follow the chosen curve.
        """
        s = self.scheduler
        if not isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR):
            return
        old_t = s.T_max
        for group, base in zip(self.optimizer.param_groups, s.base_lrs):
            if mode == "stretch":
                group["lr"] = _cosine(base, s.eta_min, done, self.config.epochs)
            elif mode == "constant":
                group["lr"] = _cosine(base, s.eta_min, max(done - 1, 0), old_t)
            else:
                group["lr"] = base
        if mode == "restart":
            s.T_max, s.last_epoch = max(self.config.epochs - done, 1), 0
        else:
            s.T_max = self.config.epochs
        if mode == "constant":
            s.eta_min = self.optimizer.param_groups[0]["lr"]
        s._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _restore_rng(self, state: dict, done: int) -> None:
        """Restore the random streams. A run saved on another kind of device (CUDA generator
        state on a CPU, or the reverse) cannot take its augmentation stream: that stream is
        reseeded from the seed and the epoch, so the resumed run is reproducible, not identical."""
        try:
            self.aug_gen.set_state(state["aug_rng"])
        except (RuntimeError, ValueError, TypeError):
            self.aug_gen.manual_seed(self.config.seed * 1_000_003 + done)
        torch.set_rng_state(state["torch_rng"])
        if self.cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def _truncate_history_to_checkpoint(self) -> None:
        done, p = self.epoch, self.progress

        def saved(record: dict) -> bool:
            if record.get("kind") == "epoch":
                return record["epoch"] <= done
            if p is not None and record["epoch"] == p.epoch:
                return record["step"] <= p.step
            return record["epoch"] <= done

        truncate_history(self.folder.history_path, saved)

    # ---- main loop ----------------------------------------------------------------------------

    def run(self) -> str:
        """Train until the last epoch or a stop request; returns 'finished' or 'stopped'."""
        if self.main:
            self._start_folder()
        history = HistoryWriter(self.folder.history_path if self.main else None)
        try:
            with StopRequested(self.folder) as stop:
                state = self._loop(history, stop)
        finally:
            history.close()
            self.writer.wait()
        if self.main:
            self.folder.stop_path.unlink(missing_ok=True)
            self.folder.write_status(state=state, epoch=self.epoch,
                                     best_val_acc=self._best_or_none())
        return state

    def _start_folder(self) -> None:
        self.folder.clear_stale_stop()
        if self.config.snapshots:
            (self.folder.path / SNAPSHOTS).mkdir(exist_ok=True)
        if self.probes is not None:
            write_faces(self.folder.path, self.probes, self.probe_layer)
        write_json(self.folder.config_path, dataclasses.asdict(self.config))
        started = (read_json(self.folder.status_path) or {}).get("started") or time.time()
        self.folder.write_status(state="running", pid=os.getpid(), epoch=self.epoch,
                                 epochs=self.config.epochs, best_val_acc=self._best_or_none(),
                                 error=None, started=started, ranks=self.world.size)

    def _loop(self, history: HistoryWriter, stop: StopRequested) -> str:
        while self.epoch < self.config.epochs:
            progress = self.progress or Progress(epoch=self.epoch + 1)
            self.progress = progress
            finished = self._train_epoch(progress, history, stop)
            if not finished:
                self._save_last()
                return "stopped"
            record = self._end_epoch(progress)
            history.write(record)
            if self.on_epoch:
                self.on_epoch(record)
            if distributed.any_rank(bool(stop), self.device):
                return "stopped"
        return "finished"

    def _epoch_permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(len(self.train_data), generator=g).to(self.device)

    def steps_per_epoch(self) -> int:
        """Whole batches, and the last partial one when it holds two faces or more (dropped
        under torchrun, where it might not divide among the ranks)."""
        n, b = len(self.train_data), self.config.batch_size
        return n // b + (1 if n % b >= 2 and not self.distributed else 0)

    def _train_epoch(self, p: Progress, history: HistoryWriter, stop: StopRequested) -> bool:
        """Train from step p.step to the end of the epoch; False when a stop cut it short."""
        c, model = self.config, self.model
        model.train()
        perm = self._epoch_permutation(p.epoch)
        steps = self.steps_per_epoch()
        loss_acc = torch.zeros((), device=self.device)
        correct_acc = torch.zeros((), device=self.device)
        start = time.perf_counter()
        while p.step < steps:
            idx = perm[p.step * c.batch_size:(p.step + 1) * c.batch_size]
            loss_sum, correct = self._train_step(idx, (c.seed, p.epoch, p.step))
            loss_acc += loss_sum
            correct_acc += correct
            p.step += 1
            p.seen += len(idx)
            at_log = p.step % c.log_every == 0 or p.step == steps
            if self.distributed:  # the ranks meet at log points only
                stopping = at_log and self._combine(loss_acc, correct_acc, stop) and p.step < steps
            else:
                stopping = p.step < steps and bool(stop)
            if at_log or stopping:
                p.loss_sum += loss_acc.item()
                p.correct += correct_acc.item()
                loss_acc.zero_(), correct_acc.zero_()
                self._log_step(p, steps, history)
            if stopping:
                p.seconds += time.perf_counter() - start
                return False
        p.seconds += time.perf_counter() - start
        return True

    def _combine(self, loss_acc: torch.Tensor, correct_acc: torch.Tensor,
                 stop: StopRequested) -> bool:
        """Sum the ranks' accumulated loss and hits in place, and whether any rank was asked to
        stop, in one collective."""
        asked = torch.tensor(float(bool(stop)), device=self.device)
        distributed.sum_all(loss_acc, correct_acc, asked)
        return bool(asked.item())

    def _train_step(self, idx: torch.Tensor, draw: tuple[int, ...]) -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
        """One optimizer step on faces `idx`; `draw` (seed, epoch, step) seeds the mixing.
        Returns this process's summed loss and (weighted) hits."""
        x, y = self.train_data.batch(idx, channels_last=self.channels_last)
        x = augment_batch(x, self.augment, self.aug_gen)
        if self.config.erase > 0:
            x = erase_batch(x, self.config.erase, self.aug_gen)
        x, mixed = mix_batch(x, self.mix, draw)
        partners = y.flip(0)
        weighed = self._rank_weight(y)
        if self.distributed:
            share = len(idx) // self.world.size
            mine = slice(self.world.rank * share, (self.world.rank + 1) * share)
            x, y, partners = x[mine], y[mine], partners[mine]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            logits = self.forward(x)
            if weighed is None:
                loss = mixed.loss(self.loss_fn, logits.float(), y, partners)
            else:
                loss = mixed.loss(self.summed_loss, logits.float(), y, partners) / weighed
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average:
            self.average.update()
        if self.steps_schedule:
            self.scheduler.step()
        return loss.detach() * len(y), mixed.correct(logits, y, partners)

    def _log_step(self, p: Progress, steps: int, history: HistoryWriter) -> None:
        record = {
            "kind": "step", "epoch": p.epoch, "step": p.step, "steps": steps,
            "progress": round(p.epoch - 1 + p.step / steps, 4),
            "loss": p.loss_sum / max(p.seen, 1), "acc": p.correct / max(p.seen, 1),
            "time": time.time(),
        }
        history.write(record)
        if self.on_step:
            self.on_step(record)

    def _end_epoch(self, p: Progress) -> dict:
        t0 = time.perf_counter()
        val_loss, val_acc = self.validate()
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss if val_loss is not None else p.loss_sum / p.seen)
        elif self.scheduler is not None and not self.steps_schedule:
            self.scheduler.step()
        self.epoch = p.epoch
        self.progress = None
        record = {
            "kind": "epoch", "epoch": p.epoch,
            "train_loss": p.loss_sum / p.seen, "train_acc": p.correct / p.seen,
            "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
            "seconds": round(p.seconds + time.perf_counter() - t0, 3),
            "images_per_s": round(p.seen / p.seconds, 1),
            "time": time.time(),
        }
        metrics = {k: record[k] for k in METRIC_KEYS}
        also = []
        if val_acc is None or val_acc > self.best_val_acc:  # no validation faces: keep the latest
            self.best_val_acc = self.best_val_acc if val_acc is None else val_acc
            also.append((self._payload(metrics), self.folder.best_path))
        if self.main and p.epoch in snapshot_epochs(self.config.epochs, self.config.snapshots):
            also.append((half_payload(self._payload({**metrics, "lr": lr})),
                         snapshot_path(self.folder.path, p.epoch)))
        if self.probes is not None:
            write_epoch(self.folder.path, p.epoch,
                        probe_maps(self.shipped, self.probe_faces, self.probe_layer))
            self.model.train()
        self._save_last(metrics, also=also)
        if self.main:
            self.folder.write_status(state="running", epoch=self.epoch,
                                     best_val_acc=self._best_or_none())
        return record

    def validate(self) -> tuple[float | None, float | None]:
        """Mean loss and accuracy on the val split (None, None when it is empty), through the
        project's one prediction path (fp32), so `evaluate` reports the same accuracy. Under
        torchrun each rank scores its share of the faces with rank 0's weights."""
        data = self.val_data
        if len(data) == 0:
            return None, None
        distributed.share_buffers(self.model)
        if self.average:
            distributed.share_buffers(self.average.module)
        mine = self.world.shard(len(data)) if self.distributed else range(len(data))
        labels = data.labels[mine.start:mine.stop]
        logits = logits_on_device(self.shipped, data.images[mine.start:mine.stop])
        self.model.train()
        loss = F.cross_entropy(logits, labels, reduction="sum")
        correct = (logits.argmax(1) == labels).sum()
        distributed.sum_all(loss, correct)
        return loss.item() / len(data), correct.item() / len(data)  # exact, as `evaluate`

    # ---- checkpoints --------------------------------------------------------------------------

    def _payload(self, metrics: dict, training_state: dict | None = None) -> dict:
        d = self.dataset
        return make_payload(
            self.shipped, arch=self.config.arch, arch_options=self.config.arch_options,
            dataset={"name": d.name, "layout": d.layout, "fingerprint": d.fingerprint},
            epoch=self.epoch, metrics={**metrics, "best_val_acc": self._best_or_none()},
            config=dataclasses.asdict(self.config), training_state=training_state)

    def _save_last(self, metrics: dict | None = None, also: list | None = None) -> None:
        """Hand last.pt (and the files in `also`) to the writer: written while training goes on.
        status.json and the history may so be a moment ahead of the files; a resume goes back
        to what last.pt holds. Only rank 0 writes."""
        if not self.main:
            return
        if metrics is None:  # stopped mid-epoch: the metrics of the last finished epoch
            previous = self.folder.epochs()[-1:]
            metrics = {k: previous[0].get(k) for k in METRIC_KEYS} if previous else {}
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "aug_rng": self.aug_gen.get_state().cpu(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.cuda else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "best_val_acc": self.best_val_acc,
            "progress": dataclasses.asdict(self.progress) if self.progress else None,
        }
        if self.average:
            state["raw_model"] = self.model.state_dict()  # the writer copies it to the CPU
            state["average_steps"] = self.average.steps
        self.writer.write([*(also or []), (self._payload(metrics, state), self.folder.last_path)])

    def _best_or_none(self) -> float | None:
        return self.best_val_acc if self.best_val_acc >= 0 else None


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The config's optimizer, fused (one kernel for all parameters) on CPUs and CUDA GPUs: on
    this CPU an Adam step took 0.41 ms fused against 3.5 ms for PyTorch's default for cnn3, and
    10 against 45 ms for ResNet18 (benchmarks/bench_epoch_parts.py)."""
    c = config
    fused = next(model.parameters()).device.type in ("cpu", "cuda") or None
    if c.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay,
                                fused=fused)
    return torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                           weight_decay=c.weight_decay, fused=fused)


def _cosine(base: float, floor: float, epoch: int, total: int) -> float:
    """The cosine schedule's closed form: the learning rate of 0-based `epoch` of `total`."""
    return floor + (base - floor) * (1 + math.cos(math.pi * epoch / total)) / 2


def train(config: TrainConfig, out: str, dataset: FaceDataset, *, resume: bool = False,
          resume_schedule: str = "stretch", on_step: StepCallback | None = None,
          on_epoch: StepCallback | None = None) -> str:
    """Train `config` into run folder `out`, holding its lock; failures are recorded in status.json.

    Returns the final state ('finished' or 'stopped'). A folder that already holds a run is
    refused unless `resume` is set, so nothing is silently overwritten; what can be refused
    before the folder is touched (`check_before_folder`) leaves no folder.

    Under torchrun every rank checks the folder before joining the process group (which rank 0
    must join too before it writes anything); rank 0 alone locks it and records failures.
    """
    main = distributed.launched_world().main
    run = RunFolder(out)
    check_before_folder(config, dataset, resume=resume)
    if main:
        run.acquire()
    state = None
    try:
        if run.exists() and not resume:
            raise RunError(f"run folder {run.path} already holds a run: resume it or choose "
                           f"another name")
        if resume and not run.exists():
            raise RunError(f"cannot resume {run.path}: it holds no run")
        try:
            state = _train_to_end(Trainer(config, run, dataset, on_step=on_step,
                                          on_epoch=on_epoch), resume, resume_schedule)
        except BaseException as e:
            if main:
                message = str(e) if isinstance(e, FerError) else f"{type(e).__name__}: {e}"
                run.write_status(state="failed", pid=os.getpid(), error=message)
            raise
        return state
    finally:
        distributed.leave(together=state is not None)
        if main:
            run.release()


def _train_to_end(trainer: Trainer, resume: bool, resume_schedule: str) -> str:
    """Run `trainer` (resumed first if asked); it is let go on return, with its DDP wrapper
    and so its hold on the process group, before the group is left."""
    if resume:
        trainer.resume(resume_schedule)
    return trainer.run()
