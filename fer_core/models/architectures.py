"""The model registry: `cnn3` and `resnet18`, both built for a task (`data.task`): they take
N x channels x size x size pixels in [0, 1] and output one logit per class.

Normalization is the first module of every model, so a checkpoint is self-describing and every
attribution is taken in pixel space.

Every activation is its own module and nothing runs in place: an in-place ReLU rewrites the
tensor a forward hook on the layer before it has already been handed (a hook on a BatchNorm would
see post-ReLU values), and a module called twice (torchvision's BasicBlock reuses its ReLU) mixes
its two uses in any hook and makes Captum's DeepLift refuse the model. ReLUs hold no weights, so
`state_dict` keys are those of the original models and saved checkpoints load unchanged.

The input normalization's mean and std are architecture options, so they are recorded in every
checkpoint's `arch_options` (not as buffers: `state_dict` keys stay those of older checkpoints).
torchvision is imported only when a ResNet is built (it adds about a second to start-up).

`layer_registry(arch, **options)` lists each architecture's conv layers with their BN and ReLU
outputs, and the final linear layer, in forward order, with channels and output sizes.
"""

import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data.task import FER2013, Task
from ..errors import FerError
from .imported import (
    IMPORTED,
    TORCHVISION,
    build_imported,
    build_torchvision,
    is_imported,
    layers_problem,
)
from .resnet_blocks import hook_safe_basic_block, torchvision_resnet

# Mean and std of FER2013 Training pixels in [0, 1]; close enough for the built-in faces too.
PIXEL_MEAN = 0.508
PIXEL_STD = 0.255


class Normalize(nn.Module):
    """Maps [0, 1] pixels to roughly zero mean and unit variance."""

    def __init__(self, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
        super().__init__()
        if not (_is_number(mean) and _is_number(std) and std > 0):
            raise FerError(f"normalization needs numbers mean and std > 0, got mean={mean!r}, "
                           f"std={std!r}")
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class BatchDropout(nn.Dropout):
    """Dropout whose mask is drawn for the whole global batch and cut to this process's share.

    Under torchrun each of N ranks holds 1/N of every batch; drawing the global batch's mask on
    every rank (they hold the same random state) and keeping its own rows makes the N ranks drop
    exactly what one process would. `share` (rank, ranks) is set by the trainer; (0, 1) is a
    plain run. Evaluation and p = 0 pass faces through untouched, as nn.Dropout does.
    """

    share: tuple[int, int] = (0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        rank, ranks = self.share
        n = len(x)
        keep = x.new_empty((n * ranks, *x.shape[1:])).bernoulli_(1 - self.p)[rank * n:][:n]
        return x * keep / (1 - self.p)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(c_out),
        relu=nn.ReLU(),
        pool=nn.MaxPool2d(2),
    ))


CNN3_HEADS = ("pool", "flat")
CNN3_HIDDEN = 256


def build_cnn3(task: Task = FER2013, dropout: float = 0.3, head: str = "pool",
               mean: float = PIXEL_MEAN, std: float = PIXEL_STD) -> nn.Sequential:
    """Three conv3x3-BN-ReLU-maxpool blocks (64, 128, 512 channels) and a linear head.

    head "pool" averages the final map of block3 (6x6 for a 48-pixel face; the original head,
    669,127 parameters in all for FER2013); "flat" keeps where each feature is (mouth below eyes)
    by flattening that map into a hidden layer of 256 units (linear, batch norm, ReLU, dropout).
    The final linear layer is `head.fc` in both.
    """
    if head not in CNN3_HEADS:
        raise FerError(f"unknown cnn3 head {head!r}: choose one of {', '.join(CNN3_HEADS)}")
    blocks = OrderedDict(
        normalize=Normalize(mean, std),
        block1=_conv_block(task.channels, 64),
        block2=_conv_block(64, 128),
        block3=_conv_block(128, 512),
    )
    if head == "pool":
        blocks["head"] = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            dropout=BatchDropout(dropout),
            fc=nn.Linear(512, task.num_classes),
        ))
    else:
        blocks["head"] = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            hidden=nn.Linear(512 * (task.size // 8) ** 2, CNN3_HIDDEN, bias=False),
            bn=nn.BatchNorm1d(CNN3_HIDDEN),
            relu=nn.ReLU(),
            dropout=BatchDropout(dropout),
            fc=nn.Linear(CNN3_HIDDEN, task.num_classes),
        ))
    return nn.Sequential(blocks)


