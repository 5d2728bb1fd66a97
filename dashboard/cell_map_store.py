"""The mean saliency maps of confusion cells, kept in memory per process over the disk cache.

Like `state.predictions` and `embedding_store`, not an st.cache_* function (those replay the
progress bar a call draws). Each map has its own lock, so two tabs asking for the same cell
compute it once and a tab asking for another cell is not kept waiting.
"""

import threading
from collections import OrderedDict

import numpy as np

from fer_core.cell_saliency import cached_cell_saliency
from fer_core.checkpoint import Checkpoint
from fer_core.predict import Predictions, ProgressCallback

from . import state

KEPT = 256  # a map is 48 x 48 float32: 9 KB

_MEMORY: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_COMPUTING: dict[tuple, threading.Lock] = {}
_LOCK = threading.Lock()


def _key(ckpt: Checkpoint, dataset, split: str, cell: tuple[int, int]) -> tuple:
    return (str(ckpt.path), state.file_stamp(ckpt.path), dataset.fingerprint, split, cell)


def cell_map(ckpt: Checkpoint, dataset, preds: Predictions, cell: tuple[int, int],
             progress: ProgressCallback | None = None) -> np.ndarray:
    """The cell's mean saliency (float32 48 x 48) on the split of `preds`: from memory, else the
    disk cache, else computed on the checkpoint's shared model, reporting to `progress`."""
    key = _key(ckpt, dataset, preds.split, cell)
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
        computing = _COMPUTING.setdefault(key, threading.Lock())
    with computing:
        with _LOCK:
            if key in _MEMORY:
                return _MEMORY[key]
        result = cached_cell_saliency(ckpt.model, ckpt.path, dataset, preds, *cell,
                                      progress=progress)
        result.setflags(write=False)
        with _LOCK:
            _MEMORY[key] = result
            while len(_MEMORY) > KEPT:
                _MEMORY.popitem(last=False)
            _COMPUTING.pop(key, None)
    return result
