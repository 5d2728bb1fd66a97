"""What a Trainer is built from: a split's faces on the device, the model and what a training
step calls, the optimizer, the learning-rate schedule and the loss's class weights."""

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..data.dataset import FaceDataset
from ..data.task import Task
from ..errors import FerError
from ..models.architectures import BatchDropout, build_model
from .config import TrainConfig


def uses_channels_last(device: torch.device) -> bool:
    """Whether the trainer keeps the model and its batches channels-last on `device` (faster for
    convolutions on CPUs and CUDA GPUs; MPS gains nothing)."""
    return device.type in ("cuda", "cpu")


class DeviceData:
    """Faces `rows` of a dataset (uint8, N x C x H x W as its task says) and their labels (by
    default the dataset's), resident on the training device."""

    def __init__(self, dataset: FaceDataset, rows: np.ndarray, device: torch.device,
                 labels: np.ndarray | None = None):
        labels = dataset.labels[rows] if labels is None else labels
        self.images = torch.from_numpy(dataset.images[rows]).to(device)
        self.labels = torch.from_numpy(labels).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].float().div_(255)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]


def check_ranks_agree(dataset: FaceDataset, faces: int, batch_size: int) -> None:
    """Under torchrun: every rank reads the same faces, and enough of them (`faces` labelled
    training faces) for one global batch."""
    distributed.agree(dataset.fingerprint, f"the fingerprint of {dataset.name}")
    if faces < batch_size:
        raise FerError(f"{faces} training faces make no global batch of {batch_size}: under "
                       f"torchrun the last partial batch is dropped")


def steps_per_epoch(faces: int, batch_size: int, ranks_launched: bool) -> int:
    """Whole batches, and the last partial one when it holds two faces or more (dropped under
    torchrun, where it might not divide among the ranks)."""
    return faces // batch_size + (1 if faces % batch_size >= 2 and not ranks_launched else 0)


def training_model(config: TrainConfig, task: Task, world: distributed.World,
                   device: torch.device, folder: Path | None = None) -> nn.Module:
    """The config's model for `task` (the data's) on `device`, its batch norms synchronised
    across the ranks when asked, its batch dropout told this rank's share of the global batch.
    An imported model is built from the files in `folder`."""
    where = {} if folder is None else {"folder": str(folder)}
    model = build_model(config.arch, task, **config.arch_options, **where)
    if world.launched and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, BatchDropout):
            module.share = (world.rank, world.size)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if uses_channels_last(device) else model


def step_model(model: nn.Module, config: TrainConfig, world: distributed.World,
               device: torch.device) -> nn.Module:
    """What a training step calls: the model, wrapped in DDP under torchrun and compiled when
    asked. Checkpoints, validation and the average keep the model itself.
    dynamic=False: one more compile for the last, smaller batch, not kernels for every batch
    size."""
    if world.launched:
        model = DistributedDataParallel(model,
                                        device_ids=[device] if device.type == "cuda" else None)
    return torch.compile(model, dynamic=False) if config.compile else model


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


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int):
    """The config's learning-rate schedule over `config.epochs` epochs of `steps` steps, or None
    for a constant rate."""
    c = config
    if c.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=c.lr, total_steps=c.epochs * steps, cycle_momentum=False)
    if c.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.epochs)
    if c.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


def class_weights(config: TrainConfig, labels: torch.Tensor,
                  num_classes: int) -> torch.Tensor | None:
    """'balanced': each of the task's K = `num_classes` classes weighs n / (K * its count) among
    the training `labels` in the loss, as scikit-learn's compute_class_weight does, so a rare
    class (FER2013's Disgust) counts as much as a common one (Happy)."""
    if config.class_weights == "none":
        return None
    counts = torch.bincount(labels, minlength=num_classes).float()
    return len(labels) / (num_classes * counts.clamp(min=1))
