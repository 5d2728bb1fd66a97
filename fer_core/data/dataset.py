"""The in-memory dataset every part of the project shares.

A dataset is one uint8 array of faces (N, C, H, W) as its task says (FER2013: N x 1 x 48 x 48),
int64 labels (-1 = unknown, else an index into the task's classes), a split code per face (index
into SPLITS), and a source per face (CSV line number or image file name), so any face shown in
the dashboard can be traced back to where it came from.
"""

from dataclasses import dataclass, field

import numpy as np

from ..choices import SPLITS
from .task import FER2013, Task

PART_BITS = {"brows": 1, "eyes": 2, "mouth": 4}


@dataclass(frozen=True, eq=False)
class FaceDataset:
    """Faces, labels, split codes and sources, plus where they came from.

    `parts` is set for the built-in faces only: a uint8 (N, 48, 48) bit mask of the pixels that
    carry the expression (PART_BITS: brows, eyes, mouth). `task` gives the class names, image
    size and channels; FER2013's unless the reader found others. `notes` are what the reader did
    that a user should know (files skipped, images cropped or resized). `votes` is set for FER+
    only: each face's crowd votes, uint8 (N, 10) in `ferplus.VOTE_NAMES` order.
    `fer2013_labels` is set where the data has FER2013's own label beside the votes (Kaggle's
    CSV with Microsoft's vote file): int64 (N,) indices into FER2013's classes, -1 unknown.
    """

    images: np.ndarray
    labels: np.ndarray
    split_codes: np.ndarray
    sources: np.ndarray
    name: str
    layout: str
    fingerprint: str
    parts: np.ndarray | None = field(default=None)
    task: Task = FER2013
    notes: tuple[str, ...] = ()
    votes: np.ndarray | None = field(default=None)
    fer2013_labels: np.ndarray | None = field(default=None)

    def __post_init__(self):
        n = len(self.images)
        assert self.images.shape == (n, *self.task.shape) and self.images.dtype == np.uint8
        assert n == 0 or int(self.labels.max(initial=-1)) < self.task.num_classes
        assert self.labels.shape == (n,) and self.labels.dtype == np.int64
        assert self.split_codes.shape == (n,) and self.split_codes.dtype == np.uint8
        assert self.votes is None or (self.votes.ndim == 2 and len(self.votes) == n)
        assert self.fer2013_labels is None or self.fer2013_labels.shape == (n,)
        assert len(self.sources) == n

    def __len__(self) -> int:
        return len(self.images)

    def read_only(self) -> "FaceDataset":
        """This dataset, its arrays made read-only (for a copy shared by many readers)."""
        for array in (self.images, self.labels, self.split_codes, self.sources, self.parts,
                      self.votes, self.fer2013_labels):
            if array is not None:
                array.setflags(write=False)
        return self

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split ('train', 'val' or 'test')."""
        return np.flatnonzero(self.split_codes == SPLITS.index(split))

    def present_splits(self) -> list[str]:
        """The splits that hold at least one face, in SPLITS order."""
        codes = set(np.unique(self.split_codes).tolist())
        return [s for i, s in enumerate(SPLITS) if i in codes]

    def default_split(self, splits: list[str] | None = None) -> str:
        """The split a page opens on: val when it is among `splits` (default: the present
        splits), else the first of them."""
        splits = self.present_splits() if splits is None else splits
        return "val" if "val" in splits else splits[0]

    def labelled_splits(self) -> list[str]:
        """The present splits with at least one labelled face."""
        return [s for s in self.present_splits() if (self.labels[self.indices(s)] >= 0).any()]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split, per class face counts; unlabelled faces are counted under 'unlabelled'."""
        table = {}
        for split in self.present_splits():
            labels = self.labels[self.indices(split)]
            row = {name: int((labels == k).sum()) for k, name in enumerate(self.task.classes)}
            unlabelled = int((labels < 0).sum())
            if unlabelled:
                row["unlabelled"] = unlabelled
            table[split] = row
        return table


def stratified_val_split(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Boolean mask choosing a stratified, seeded `fraction` of each class for validation."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        take = int(round(len(rows) * fraction))
        if len(rows) > 1:
            take = max(1, min(take, len(rows) - 1))
        else:
            take = 0
        chosen[rng.choice(rows, size=take, replace=False)] = True
    return chosen