def build_resnet18(task: Task = FER2013, small_input: bool = True, mean: float = PIXEL_MEAN,
                   std: float = PIXEL_STD) -> nn.Sequential:
    """torchvision's ResNet18 with the task's channels as input and one output per class.

    small_input replaces the ImageNet stem (7x7 stride-2 conv + max-pool, which leaves 2x2 maps
    at layer4 for a 48-pixel face) with a 3x3 stride-1 conv and no max-pool (6x6 at layer4).
    """
    block_class = hook_safe_basic_block()
    net = torchvision_resnet().resnet18(weights=None, num_classes=task.num_classes)
    net.relu = nn.ReLU()
    for block in net.modules():
        if isinstance(block, block_class.__base__):
            block.__class__ = block_class
            block.relu, block.relu_out = nn.ReLU(), nn.ReLU()
    if small_input:
        net.conv1 = nn.Conv2d(task.channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(task.channels, 64, 7, stride=2, padding=3, bias=False)
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), resnet=net))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cnn3": build_cnn3,
    "resnet18": build_resnet18,
}
NORMALIZATION = {"mean": PIXEL_MEAN, "std": PIXEL_STD}
DEFAULT_OPTIONS = {"cnn3": {"dropout": 0.3, "head": "pool", **NORMALIZATION},
                   "resnet18": {"small_input": True, **NORMALIZATION}}


def build_model(arch: str, task: Task = FER2013, **options) -> nn.Module:
    """Build an untrained model for `task` by registry name; unknown names or options give a
    FerError."""
    if arch == IMPORTED:  # a model trained elsewhere, built from its run folder
        return build_imported(task, **options)
    if arch not in ARCHITECTURES and not arch.startswith(TORCHVISION):
        raise FerError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)} "
                       f"or {TORCHVISION}NAME (a torchvision classifier)")
    unknown = set(options) - set(default_options(arch))
    if unknown:
        raise FerError(f"unknown option(s) for {arch}: {', '.join(sorted(unknown))}")
    options = {**default_options(arch), **options}
    if arch.startswith(TORCHVISION):
        return build_torchvision(task, arch.removeprefix(TORCHVISION), **options)
    return ARCHITECTURES[arch](task, **options)


def default_options(arch: str) -> dict:
    """The options `arch` is built with unless told otherwise: a torchvision classifier's are
    the pixel normalization."""
    return NORMALIZATION if arch.startswith(TORCHVISION) else DEFAULT_OPTIONS.get(arch, {})


def arch_options(arch: str, **options) -> dict:
    """The full option dict for `arch` (defaults filled in), as stored in checkpoints."""
    return {**default_options(arch), **options}


@dataclass(frozen=True)
class LayerInfo:
    """One layer a hook can watch: its module name, kind (conv, bn, relu or linear), output
    channels (features for linear) and output size (H, W) for one face of the task's size
    (None: linear)."""

    name: str
    kind: str
    channels: int
    size: tuple[int, int] | None


LAYER_KINDS = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu", nn.Linear: "linear"}


@functools.lru_cache(maxsize=8)
def _registry(arch: str, task: Task, options: tuple) -> tuple[LayerInfo, ...]:
    model = build_model(arch, task, **dict(options)).eval()
    final = final_linear_name(model)
    found, hooks = [], []
    for name, module in model.named_modules():
        kind = LAYER_KINDS.get(type(module))
        if kind is None or (kind == "linear" and name != final) or ".downsample" in name:
            continue
        hooks.append(module.register_forward_hook(
            lambda _m, _i, out, name=name, kind=kind: found.append(_layer_info(name, kind, out))))
    found = [layer for layer in found if layer.kind == "linear" or layer.size is not None]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *task.shape))
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(found)


def _layer_info(name: str, kind: str, out: torch.Tensor) -> LayerInfo:
    size = tuple(out.shape[2:]) if out.dim() == 4 else None
    return LayerInfo(name=name, kind=kind, channels=int(out.shape[1]), size=size)


SPATIAL = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)  # the layers whose output is a map


def last_conv_stage(model: nn.Module, shape: tuple[int, int, int]) -> str:
    """The name of the last conv, BN or ReLU module whose output is a spatial map (of an
    imported model: the last convolution, as pytorch-grad-cam users pick for torchvision's
    ResNets, layer4.1.conv2), found by running one face of `shape` (C, H, W) (outside residual
    shortcuts, as in `layer_registry`). Call it on a model in eval mode: in train mode the face
    would move its batch-norm statistics."""
    kinds = nn.Conv2d if is_imported(model) else SPATIAL
    seen, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, kinds) and ".downsample" not in name:
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: seen.append(name) if out.dim() == 4 else None))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        why = layers_problem(model) or ("no convolution, batch norm or ReLU module of the "
                                         "model gives a spatial map")
        raise FerError(f"no layer to explain by: {why}")
    return seen[-1]



def layer_registry(arch: str, task: Task = FER2013, **options) -> list[LayerInfo]:
    """The conv layers (with their BN and ReLU outputs) and the final linear layer of `arch`, in
    forward order (a residual shortcut's conv and BN are left out: they are not a stage of the
    forward path a user inspects)."""
    return list(_registry(arch, task, tuple(sorted(arch_options(arch, **options).items()))))


def final_linear_name(model: nn.Module) -> str:
    """The module name of the last nn.Linear: the layer that makes the logits."""
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        why = layers_problem(model) or "the model has no nn.Linear module"
        raise FerError(f"no final linear layer: {why}")
    return linear[-1]
