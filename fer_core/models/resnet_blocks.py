"""torchvision's ResNet, imported on first use (it adds about a second to start-up), and its
BasicBlock made hook-safe: used by our resnet18 (`architectures`) and by imported torchvision
ResNets (`imported`)."""

import functools

import torch
from torch import nn

from ..environment import torchvision_problem
from ..errors import FerError


def torchvision_resnet():
    """torchvision.models.resnet; a FerError naming the fix when torchvision does not import
    (not installed, or built for another torch: `fer_core.environment`)."""
    try:
        from torchvision.models import resnet
    except Exception as e:  # a broken build can raise anything at import
        raise FerError(torchvision_problem(e)) from None
    return resnet


@functools.cache
def hook_safe_basic_block() -> type[nn.Module]:
    """The class HookSafeBasicBlock, made on first use so that torchvision is imported only
    when a ResNet is built."""

    class HookSafeBasicBlock(torchvision_resnet().BasicBlock):
        """torchvision's BasicBlock with its two ReLUs as two modules (`relu` after bn1,
        `relu_out` after the residual sum) and the sum made out of place, so a hook on bn2
        keeps its values."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu_out(out + identity)

    return HookSafeBasicBlock
