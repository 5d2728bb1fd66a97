"""The model registry: `cnn3` and `resnet18`, both taking N x 1 x 48 x 48 pixels in [0, 1].

Normalization is the first module of every model, so a checkpoint is self-describing and every
attribution is taken in pixel space.
"""

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18 as tv_resnet18

from .classes import NUM_CLASSES
from .errors import FerError

# Mean and std of FER2013 Training pixels in [0, 1]; close enough for the built-in faces too.
PIXEL_MEAN = 0.508
PIXEL_STD = 0.255


class Normalize(nn.Module):
    """Maps [0, 1] pixels to roughly zero mean and unit variance."""

    def __init__(self, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(c_out),
        relu=nn.ReLU(inplace=True),
        pool=nn.MaxPool2d(2),
    ))


CNN3_HEADS = ("pool", "flat")
CNN3_HIDDEN = 256


def build_cnn3(dropout: float = 0.3, head: str = "pool") -> nn.Sequential:
    """Three conv3x3-BN-ReLU-maxpool blocks (64, 128, 512 channels) and a linear head.

    head "pool" averages the 6x6 map of block3 (the original head, 669,127 parameters in all);
    "flat" keeps where each feature is (mouth below eyes) by flattening the 6x6x512 map into a
    hidden layer of 256 units (linear, batch norm, ReLU, dropout). The final linear layer is
    `head.fc` in both.
    """
    if head not in CNN3_HEADS:
        raise FerError(f"unknown cnn3 head {head!r}: choose one of {', '.join(CNN3_HEADS)}")
    blocks = OrderedDict(
        normalize=Normalize(),
        block1=_conv_block(1, 64),
        block2=_conv_block(64, 128),
        block3=_conv_block(128, 512),
    )
    if head == "pool":
        blocks["head"] = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            dropout=nn.Dropout(dropout),
            fc=nn.Linear(512, NUM_CLASSES),
        ))
    else:
        blocks["head"] = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            hidden=nn.Linear(512 * 6 * 6, CNN3_HIDDEN, bias=False),
            bn=nn.BatchNorm1d(CNN3_HIDDEN),
            relu=nn.ReLU(),
            dropout=nn.Dropout(dropout),
            fc=nn.Linear(CNN3_HIDDEN, NUM_CLASSES),
        ))
    return nn.Sequential(blocks)


def build_resnet18(small_input: bool = True) -> nn.Sequential:
    """torchvision's ResNet18 with a 1-channel input and 7 outputs.

    small_input replaces the ImageNet stem (7x7 stride-2 conv + max-pool, which leaves 2x2 maps
    at layer4 for a 48-pixel face) with a 3x3 stride-1 conv and no max-pool (6x6 at layer4).
    """
    net = tv_resnet18(weights=None, num_classes=NUM_CLASSES)
    if small_input:
        net.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    return nn.Sequential(OrderedDict(normalize=Normalize(), resnet=net))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cnn3": build_cnn3,
    "resnet18": build_resnet18,
}
DEFAULT_OPTIONS = {"cnn3": {"dropout": 0.3, "head": "pool"}, "resnet18": {"small_input": True}}


def build_model(arch: str, **options) -> nn.Module:
    """Build an untrained model by registry name; unknown names or options give a FerError."""
    if arch not in ARCHITECTURES:
        raise FerError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    unknown = set(options) - set(DEFAULT_OPTIONS[arch])
    if unknown:
        raise FerError(f"unknown option(s) for {arch}: {', '.join(sorted(unknown))}")
    return ARCHITECTURES[arch](**{**DEFAULT_OPTIONS[arch], **options})


def arch_options(arch: str, **options) -> dict:
    """The full option dict for `arch` (defaults filled in), as stored in checkpoints."""
    return {**DEFAULT_OPTIONS[arch], **options}
