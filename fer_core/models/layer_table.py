"""The architecture table: per layer, its name, type, output shape for a 48x48 face, parameters."""

from dataclasses import dataclass

import torch
from torch import nn

from ..data.classes import IMAGE_SIZE


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


def summarize(model: nn.Module, input_size: int = IMAGE_SIZE) -> ModelSummary:
    """Run one blank face through `model` and record every leaf module's output shape.

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
            model(torch.zeros(1, 1, input_size, input_size, device=device))
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
