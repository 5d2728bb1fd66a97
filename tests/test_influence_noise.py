"""Planted label noise: self-influence over a run's snapshots finds the flipped training labels.

Built-in faces the shipped model never saw (another seed), 3% of their training labels flipped
(seeded), and a fine-tuning run from the shipped builtin-cnn3 (`init`) with a snapshot every
epoch. Training from scratch to a decent model takes ten minutes on 2 cores (the shipped run
needed 10 epochs of 8,000 faces for 70% val); fine-tuning gets there in 3 short epochs: val
accuracy 0.66, 0.77, 0.83. Measured on this run: self-influence puts 16 of the 24 flipped faces
(67%) in its top 5% of the 800 training faces, the confident-mistakes ranking of the final
weights 12 (50%); chance is 5%. The test asks 40%, as the issue does.
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from fer_core.data.builtin import make_builtin_faces
from fer_core.evaluation.predict import predict_split
from fer_core.explain.influence import build_index, ranked_self_influence
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.snapshots import list_snapshots
from fer_core.training.trainer import train

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"


def with_flipped_labels(share: float, seed: int):
    faces = make_builtin_faces(n=1000, seed=5)
    rng = np.random.default_rng(seed)
    train_rows = faces.indices("train")
    flipped = rng.choice(train_rows, size=round(share * len(train_rows)), replace=False)
    labels = faces.labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 7, len(flipped))) % 7
    noisy = dataclasses.replace(faces, labels=labels, fingerprint=f"{faces.fingerprint}:flipped")
    return noisy, flipped


def found_in_top(order: np.ndarray, flipped_positions: np.ndarray, top: int) -> float:
    return float(np.isin(flipped_positions, order[:top]).mean())


def test_self_influence_finds_the_flipped_labels(tmp_path):
    noisy, flipped = with_flipped_labels(0.03, seed=11)
    run = RunFolder(tmp_path / "run")
    config = TrainConfig(init=str(SHIPPED), epochs=3, batch_size=64, lr=1e-4, device="cpu",
                         snapshots=3, probes=0, seed=1)
    assert train(config, run.path, noisy) == "finished"
    assert run.epochs()[-1]["val_acc"] >= 0.7
    index = build_index(list_snapshots(run.path), noisy, torch.device("cpu"))
    flipped_positions = np.flatnonzero(np.isin(index.rows, flipped))
    top = round(0.05 * len(index.rows))
    order, _ = ranked_self_influence(index)
    assert len(flipped_positions) == 24 and top == 40
    assert found_in_top(order, flipped_positions, top) >= 0.4

    preds = predict_split(load_checkpoint(run.last_path).model, noisy, "train", "cpu")
    mistakes = np.where(preds.predicted != preds.labels, preds.probs.max(1), 0)
    confident = np.argsort(-mistakes, kind="stable")
    assert found_in_top(confident, flipped_positions, top) > 0.05  # better than chance too


def test_init_refuses_another_architecture(tmp_path, tiny_faces):
    import pytest

    from fer_core.errors import FerError

    config = TrainConfig(init=str(SHIPPED), arch="resnet18", epochs=1, device="cpu")
    with pytest.raises(FerError, match="holds a cnn3, not a resnet18"):
        train(config, tmp_path / "run", tiny_faces)
