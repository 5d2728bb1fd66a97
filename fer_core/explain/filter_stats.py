"""Per-filter statistics over real faces: a layer's feature maps for one face, and for each
filter of a layer its highest activation on a split, the faces that activate it most, and
whether it is dead.

A filter's activation on a face is the mean over positions of its channel in the layer's output;
for the final linear layer it is the logit of a class, so that layer's "filters" are the task's
classes. A filter is dead when the ReLU that follows it in its block never outputs more than
DEAD_AT_MOST at any position of any face of the split: no face ever lets it through.

Every pass reads a layer with a forward hook that raises `_Stop` once the last layer it needs has
run, so nothing past it is computed. The model is shared (the dashboard caches one per
checkpoint for every tab) and treated as read-only: the hooks act only for the calling thread
(another tab's forward on the same model passes through them untouched) and are removed before
the call returns; a model in training mode is read through an eval-mode copy.
"""

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cache
from ..data.dataset import FaceDataset
from ..errors import FerError
from ..evaluation.predict import ProgressCallback
from ..models.architectures import LAYER_KINDS, final_linear_name
from .tensors import as_input, default_batch, device_of, working_model

CACHE_VERSION = 1
DEAD_AT_MOST = 1e-6


class _Stop(Exception):
    """Raised by the hook on the last layer a pass needs, to end the forward pass there."""


def layer_kinds(model: nn.Module) -> dict[str, str]:
    """Layer name -> kind (conv, bn, relu, linear) for the layers `layer_registry` lists for the
    model's architecture, in the same order: its conv, BN and ReLU modules outside residual
    shortcuts, and its final linear layer. Read from the model itself, which does not know its
    architecture's name."""
    final = final_linear_name(model)
    kinds = {}
    for name, module in model.named_modules():
        kind = LAYER_KINDS.get(type(module))
        if kind is not None and ".downsample" not in name and (kind != "linear" or name == final):
            kinds[name] = kind
    return kinds


def _relu_after(kinds: dict[str, str], layer: str) -> str | None:
    """The ReLU layer after `layer` in its block (the layer itself when it is a ReLU; None for
    the final linear layer): the one whose output says whether a filter is dead."""
    _check_layer(kinds, layer)
    if kinds[layer] in ("relu", "linear"):
        return layer if kinds[layer] == "relu" else None
    block, names = layer.rpartition(".")[0], list(kinds)
    return next((name for name in names[names.index(layer) + 1:]
                 if kinds[name] == "relu" and name.rpartition(".")[0] == block), None)


def _check_layer(kinds: dict[str, str], layer: str) -> None:
    if layer not in kinds:
        raise FerError(f"unknown layer {layer!r}: choose one of {', '.join(kinds)}")


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of layer `layer` (a `layer_registry` name) for float input x (N, C, H, W);
    the forward pass stops there. It runs in the caller's grad mode, so an activation can be
    differentiated with respect to the input."""
    _check_layer(layer_kinds(model), layer)
    return outputs_of(working_model(model, hooks=False), (layer,), x)[layer]


def outputs_of(model: nn.Module, names: tuple[str, ...],
               x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of the distinct modules `names` for x, from one forward pass that ends as soon
    as the last of them has run. The names are not checked against the registry (callers that
    take names from a user check them first); hooks act only for the calling thread and are
    removed before returning."""
    caller = threading.get_ident()
    seen = {}

    def keep(name):
        def hook(_module, _inputs, output):
            if threading.get_ident() == caller:
                seen[name] = output
                if len(seen) == len(names):
                    raise _Stop
        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in names]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return seen


def mean_activations(model: nn.Module, layer: str, faces: torch.Tensor, batch: int | None = None,
                     progress: ProgressCallback | None = None) -> torch.Tensor:
    """Each filter's activation on each face: float32 (N, C) on the model's device, for uint8
    faces (N, C, H, W). Spatial outputs are averaged over positions; linear ones are as they
    are."""
    means, _ = _activations(model, layer, None, faces, batch, progress)
    return means


