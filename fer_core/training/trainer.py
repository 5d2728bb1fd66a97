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

This module holds the loop; its parts live beside it: what it is built from (parts.py), its
checkpoints and resuming (checkpoints.py, resume.py), the probes and snapshots that record how
the model learned (watch.py), and its reports and stop requests (progress.py).
"""

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..data.dataset import FaceDataset
from ..device import AUTOCAST_DTYPES, choose_device, resolve_precision
from ..errors import FerError, RunError
from ..evaluation.predict import logits_on_device
from ..models.architectures import arch_options
from .augment import AugmentConfig, augment_batch, erase_batch
from .averaging import WeightAverage
from .checkpoints import METRIC_KEYS, Checkpoints, TrainingState
from .config import TrainConfig
from .mixing import MixConfig, mix_batch
from .parts import (
    DeviceData,
    check_ranks_agree,
    class_weights,
    make_optimizer,
    make_scheduler,
    step_model,
    steps_per_epoch,
    training_model,
    uses_channels_last,
)
from .preflight import (
    adopt_imported_init,
    built_from,
    check_before_folder,
    keep_imported_code,
    load_init,
    refuse_dataset,
    refuse_setup,
)
from .progress import Progress, RunLog, StepCallback, StopRequested, epoch_record
from .resume import truncate_history_to
from .runs import RunFolder
from .targets import Targets, hard_labels, split_rows, vote_distributions
from .watch import Watch


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
        self.log = RunLog(run, self.main, on_step, on_epoch)
        self.channels_last = uses_channels_last(self.device)
        config.precision_used = resolve_precision(config.precision, self.device)
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.precision_used)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=config.precision_used == "fp16")
        refuse_dataset(dataset, config)
        dist, keep = vote_distributions(config, dataset)
        train_rows, val_rows = split_rows(config, dataset, keep)
        self.train_data = DeviceData(dataset, train_rows, self.device,
                                     hard_labels(dataset, train_rows, dist))
        self.val_data = DeviceData(dataset, val_rows, self.device)
        self.targets = Targets(config, self.train_data.labels, None if dist is None else
                               torch.from_numpy(dist[train_rows]).to(self.device))
        if self.distributed:
            check_ranks_agree(dataset, len(self.train_data), config.batch_size)
        torch.manual_seed(config.seed)
        adopt_imported_init(config)
        config.arch_options = arch_options(config.arch, **config.arch_options)
        if self.main:
            keep_imported_code(config, run.path)
        self.model = training_model(config, dataset.task, self.world, self.device,
                                    built_from(config, run.path))
        if config.init and not run.last_path.exists():  # a resume takes last.pt's weights
            load_init(config, dataset.task, self.model)
        self.average = WeightAverage(self.model, config.ema) if config.ema > 0 else None
        self.forward = step_model(self.model, config, self.world, self.device)
        self.watch = Watch(config, dataset, run.path, self.main, self.model, self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = make_scheduler(self.optimizer, config, self.steps_per_epoch())
        # One-cycle steps after every step; the other schedules after every epoch.
        self.steps_schedule = isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)
        weights = class_weights(config, self.train_data.labels, dataset.task.num_classes)
        self.loss_fn = self.targets.loss(weights, config.label_smoothing)
        self.summed_loss = self.targets.loss(weights, config.label_smoothing, reduction="sum")
        self.augment = AugmentConfig(shift=config.shift, flip=config.flip, rotate=config.rotate)
        self.mix = MixConfig(mixup=config.mixup, cutmix=config.cutmix)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.epoch = 0
        self.progress: Progress | None = None
        self.checkpoints = Checkpoints(run, config, dataset, self.main, TrainingState(
            self.model, self.average, self.optimizer, self.scheduler, self.scaler, self.aug_gen,
            self.device))

    @property
    def shipped(self) -> nn.Module:
        """The weights validated and saved: the running average when there is one."""
        return self.checkpoints.state.shipped

    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.train_data), self.config.batch_size, self.distributed)

    def resume(self, schedule: str = "stretch") -> None:
        """Load last.pt's weights and training state; drop the history, probe maps and
        snapshots written after it was saved (see `Checkpoints.resume` for `schedule`)."""
        self.epoch, self.progress = self.checkpoints.resume(schedule)
        if self.main:
            truncate_history_to(self.folder, self.epoch, self.progress)
            self.watch.forget_after(self.epoch)

    def run(self) -> str:
        """Train until the last epoch or a stop request; returns 'finished' or 'stopped'."""
        if self.main:
            self.folder.clear_stale_stop()
            self.watch.start()
        self.log.start(self.config, self.epoch, self.checkpoints.best_or_none(), self.world.size)
        self.log.open()
        try:
            with StopRequested(self.folder) as stop:
                state = self._loop(stop)
        finally:
            self.log.close()
            self.checkpoints.wait()
        self.log.finish(state, self.epoch, self.checkpoints.best_or_none())
        return state

    def _loop(self, stop: StopRequested) -> str:
        while self.epoch < self.config.epochs:
            progress = self.progress or Progress(epoch=self.epoch + 1)
            self.progress = progress
            if not self._train_epoch(progress, stop):
                self.checkpoints.save_last(self.epoch, self.progress)
                return "stopped"
            record = self._end_epoch(progress)
            self.log.epoch(record, self.checkpoints.best_or_none())
            if distributed.any_rank(bool(stop), self.device):
                return "stopped"
        return "finished"

    def _epoch_permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(len(self.train_data), generator=g).to(self.device)

    def _train_epoch(self, p: Progress, stop: StopRequested) -> bool:
        """Train from step p.step to the end of the epoch; False when a stop cut it short."""
        c, model = self.config, self.model
        model.train()
        perm = self._epoch_permutation(p.epoch)
        self.epoch_targets = self.targets.for_epoch(p.epoch)
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
                self.log.step(p, steps)
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
        t = self.epoch_targets[idx]
        partners, t_partners = y.flip(0), t.flip(0)
        weighed = self._rank_weight(y)
        if self.distributed:
            share = len(idx) // self.world.size
            mine = slice(self.world.rank * share, (self.world.rank + 1) * share)
            x, y, partners = x[mine], y[mine], partners[mine]
            t, t_partners = t[mine], t_partners[mine]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            logits = self.forward(x)
            if weighed is None:
                loss = mixed.loss(self.loss_fn, logits.float(), t, t_partners)
            else:
                loss = mixed.loss(self.summed_loss, logits.float(), t, t_partners) / weighed
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average:
            self.average.update()
        if self.steps_schedule:
            self.scheduler.step()
        return loss.detach() * len(y), mixed.correct(logits, y, partners)

    def _rank_weight(self, y: torch.Tensor) -> torch.Tensor | None:
        """With class weights under torchrun, what this rank divides its summed loss by: the
        global batch's total weight over the ranks (labels `y` of the whole batch; mixing's
        partners are the same labels reversed, so the same total). DDP then averages the ranks'
        gradients into those of one process's weighted mean over the whole batch, which a
        per-rank mean, divided by the rank's own weights, is not. None otherwise: the mean is
        (so with soft targets, whose weighted loss PyTorch averages over the faces)."""
        if not self.distributed or self.loss_fn.weight is None or self.targets.soft:
            return None
        return self.loss_fn.weight[y].sum() / self.world.size

    def _end_epoch(self, p: Progress) -> dict:
        """Validate, step the schedule, hand the epoch's checkpoints to the writer and record
        the probe maps; returns the epoch's history record."""
        t0 = time.perf_counter()
        val_loss, val_acc = self.validate()
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss if val_loss is not None else p.loss_sum / p.seen)
        elif self.scheduler is not None and not self.steps_schedule:
            self.scheduler.step()
        self.epoch = p.epoch
        self.progress = None
        record = epoch_record(p, val_loss, val_acc, lr, time.perf_counter() - t0)
        metrics = {k: record[k] for k in METRIC_KEYS}
        also = self.checkpoints.end_epoch(p.epoch, metrics, lr, self.watch.snapshot_due(p.epoch))
        self.watch.probe(p.epoch, self.shipped, self.model)
        self.checkpoints.save_last(self.epoch, self.progress, metrics, also=also)
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
