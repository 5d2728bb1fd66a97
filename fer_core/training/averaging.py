"""An exponential moving average of a model's weights (Polyak averaging), the way timm's
ModelEmaV3 keeps one: parameters and batch-norm statistics, after every step, with a decay that
warms up as min(decay, (1 + t) / (10 + t)) at step t, so that a short run's average is not
dominated by its random initialization.

Not torch.optim.swa_utils.AveragedModel: it reads its step counter back from the device at every
update (a host sync per step), and this update is one foreach lerp that never waits.
"""

import copy

import torch
from torch import nn


class WeightAverage:
    """`module` is the averaged copy of the model given; `update()` after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._floats = [pair for pair in pairs if pair[0].is_floating_point()]
        self._counters = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        averaged, current = zip(*self._floats)
        torch._foreach_lerp_(averaged, current, 1 - decay)
        for averaged_count, count in self._counters:
            averaged_count.copy_(count)
