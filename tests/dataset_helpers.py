"""Datasets that tests build from others."""

import dataclasses
import hashlib

import numpy as np

from fer_core.data.dataset import FaceDataset


def subset_of(dataset: FaceDataset, rows: np.ndarray) -> FaceDataset:
    """A dataset of the given rows; the fingerprint records the selection, so caches keyed by it
    tell the subset from the whole."""
    rows = np.asarray(rows, dtype=np.int64)
    digest = hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()
    return dataclasses.replace(
        dataset, images=dataset.images[rows], labels=dataset.labels[rows],
        split_codes=dataset.split_codes[rows], sources=dataset.sources[rows],
        fingerprint=f"{dataset.fingerprint}:{digest}",
        parts=None if dataset.parts is None else dataset.parts[rows])
