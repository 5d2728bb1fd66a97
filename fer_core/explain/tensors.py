"""What every explanation engine does to its inputs and to the shared model before it starts:
faces as the model's input, the model's device, a batch size for that device, a read-only
working model, and a Gaussian blur (baselines, deletion curves, activation maximization)."""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data.task import Task
from ..errors import FerError

CPU_BATCH, GPU_BATCH = 128, 1024   # forward passes batched this many images at a time


def as_input(faces: torch.Tensor) -> torch.Tensor:
    """Float N x C x H x W pixels in [0, 1] from uint8 or float faces N x C x H x W (C: 1 grey,
    3 colour) or N x H x W (grey). Whether the size and channels suit a model is the model's
    task's business (`require_task`), not checked here."""
    x = faces.float() / 255 if faces.dtype == torch.uint8 else faces.float()
    x = x.unsqueeze(1) if x.dim() == 3 else x
    if x.dim() != 4 or x.shape[1] not in (1, 3) or 0 in x.shape:
        raise FerError(f"faces must be N x C x H x W (C 1 or 3) or N x H x W with N >= 1, "
                       f"got {tuple(faces.shape)}")
    return x.detach()


def require_task(task: Task, dataset) -> None:
    """Refuse data of another task than the model's (`task`, a checkpoint's): explanations take
    the dataset's faces and labels as the model's input and classes. A FerError names both."""
    if dataset.task == task:
        return
    names = (f" ({', '.join(task.classes)} against {', '.join(dataset.task.classes)})"
             if task.classes != dataset.task.classes else "")
    raise FerError(f"the model is for {task.describe()}, but {dataset.name} holds "
                   f"{dataset.task.describe()}{names}: use data of the model's task")


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def default_batch(device: torch.device) -> int:
    """How many images one forward pass holds when the caller does not say: GPU_BATCH on a GPU,
    CPU_BATCH elsewhere."""
    return GPU_BATCH if device.type == "cuda" else CPU_BATCH


def working_model(model: nn.Module, hooks: bool) -> nn.Module:
    """The model itself for hook-free methods when it is in eval mode; else a frozen eval-mode
    deep copy, so the shared model never carries hooks, `.grad` or a mode change."""
    if not hooks and not model.training:
        return model
    return copy.deepcopy(model).eval().requires_grad_(False)


def hook_model(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the model's modules that shares its weights and buffers (frozen
    aliases, not clones), for work that attaches hooks or needs eval mode and only reads the
    weights: hooks and the mode stay on the copy, no `.grad` reaches the model. It never changes
    a weight in place (they are the model's); `working_model` gives a copy of its own. On
    fer2013-cnn3 (22 MB of weights) it takes 4 ms where a deep copy takes 23."""
    aliases = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    aliases.update({id(b): b for b in model.buffers()})
    return copy.deepcopy(model, aliases).eval()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of N x C x H x W images, each channel on its own (kernel radius
    3 sigma, borders reflected)."""
    radius = min(int(3 * sigma), x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1),
                    groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
