"""The mean saliency of one confusion-matrix cell: what, on average, turns a true t into a p.

Off the diagonal (true t, predicted p): the signed gradient of logit p minus logit t with respect
to the pixels, averaged over the cell's faces. Positive pixels push a t face towards p, negative
ones away from it; show it on a diverging colour map centred at 0. On the diagonal (t, t): the
mean absolute gradient of logit t, where the model looks when it gets t right. The magnitude is
averaged there because a single logit's signed gradient mostly cancels across faces (each face
is lit differently), while a contrast's sign is what the question asks.

The model is the shared, read-only one (see `attribution`): gradients are taken with respect to
the input only, with `torch.autograd.grad`, so the weights' `.grad` stays empty, no hook is set,
and frozen parameters (`requires_grad=False`) are fine. Maps are cached on disk next to the
predictions, keyed by the checkpoint file's content, the dataset, the split and the cell.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cache
from ..data.dataset import FaceDataset
from ..errors import FerError
from ..evaluation.confusion import cell_positions
from ..evaluation.predict import Predictions, ProgressCallback
from .tensors import as_input, default_batch, device_of, working_model

CACHE_VERSION = 1


def cell_mean_saliency(model: nn.Module, faces: torch.Tensor, true_class: int, pred_class: int,
                       batch: int | None = None,
                       progress: ProgressCallback | None = None) -> torch.Tensor:
    """The cell's mean map, float H x W on the model's device, from its faces (uint8 or float
    in [0, 1], N x C x H x W as the model takes them, or N x H x W grey; N >= 1). A colour
    face's gradient is summed over its channels (each |gradient| on the diagonal).

    Batched on the model's device (`batch` faces a pass: 128 on the CPU, 1024 on a GPU by
    default), in fp32 whatever autocast is active; the sum stays on the device and is divided by
    N once. `progress(done, total)` hears (0, N) before the first batch and then once a batch.
    """
    n = len(faces)
    if n == 0:
        raise FerError(f"the cell (true class {true_class}, predicted class {pred_class}) has no "
                       f"faces: there is no mean saliency to take")
    signed = true_class != pred_class
    device = device_of(model)
    working = working_model(model, hooks=False)
    faces = faces.to(device)
    batch = batch or default_batch(device)
    total = torch.zeros(faces.shape[-2:], device=device)
    if progress is not None:
        progress(0, n)
    with torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for start in range(0, n, batch):
            x = as_input(faces[start:start + batch]).requires_grad_(True)
            logits = working(x).float()
            check_classes(logits.shape[1], true_class, pred_class)
            score = logits[:, true_class]
            if signed:
                score = logits[:, pred_class] - score
            (grad,) = torch.autograd.grad(score.sum(), x)  # faces are independent in eval mode
            total += (grad if signed else grad.abs()).sum((0, 1))
            if progress is not None:
                progress(min(start + batch, n), n)
    return total / n


def check_classes(num_classes: int, true_class: int, pred_class: int) -> None:
    """Refuse a cell whose class numbers the model (of `num_classes` logits) does not have."""
    for name, k in (("true", true_class), ("predicted", pred_class)):
        if not 0 <= k < num_classes:
            raise FerError(f"{name} class {k}: expected a class number 0-{num_classes - 1}")


def cell_rows(preds: Predictions, true_class: int, pred_class: int) -> np.ndarray:
    """The dataset rows of the cell's faces, ascending."""
    return np.sort(preds.rows[cell_positions(preds, true_class, pred_class)])


def cached_cell_saliency(model: nn.Module, checkpoint_path: str | Path, dataset: FaceDataset,
                         preds: Predictions, true_class: int, pred_class: int,
                         batch: int | None = None,
                         progress: ProgressCallback | None = None) -> np.ndarray:
    """`cell_mean_saliency` of the cell of `preds` (the split predicted by the model of
    `checkpoint_path`), as float32 H x W (the faces' size) on the host: from the disk cache when
    the same checkpoint file (by content), dataset, split and cell were computed before, with the
    same faces (the entry keeps their rows); else computed and stored."""
    rows = cell_rows(preds, true_class, pred_class)

    def compute() -> dict[str, np.ndarray]:
        values = cell_mean_saliency(model, torch.from_numpy(dataset.images[rows]), true_class,
                                    pred_class, batch=batch, progress=progress)
        return {"map": values.cpu().numpy().astype(np.float32)}

    key = cell_saliency_key(checkpoint_path, dataset, preds.split, true_class, pred_class)
    return cache.load_or_compute(key, ("map",), compute, rows)["map"]


def cell_saliency_key(checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                      true_class: int, pred_class: int) -> str:
    """The cache key: checkpoint content hash, dataset fingerprint, split and cell."""
    return cache.entry_key("cell-saliency", CACHE_VERSION, checkpoint_path, dataset.fingerprint,
                           split, f"{true_class}-{pred_class}")