@torch.no_grad()
def _activations(model: nn.Module, layer: str, relu: str | None, faces: torch.Tensor,
                 batch: int | None, progress: ProgressCallback | None,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`mean_activations` of `layer` and, when `relu` is given, the largest output of `relu` at
    any position, per face and filter (N, C): both from one batched pass, in fp32. `progress`
    hears (0, N) as the pass starts (a page tells a pass under way from one still waiting to
    start), then (faces done, N) after each batch."""
    _check_layer(layer_kinds(model), layer)
    if len(faces) == 0:
        raise FerError("no faces to take activations on")
    device = device_of(model)
    working = working_model(model, hooks=False)
    faces = faces.to(device)
    batch = batch or default_batch(device)
    names = tuple(dict.fromkeys(name for name in (layer, relu) if name is not None))
    means, peaks = [], []
    if progress is not None:
        progress(0, len(faces))
    with torch.autocast(device.type, enabled=False):
        for start in range(0, len(faces), batch):
            outputs = outputs_of(working, names, as_input(faces[start:start + batch]))
            means.append(_spatial(outputs[layer], torch.mean))
            if relu is not None:
                peaks.append(_spatial(outputs[relu], torch.amax))
            if progress is not None:
                progress(min(start + batch, len(faces)), len(faces))
    return torch.cat(means), torch.cat(peaks) if relu is not None else None


def _spatial(output: torch.Tensor, reduce) -> torch.Tensor:
    """`reduce` over the positions of an N x C x H x W output; an N x C output as it is."""
    return reduce(output, dim=(2, 3)) if output.dim() == 4 else output


@dataclass(frozen=True)
class FilterStats:
    """One layer's filters over the faces of one split.

    Positions are 0-based indices within the split (`dataset.indices(split)[position]` is the
    dataset row). For each filter: its highest activation on any face, the k faces that activate
    it most (most first; ties go to the lower position) with their activations, and whether it is
    dead (always False for the final linear layer, which has no ReLU).
    """

    layer: str
    split: str
    max_activation: np.ndarray  # float32 (C,)
    top_positions: np.ndarray   # int64 (C, k)
    top_values: np.ndarray      # float32 (C, k)
    dead: np.ndarray            # bool (C,)


ARRAYS = ("max_activation", "top_positions", "top_values", "dead")


def filter_stats(model: nn.Module, checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                 layer: str, k: int = 8, progress: ProgressCallback | None = None) -> FilterStats:
    """The `FilterStats` of `layer` over `split` (k faces per filter, fewer when the split is
    smaller), from one batched pass on the model's device and one host copy at the end.

    Served from the disk cache when the same checkpoint file (by content), dataset (by
    fingerprint), split, layer and k were computed before, with the same faces (the entry keeps
    their rows); else computed and stored.
    """
    if split not in dataset.present_splits():
        raise FerError(f"{dataset.name} has no {split!r} faces: choose one of "
                       f"{', '.join(dataset.present_splits())}")
    if k < 1:
        raise FerError(f"k must be at least 1, got {k}")
    rows = dataset.indices(split)

    def compute() -> dict[str, np.ndarray]:
        stats = _compute(model, torch.from_numpy(dataset.images[rows]), split, layer, k, progress)
        return {name: getattr(stats, name) for name in ARRAYS}

    arrays = cache.load_or_compute(filter_stats_key(checkpoint_path, dataset, split, layer, k),
                                   ARRAYS, compute, rows)
    return FilterStats(layer, split, *(arrays[name] for name in ARRAYS))


def _compute(model: nn.Module, faces: torch.Tensor, split: str, layer: str, k: int,
             progress: ProgressCallback | None) -> FilterStats:
    relu = _relu_after(layer_kinds(model), layer)
    means, peaks = _activations(model, layer, relu, faces, None, progress)
    # A stable sort, not topk: equal activations keep position order.
    ranked = means.sort(dim=0, descending=True, stable=True)
    k = min(k, len(faces))
    dead = (peaks.amax(0) <= DEAD_AT_MOST if peaks is not None
            else torch.zeros(means.shape[1], dtype=torch.bool))
    return FilterStats(layer=layer, split=split,
                       max_activation=ranked.values[0].cpu().numpy(),
                       top_positions=ranked.indices[:k].T.cpu().numpy(),
                       top_values=ranked.values[:k].T.cpu().numpy(),
                       dead=dead.cpu().numpy())


def filter_stats_key(checkpoint_path: str | Path, dataset: FaceDataset, split: str, layer: str,
                     k: int) -> str:
    """The cache key: checkpoint content hash, dataset fingerprint, split, layer and k."""
    return cache.entry_key("filter-stats", CACHE_VERSION, checkpoint_path, dataset.fingerprint,
                           split, layer, k)


@torch.no_grad()
def feature_maps(model: nn.Module, layer: str, face: torch.Tensor) -> torch.Tensor:
    """The output of a spatial layer (conv, bn or relu) for one uint8 face (C, H, W) of the
    model's task (a grey one may be H x W): float32 (channels, h, w) on the model's device."""
    if face.dim() not in (2, 3):
        raise FerError(f"a face must be C x H x W or H x W, got {tuple(face.shape)}")
    x = as_input(face[None].to(device_of(model)))
    with torch.autocast(x.device.type, enabled=False):
        output = layer_output(model, layer, x)
    if output.dim() != 4:
        raise FerError(f"layer {layer!r} has no feature maps: its output is not spatial")
    return output[0]
