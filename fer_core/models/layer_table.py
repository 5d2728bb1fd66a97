"""The architecture table: per layer, its name, type, output shape for one face of the model's
task, parameters."""

from dataclasses import dataclass

import torch
from torch import nn

from ..data.task import FER2013, Task


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    trainable: int


@dataclass(frozen=True)
class ModelSummary:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int

    def as_records(self) -> list[dict]:
        """Rows as plain dicts (for tables and JSON); output shape written as C x H x W."""
        return [
            {
                "layer": r.name,
                "type": r.type,
                "output": " x ".join(map(str, r.output_shape)),
                "params": r.params,
            }
            for r in self.rows
        ]


def summarize(model: nn.Module, task: Task = FER2013) -> ModelSummary:
    """Run one blank face of `task` (the one the model was built for) through `model` and record
    every leaf module's output shape.

    Leaf modules (those with no children) are listed, plus containers that own parameters
    directly; the shapes are per sample (batch dimension dropped).
    """
    rows, hooks = [], []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if list(module.children()) and not own:
            continue
        hooks.append(module.register_forward_hook(_recorder(rows, name, module, own)))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *task.shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(rows, total, trainable)


def _recorder(rows: list, name: str, module: nn.Module, own: list):
    params = sum(p.numel() for p in own)
    trainable = sum(p.numel() for p in own if p.requires_grad)

    def hook(_module, _inputs, output):
        shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
        rows.append(LayerRow(name or "(model)", type(module).__name__, shape, params, trainable))

    return hook
