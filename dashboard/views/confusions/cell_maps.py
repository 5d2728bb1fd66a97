"""The mean saliency maps of confusion cells, kept in memory per process over the disk cache
(`memo.Memo`: each computed once, however many tabs ask)."""

import numpy as np

from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from fer_core.evaluation.predict import Predictions, ProgressCallback
from fer_core.explain.cell_saliency import cached_cell_saliency
from fer_core.models.checkpoint import Checkpoint

MAPS: Memo[np.ndarray] = Memo("cell maps", budget=8 * MB, heavy=True)  # a map: 9 KB


def cell_map(ckpt: Checkpoint, dataset, preds: Predictions, cell: tuple[int, int],
             progress: ProgressCallback | None = None) -> np.ndarray:
    """The cell's mean saliency (float32 H x W, read-only) on the split of `preds`: from
    memory, else the disk cache, else computed on the checkpoint's shared model, reporting to
    `progress` while this call waits."""
    key = memo_key(ckpt, dataset, preds.split, cell)

    def compute(report) -> np.ndarray:
        result = cached_cell_saliency(ckpt.model, ckpt.path, dataset, preds, *cell,
                                      progress=report)
        result.setflags(write=False)
        return result

    return MAPS.get(key, compute, progress)
