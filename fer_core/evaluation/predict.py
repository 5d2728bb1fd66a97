"""The one prediction path: model x faces -> logits, and model x dataset split -> rows, labels,
probabilities (and, on request, penultimate features), with a disk cache.

Training validation, `python -m fer_core evaluate` and every dashboard page call these, so a
checkpoint scores the same accuracy everywhere. Prediction always runs in fp32, whatever precision
trained the model: it is cheap next to training and no precision setting can change an accuracy.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import cache
from ..data.dataset import FaceDataset
from ..errors import FerError
from ..models.architectures import final_linear_name

BATCH_SIZE = 512
TTA_SHIFT = 2  # pixels, for test-time augmentation
CACHE_VERSION = 1

ProgressCallback = Callable[[int, int], None]  # (faces done, faces in all)


@dataclass(frozen=True)
class Predictions:
    """Every face of one split: its dataset row, label (-1 = unknown) and one probability per
    class of the model, and when asked for, its penultimate features (the input of the final
    linear layer).

    Position i here is the face's 0-based index within the split (the `idx` of a deep link).
    """

    split: str
    rows: np.ndarray     # int64 (N,)
    labels: np.ndarray   # int64 (N,)
    probs: np.ndarray    # float32 (N, classes)
    features: np.ndarray | None = None  # float32 (N, D)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def labelled(self) -> np.ndarray:
        """Positions (within the split) of the faces that have a label."""
        return np.flatnonzero(self.labels >= 0)

    def accuracy(self) -> float | None:
        known = self.labelled
        if len(known) == 0:
            return None
        return float((self.predicted[known] == self.labels[known]).mean())


def tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """Test-time views of a float batch N x C x H x W: the face and its mirror, each as is and
    shifted by TTA_SHIFT pixels left, right, up and down (border pixels repeated): 10 views."""
    s = TTA_SHIFT
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    h, w = x.shape[-2:]
    crops = [padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
             for dy, dx in ((0, 0), (0, -s), (0, s), (-s, 0), (s, 0))]
    return crops + [c.flip(-1) for c in crops]


@torch.no_grad()
def logits_on_device(model: nn.Module, faces: torch.Tensor, batch_size: int = BATCH_SIZE,
                     tta: bool = False, progress: ProgressCallback | None = None) -> torch.Tensor:
    """fp32 logits (N, classes) for uint8 faces (N, C, H, W) of the model's task, already on the
    model's device; with `tta`, the log of the probabilities averaged over `tta_views`.

    The model is put in eval mode; the caller restores train mode if it needs it.
    """
    model.eval()
    if faces.dim() != 4:
        raise FerError(f"faces must be N x C x H x W, got shape {tuple(faces.shape)}")
    out = None
    with torch.autocast(faces.device.type, enabled=False):
        for start in range(0, len(faces), batch_size):
            x = faces[start:start + batch_size].float().div_(255)
            if tta:
                probs = torch.stack([model(v).float().softmax(1) for v in tta_views(x)])
                logits = probs.mean(0).log()
            else:
                logits = model(x).float()
            if out is None:  # the class count from the output: an imported model may have no
                out = torch.empty(len(faces), logits.shape[1], device=faces.device)  # Linear
            out[start:start + len(x)] = logits
            if progress is not None:
                progress(start + len(x), len(faces))
    if out is None:  # no faces: as many columns as the last Linear has outputs
        linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
        out = torch.empty(0, linear[-1].out_features if linear else 0, device=faces.device)
    return out


def logits_and_features_on_device(model: nn.Module, faces: torch.Tensor,
                                  batch_size: int = BATCH_SIZE,
                                  progress: ProgressCallback | None = None,
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """`logits_on_device` (no TTA), and the input of the model's final linear layer for each face:
    the penultimate features (N, D) the logits are made from, taken in the same forward pass.

    A forward pre-hook on the final linear layer collects them and is removed before returning.
    It keeps only this thread's inputs, so a forward of another tab on the same cached model
    cannot slip its batches in.
    """
    caller = threading.get_ident()
    captured = []

    def keep_input(_module, inputs):
        if threading.get_ident() == caller:
            captured.append(inputs[0].detach().float())

    final = model.get_submodule(final_linear_name(model))
    handle = final.register_forward_pre_hook(keep_input)
    try:
        logits = logits_on_device(model, faces, batch_size, progress=progress)
    finally:
        handle.remove()
    return logits, torch.cat(captured) if captured else faces.new_empty((0, final.in_features),
                                                                        dtype=torch.float32)


def predict_split(model: nn.Module, dataset: FaceDataset, split: str, device: torch.device,
                  tta: bool = False, progress: ProgressCallback | None = None,
                  features: bool = False) -> Predictions:
    """Probabilities for every face of `split`, batched on `device`, one host copy at the end;
    with `features`, the penultimate features too (of the faces as they are: not with TTA)."""
    if features and tta:
        raise FerError("penultimate features come from the faces as they are, not with TTA")
    rows = dataset.indices(split)
    faces = torch.from_numpy(dataset.images[rows]).to(device)
    kept = None
    if features:
        logits, kept = logits_and_features_on_device(model, faces, progress=progress)
        kept = kept.cpu().numpy()
    else:
        logits = logits_on_device(model, faces, tta=tta, progress=progress)
    probs = logits.softmax(1).cpu().numpy().astype(np.float32)
    return Predictions(split=split, rows=rows, labels=dataset.labels[rows].copy(), probs=probs,
                       features=kept)


def cached_predict_split(model: nn.Module, checkpoint_path: str | Path, dataset: FaceDataset,
                         split: str, device: torch.device, tta: bool = False,
                         progress: ProgressCallback | None = None,
                         features: bool = False) -> Predictions:
    """`predict_split`, served from the disk cache when the same checkpoint file (by content),
    dataset (by fingerprint), split and TTA setting were predicted before.

    Without TTA the features are always taken, in the forward pass that predicts, and stored in
    the same entry as the probabilities, so a page that wants them later (Embeddings after Model,
    influence after Confusions) reads them instead of predicting the split again. They are read
    from the entry, and returned, only when asked for.
    """
    rows = dataset.indices(split)
    wanted = ("probs", "features") if features else ("probs",)

    def compute() -> dict[str, np.ndarray]:
        made = predict_split(model, dataset, split, device, tta=tta, progress=progress,
                             features=not tta)
        return {"probs": made.probs} if tta else {"probs": made.probs, "features": made.features}

    arrays = cache.load_or_compute(prediction_key(checkpoint_path, dataset, split, tta), wanted,
                                   compute, rows)
    return Predictions(split=split, rows=rows, labels=dataset.labels[rows].copy(),
                       probs=arrays["probs"], features=arrays["features"] if features else None)


def prediction_key(checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                   tta: bool) -> str:
    """The cache key: checkpoint content hash, dataset fingerprint, split and TTA."""
    return cache.entry_key("predictions", CACHE_VERSION, checkpoint_path, dataset.fingerprint,
                           split, "tta" if tta else "plain")
