"""Resuming a run from its last.pt: what refuses a resume, the random streams, the cosine
schedule of a run resumed with another number of epochs, and the history cut back to the
checkpoint."""

import math

import torch

from ..data.task import Task
from ..errors import FerError, RunError
from ..models.checkpoint import read_payload
from .config import RESUME_SCHEDULES, TrainConfig
from .preflight import refuse_other_task
from .progress import Progress
from .runs import RunFolder, truncate_history


def replanned(payload: dict, config: TrainConfig) -> bool:
    """Whether `config` trains another number of epochs than the run saved in `payload`."""
    return payload["config"].get("epochs", config.epochs) != config.epochs


def read_resumable(run: RunFolder, config: TrainConfig, task: Task, schedule: str,
                   scheduler) -> tuple[dict, dict]:
    """last.pt's payload and its training state, when `config` (with `scheduler`, made from it)
    can continue it on data of `task` with the resume `schedule`; FerError or RunError saying why
    otherwise."""
    if not run.last_path.exists():
        raise RunError(f"cannot resume {run.path}: it has no last.pt")
    payload = read_payload(run.last_path)
    state = payload.get("training_state")
    if state is None:
        raise RunError(f"cannot resume {run.path}: last.pt holds no training state")
    if payload["arch"] != config.arch:
        raise RunError(f"cannot resume {run.path}: it trains {payload['arch']}, "
                       f"not {config.arch}")
    refuse_other_task(f"cannot resume {run.path}: its last.pt", Task.from_meta(payload), task,
                      RunError)
    if schedule not in RESUME_SCHEDULES:
        raise FerError(f"resume schedule must be one of {RESUME_SCHEDULES}, got {schedule!r}")
    if replanned(payload, config) and config.schedule == "onecycle":
        raise RunError(f"cannot resume {run.path} with {config.epochs} epochs: its one-cycle "
                       f"schedule is planned over {payload['config']['epochs']}")
    planned = (state.get("scheduler") or {}).get("total_steps")
    one_cycle = isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    if one_cycle and planned not in (None, scheduler.total_steps):
        raise RunError(f"cannot resume {run.path} here: its one-cycle schedule is planned over "
                       f"{planned} steps, this run would take {scheduler.total_steps} (a "
                       f"torchrun run drops each epoch's last partial batch)")
    return payload, state


def rng_state(aug_gen: torch.Generator, device: torch.device) -> dict:
    """The random streams training draws from: the augmentations' and torch's own."""
    return {
        "aug_rng": aug_gen.get_state().cpu(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng(state: dict, aug_gen: torch.Generator, device: torch.device, seed: int,
                done: int) -> None:
    """Restore the random streams `rng_state` saved. A run saved on another kind of device (CUDA
    generator state on a CPU, or the reverse) cannot take its augmentation stream: that stream is
    reseeded from the seed and the epochs `done`, so the resumed run is reproducible, not
    identical."""
    try:
        aug_gen.set_state(state["aug_rng"])
    except (RuntimeError, ValueError, TypeError):
        aug_gen.manual_seed(seed * 1_000_003 + done)
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def extend_cosine(scheduler, optimizer: torch.optim.Optimizer, done: int, epochs: int,
                  mode: str) -> None:
    """A run resumed with `epochs` epochs in all, after `done` epochs of a cosine schedule:

    - stretch: fit the cosine to the new length; the learning rate is the closed form's for
      the epochs done, which raises it again when a finished run is extended;
    - constant: hold the learning rate of the last epoch trained;
    - restart: a fresh cosine from the base learning rate over the added epochs (a warm
      restart, as in SGDR).

    CosineAnnealingLR steps recursively from the current rate, so setting the rate, T_max,
    eta_min and last_epoch here is enough for every later step to follow the chosen curve.
    Other schedules are left as they are.
    """
    s = scheduler
    if not isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    old_t = s.T_max
    for group, base in zip(optimizer.param_groups, s.base_lrs):
        if mode == "stretch":
            group["lr"] = _cosine(base, s.eta_min, done, epochs)
        elif mode == "constant":
            group["lr"] = _cosine(base, s.eta_min, max(done - 1, 0), old_t)
        else:
            group["lr"] = base
    if mode == "restart":
        s.T_max, s.last_epoch = max(epochs - done, 1), 0
    else:
        s.T_max = epochs
    if mode == "constant":
        s.eta_min = optimizer.param_groups[0]["lr"]
    s._last_lr = [group["lr"] for group in optimizer.param_groups]


def _cosine(base: float, floor: float, epoch: int, total: int) -> float:
    """The cosine schedule's closed form: the learning rate of 0-based `epoch` of `total`."""
    return floor + (base - floor) * (1 + math.cos(math.pi * epoch / total)) / 2


def truncate_history_to(run: RunFolder, done: int, progress: Progress | None) -> None:
    """Drop the history records written after last.pt was saved: after epoch `done`, or after
    `progress`'s step of the epoch it stopped in."""

    def saved(record: dict) -> bool:
        if record.get("kind") == "epoch":
            return record["epoch"] <= done
        if progress is not None and record["epoch"] == progress.epoch:
            return record["step"] <= progress.step
        return record["epoch"] <= done

    truncate_history(run.history_path, saved)
