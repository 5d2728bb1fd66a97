"""The embeddings the Embeddings page shows, kept in memory per process over the disk cache.

Like `state.predictions`, not an st.cache_* function (those replay the progress bar a call
draws). A projection of a large split can take minutes, so the lock that guards the memory is
never held while computing: each embedding has its own lock, so two tabs asking for the same one
compute it once, and a tab asking for another is not kept waiting.
"""

import threading
from collections import OrderedDict

from fer_core.checkpoint import Checkpoint
from fer_core.embeddings import Embedding, embed_split, projection_cached
from fer_core.predict import ProgressCallback

from . import state

KEPT = 3  # a FER2013 train embedding holds 28,709 x 512 float32 features: 59 MB

_MEMORY: "OrderedDict[tuple, Embedding]" = OrderedDict()
_COMPUTING: dict[tuple, threading.Lock] = {}
_LOCK = threading.Lock()


def _key(ckpt: Checkpoint, dataset, split: str, method: str) -> tuple:
    return (str(ckpt.path), state.file_stamp(ckpt.path), dataset.fingerprint, split, method)


def ready(ckpt: Checkpoint, dataset, split: str, method: str) -> bool:
    """Whether `embedding` answers at once: from memory, or from the disk cache."""
    with _LOCK:
        if _key(ckpt, dataset, split, method) in _MEMORY:
            return True
    return projection_cached(ckpt.path, dataset, split, method)


def in_memory(ckpt: Checkpoint, dataset, split: str, method: str) -> bool:
    with _LOCK:
        return _key(ckpt, dataset, split, method) in _MEMORY


def embedding(ckpt: Checkpoint, dataset, split: str, method: str,
              progress: ProgressCallback | None = None) -> Embedding:
    """The split's embedding by `method`: from memory, else the disk cache, else computed
    (features reporting to `progress`)."""
    key = _key(ckpt, dataset, split, method)
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
        computing = _COMPUTING.setdefault(key, threading.Lock())
    with computing:
        with _LOCK:
            if key in _MEMORY:
                return _MEMORY[key]
        result = embed_split(ckpt.model, ckpt.path, dataset, split, method, state.device(),
                             progress=progress)
        with _LOCK:
            _MEMORY[key] = result
            while len(_MEMORY) > KEPT:
                _MEMORY.popitem(last=False)
            _COMPUTING.pop(key, None)
    return result
