"""What the training loss is computed against (TrainConfig.labels): each face's label, or its
crowd votes in one of the FER+ paper's modes (Barsoum et al. 2016, and Microsoft's code):

- majority: the label (for FER+, the crowd's majority); plain cross-entropy;
- probability: a label drawn from the face's vote distribution, again every epoch;
- crossentropy: the vote distribution itself as a soft target;
- multi_target: every emotion with 3 tenths of the votes or more is right: the loss is
  -log max_k t_k p_k, t_k almost 1 on those emotions and 0.001 elsewhere.

The faces trained on are those the mode keeps (`ferplus.vote_targets`); their hard label, for
the training accuracy, is the target's top emotion (the majority, where there is one).
"""

import numpy as np
import torch
from torch import nn

from ..data.dataset import FaceDataset, stratified_val_split
from ..data.ferplus import FERPLUS, vote_targets
from ..errors import FerError
from .config import TrainConfig

MULTI_TARGET_FLOOR = 0.001  # Microsoft's epsilon: the weight of the emotions not in the target


def refuse_labels(config: TrainConfig, dataset: FaceDataset) -> None:
    """A vote mode needs votes, over the FER+ emotions in their own order."""
    if config.labels == "majority":
        return
    if dataset.votes is None:
        raise FerError(f"--labels {config.labels} learns from crowd votes, and {dataset.name} "
                       f"has none (FER+ folders do): use --labels majority")
    if dataset.task.classes != FERPLUS.classes:
        raise FerError(f"--labels {config.labels}: the votes count FER+'s emotions "
                       f"({', '.join(FERPLUS.classes)}), but the data's classes are "
                       f"{', '.join(dataset.task.classes)}")


def vote_distributions(config: TrainConfig,
                       dataset: FaceDataset) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Every face's target distribution (N x K) and which faces the mode keeps; (None, None)
    for majority, which trains on the labelled faces and their labels."""
    if config.labels == "majority":
        return None, None
    return vote_targets(dataset.votes, config.labels)


def split_rows(config: TrainConfig, dataset: FaceDataset,
               keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows trained on (those `keep` marks, default the labelled ones) and validated on:
    the val split's labelled faces, or with a holdout a stratified, seeded share of the training
    split's labelled faces, which are then not trained on."""
    train = dataset.indices("train")
    labelled = train[dataset.labels[train] >= 0]
    val = dataset.indices("val")
    val = val[dataset.labels[val] >= 0]
    held = np.array([], dtype=np.int64)
    if config.holdout > 0:
        held = labelled[stratified_val_split(dataset.labels[labelled], config.holdout,
                                             config.seed)]
        val = held
    usable = dataset.labels >= 0 if keep is None else keep
    return train[usable[train] & ~np.isin(train, held)], val


class MultiTargetLoss(nn.Module):
    """The FER+ paper's multi-target loss, -log max_k t_k p_k, from logits (in log space)."""

    weight = None  # no class weights (TrainConfig.validate refuses them)

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = -(target.log() + logits.log_softmax(1)).amax(1)
        return loss.sum() if self.reduction == "sum" else loss.mean()


class Targets:
    """The training faces' targets under `config.labels`: `labels` their hard labels (N,) on the
    device, `dist` their vote distributions (N x K) for the vote modes."""

    def __init__(self, config: TrainConfig, labels: torch.Tensor, dist: torch.Tensor | None):
        self.mode, self.seed = config.labels, config.seed
        self.labels, self.dist = labels, dist
        self.draw_from = dist.cpu() if self.mode == "probability" else None
        if self.mode == "multi_target":
            self.dist = (dist > 0) * (1 - MULTI_TARGET_FLOOR) + MULTI_TARGET_FLOOR

    @property
    def soft(self) -> bool:
        """Whether a face's target is a distribution rather than one label."""
        return self.mode in ("crossentropy", "multi_target")

    def for_epoch(self, epoch: int) -> torch.Tensor:
        """Every training face's target in `epoch` (probability draws anew each epoch, seeded
        by the run's seed and the epoch, so a resumed run draws the same)."""
        if self.mode == "probability":
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7)
            drawn = torch.multinomial(self.draw_from, 1, generator=g).squeeze(1)
            return drawn.to(self.labels.device)
        return self.dist if self.soft else self.labels

    def loss(self, weights: torch.Tensor | None, smoothing: float,
             reduction: str = "mean") -> nn.Module:
        if self.mode == "multi_target":
            return MultiTargetLoss(reduction)
        return nn.CrossEntropyLoss(weight=weights, reduction=reduction,
                                   label_smoothing=smoothing)


def hard_labels(dataset: FaceDataset, rows: np.ndarray, dist: np.ndarray | None) -> np.ndarray:
    """The label each training face's accuracy is counted against: the target's top emotion in
    a vote mode, else the dataset's label."""
    return dataset.labels[rows] if dist is None else dist[rows].argmax(1).astype(np.int64)
