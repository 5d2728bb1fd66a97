"""The embeddings the Embeddings page shows, kept in memory per process over the disk cache
(`memo.Memo`: each computed once, however many tabs ask)."""

from dashboard.common import state
from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from fer_core.evaluation.predict import ProgressCallback
from fer_core.explain.embeddings import Embedding, embed_split, projection_cached
from fer_core.models.checkpoint import Checkpoint

# FER2013 train: 59 MB of features
EMBEDDINGS: Memo[Embedding] = Memo("embeddings", budget=192 * MB, heavy=True)


def _key(ckpt: Checkpoint, dataset, split: str, method: str) -> tuple:
    return memo_key(ckpt, dataset, split, method)


def ready(ckpt: Checkpoint, dataset, split: str, method: str) -> bool:
    """Whether `embedding` answers at once: from memory, or from the disk cache."""
    return in_memory(ckpt, dataset, split, method) or projection_cached(ckpt.path, dataset,
                                                                        split, method)


def in_memory(ckpt: Checkpoint, dataset, split: str, method: str) -> bool:
    return EMBEDDINGS.has(_key(ckpt, dataset, split, method))


def embedding(ckpt: Checkpoint, dataset, split: str, method: str,
              progress: ProgressCallback | None = None) -> Embedding:
    """The split's embedding by `method`: from memory, else the disk cache, else computed
    (features reporting to `progress` while this call waits)."""
    on = state.device()
    return EMBEDDINGS.get(_key(ckpt, dataset, split, method), lambda report: embed_split(
        ckpt.model, ckpt.path, dataset, split, method, on, progress=report), progress)
