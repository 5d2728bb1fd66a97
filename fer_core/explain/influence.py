"""Which training faces made a prediction: TracIn (Pruthi et al. 2020, "Estimating Training Data
Influence by Tracing Gradient Descent") on the last layer, over a run's snapshots.

The loss gradient of the final linear layer (weights W, bias b) for one face is the outer product
e a^T for W and e for b, where a is the face's penultimate activation (the layer's input) and
e = softmax - one-hot. The dot product of two faces' gradients is therefore (e . e')(a . a' + 1),
and TracIn sums it over the snapshots k, each weighed by its learning rate:

    score(z, z') = sum_k lr_k (e_k . e'_k) (a_k . a'_k + 1)

A training face z scores positive for a query face z' (a proponent) when a step on z lowered the
loss of z', negative (an opponent) when it raised it. The query's one-hot is the class the
explained checkpoint predicts: the score explains the prediction, not the label. A training face
with itself, self-influence sum_k lr_k |e_k|^2 (|a_k|^2 + 1) with its own label, is high for the
faces the model keeps failing to fit: often mislabelled ones.

Each snapshot's training features and probabilities come from the one prediction path's disk
cache (one pass over the split per snapshot, the first time); every score after that is a few
matrix-vector products. Nothing here takes a gradient, and only models loaded here are frozen
(never a caller's). The index holds no model: whoever scores passes a `CheckpointLoader` (the
dashboard its cached checkpoints, so a ResNet18's four snapshots are not kept twice).
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.dataset import FaceDataset
from ..errors import FerError
from ..evaluation.predict import (
    ProgressCallback,
    cached_predict_split,
    logits_and_features_on_device,
)
from ..models.checkpoint import Checkpoint, load_checkpoint, snapshot_lr
from .tensors import device_of, require_task

TRAIN = "train"


@dataclass(frozen=True)
class Gradients:
    """The last-layer gradient factors of some faces at one snapshot: learning rate, penultimate
    features a (N, D) and errors e = softmax - one-hot (N, K classes), float32."""

    lr: float
    features: np.ndarray
    errors: np.ndarray


@dataclass(frozen=True)
class Stage:
    """One snapshot ready to score: its epoch, file and the gradient factors of every face of
    the indexed split."""

    epoch: int
    path: Path
    train: Gradients


CheckpointLoader = Callable[[Path], Checkpoint]  # a snapshot file loaded, its model in eval mode


def checkpoint_loader(device: torch.device | str) -> CheckpointLoader:
    """Each snapshot loaded on `device` once, its model frozen (only faces get gradients)."""

    @functools.cache
    def load(path: Path) -> Checkpoint:
        ckpt = load_checkpoint(path, device)
        ckpt.model.requires_grad_(False)
        return ckpt

    return load


@dataclass(frozen=True)
class InfluenceIndex:
    """The training split of a dataset as seen by each snapshot of a run."""

    split: str
    rows: np.ndarray     # int64 (N,): dataset rows, position i = index i within the split
    labels: np.ndarray   # int64 (N,): -1 = unknown (such a face scores 0)
    stages: tuple[Stage, ...]

    def self_influence(self) -> np.ndarray:
        return self_influence([s.train for s in self.stages])

    def scores(self, faces: torch.Tensor, predicted: Sequence[int],
               load: CheckpointLoader) -> np.ndarray:
        """TracIn scores (Q, N) of every indexed face for each uint8 query face (Q x C x H x W
        of the model's task), each query's one-hot being its class in `predicted`; `load` gives
        each snapshot."""
        return tracin_scores([s.train for s in self.stages],
                             [query_gradients(load(s.path).model, faces, predicted, s.train.lr)
                              for s in self.stages])


def errors_of(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """softmax - one-hot (N, K) float32; a target of -1 (unknown) gives a zero row."""
    errors = np.asarray(probs, dtype=np.float32).copy()
    known = np.flatnonzero(targets >= 0)
    errors[known, targets[known]] -= 1
    errors[targets < 0] = 0
    return errors


def tracin_scores(train: Sequence[Gradients], query: Sequence[Gradients]) -> np.ndarray:
    """sum_k lr_k (E_q E_t^T) * (A_q A_t^T + 1): (Q, N), query faces by training faces; the
    snapshots of `train` and `query` in the same order, each query's lr its snapshot's."""
    total = None
    for t, q in zip(train, query, strict=True):
        term = t.lr * (q.errors @ t.errors.T) * (q.features @ t.features.T + 1)
        total = term if total is None else total + term
    return total


def self_influence(train: Sequence[Gradients]) -> np.ndarray:
    """sum_k lr_k |e_k|^2 (|a_k|^2 + 1) for each face (N,), float64."""
    total = 0.0
    for t in train:
        e2 = np.einsum("nc,nc->n", t.errors, t.errors, dtype=np.float64)
        a2 = np.einsum("nd,nd->n", t.features, t.features, dtype=np.float64)
        total = total + t.lr * e2 * (a2 + 1)
    return np.asarray(total, dtype=np.float64)


@torch.no_grad()
def query_gradients(model: nn.Module, faces: torch.Tensor, targets: Sequence[int],
                    lr: float) -> Gradients:
    """The gradient factors of uint8 query faces (Q x C x H x W of the model's task) at one
    snapshot model, one-hot at `targets`."""
    if faces.dtype != torch.uint8:
        raise FerError(f"query faces must be uint8 pixels, got {faces.dtype}")
    logits, features = logits_and_features_on_device(model, faces.to(device_of(model)))
    probs = logits.softmax(1).cpu().numpy()
    return Gradients(lr, features.cpu().numpy(),
                     errors_of(probs, np.asarray(targets, dtype=np.int64)))


def build_index(snapshots: Sequence, dataset: FaceDataset, device: torch.device,
                split: str = TRAIN, progress: ProgressCallback | None = None,
                load: CheckpointLoader | None = None) -> InfluenceIndex:
    """The index of `split` over `snapshots` (`fer_core.training.snapshots.Snapshot`s), each
    snapshot's features and probabilities read from the prediction cache or computed (one pass
    over the split) with the checkpoint `load` gives (by default loaded here), reporting (faces
    done, faces in all snapshots). The dataset must be of the snapshots' task (FerError)."""
    load = load or checkpoint_loader(device)
    rows = dataset.indices(split)
    labels = dataset.labels[rows].copy()
    n, stages = len(rows), []
    for k, snapshot in enumerate(snapshots):
        ckpt = load(Path(snapshot.path))
        require_task(ckpt.task, dataset)
        report = None if progress is None else _offset(progress, k * n, len(snapshots) * n)
        preds = cached_predict_split(ckpt.model, snapshot.path, dataset, split, device,
                                     features=True, progress=report)
        gradients = Gradients(snapshot_lr(ckpt.meta), np.ascontiguousarray(preds.features),
                              errors_of(preds.probs, labels))
        stages.append(Stage(snapshot.epoch, Path(snapshot.path), gradients))
        if progress is not None:
            progress((k + 1) * n, len(snapshots) * n)
    return InfluenceIndex(split, rows, labels, tuple(stages))


def _offset(progress: ProgressCallback, before: int, total: int) -> Callable[[int, int], None]:
    return lambda done, _n: progress(before + done, total)


def top_positions(scores: np.ndarray, top: int, sign: int = 1) -> np.ndarray:
    """The positions of the `top` highest scores (sign 1) or lowest (sign -1) of that sign only,
    strongest first (ties by position)."""
    signed = sign * np.asarray(scores, dtype=np.float64)
    candidates = np.flatnonzero(signed > 0)
    order = np.lexsort((candidates, -signed[candidates]))
    return candidates[order][:top]


def ranked_self_influence(index: InfluenceIndex) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the labelled faces, highest self-influence first; all self-influences)."""
    values = index.self_influence()
    known = np.flatnonzero(index.labels >= 0)
    return known[np.lexsort((known, -values[known]))], values

