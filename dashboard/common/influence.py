"""The TracIn index of a checkpoint's run over the training faces (each snapshot's penultimate
features and errors: `fer_core.explain.influence`), kept in memory per process over the
prediction cache and computed once (`memo.Memo`), with a progress bar the first time. The
Saliency page's proponents and opponents and the Confusions page's self-influence ranking read
it."""

from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.common import state
from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from dashboard.common.progress import on_bar
from fer_core.explain.influence import TRAIN, InfluenceIndex, build_index, ranked_self_influence
from fer_core.models.checkpoint import Checkpoint
from fer_core.training.snapshots import checkpoint_snapshots

# FER2013's training split with cnn3's or ResNet18's 512 features: 60 MB a snapshot, so four
# snapshots stay in memory
INDEXES: Memo[InfluenceIndex] = Memo("influence", budget=256 * MB, heavy=True)
RANKINGS: Memo[tuple[np.ndarray, np.ndarray]] = Memo("self-influence", budget=8 * MB)


def _key(ckpt: Checkpoint, dataset) -> tuple:
    snapshots = checkpoint_snapshots(ckpt.path, int(ckpt.meta.get("epoch", 0)))
    return memo_key(ckpt, dataset, tuple((s.epoch, Path(s.path)) for s in snapshots))


def influence_index(ckpt: Checkpoint, dataset) -> InfluenceIndex:
    """The index of the training split over the run's snapshots (the checkpoint itself when the
    run has none), with a progress bar while it is computed (by this tab or another)."""
    key = _key(ckpt, dataset)
    snapshots = key[-1]
    on = state.device()

    def compute(report) -> InfluenceIndex:
        found = checkpoint_snapshots(ckpt.path, int(ckpt.meta.get("epoch", 0)))
        return build_index(found, dataset, on, progress=report, load=state.checkpoint)

    if INDEXES.has(key):
        return INDEXES.get(key, compute)
    n = len(dataset.indices(TRAIN))
    bar = st.progress(0.0, text=f"Training faces as each of {len(snapshots)} snapshot(s) sees "
                                f"them, on {on.type}...")
    index = INDEXES.get(key, compute, progress=on_bar(
        bar, lambda done, total: f"{n:,} training faces x {len(snapshots)} snapshot(s): "
                                 f"{done:,} of {total:,}"))
    bar.empty()
    return index


def self_influence_ranking(ckpt: Checkpoint, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(positions within the train split, highest self-influence first; every face's value)."""
    index = influence_index(ckpt, dataset)
    return RANKINGS.get(_key(ckpt, dataset), lambda report: ranked_self_influence(index))


def snapshot_note(index: InfluenceIndex) -> str:
    """Which snapshots the scores sum over, in words."""
    epochs = ", ".join(str(s.epoch) for s in index.stages)
    if len(index.stages) == 1:
        return (f"one checkpoint (epoch {epochs}): the run kept no snapshots, so the scores use "
                f"its final weights only (train with --snapshots N for TracIn over training)")
    return f"{len(index.stages)} snapshots (epochs {epochs})"
