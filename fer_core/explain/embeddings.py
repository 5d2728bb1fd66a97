"""Embeddings: every face of a split placed in 2-D by what the model's last hidden layer makes of
it (PCA, t-SNE or UMAP of its penultimate features), and a face's nearest neighbours in that
feature space.

Features come from the one prediction path (`cached_predict_split(..., features=True)`), so they
are computed in the pass that makes the probabilities and cached with them. Projections are
seeded and cached on disk per checkpoint file, dataset fingerprint, split and method.

t-SNE follows van der Maaten's advice and scikit-learn's: the features are first reduced to 50
principal components (which also makes it several times faster), then embedded with perplexity
30, PCA initialization and the automatic learning rate (n / 12). On this project's CPU it took
26.5 s for FER2013's 3,589 PublicTest faces (benchmarks/bench_embeddings.py), and takes minutes
for its 28,709 training faces.
"""

import csv
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cache
from ..data.dataset import FaceDataset
from ..errors import FerError
from ..evaluation.predict import CACHE_VERSION as PREDICTION_VERSION
from ..evaluation.predict import Predictions, ProgressCallback, cached_predict_split
from .settings import PROJECTIONS

SEED = 0
PCA_DIMS = 50          # components kept before t-SNE and UMAP
PERPLEXITY = 30.0      # t-SNE
UMAP_NEIGHBOURS = 15
UMAP_MIN_DIST = 0.1
MIN_FACES = 5
CACHE_VERSION = 1


@dataclass(frozen=True)
class Embedding:
    """A split's predictions with their penultimate features, and each face's place in 2-D
    (row i of `xy` is the face at position i of the split)."""

    predictions: Predictions
    xy: np.ndarray  # float32 (N, 2)
    method: str

    @property
    def split(self) -> str:
        return self.predictions.split


def available_methods() -> list[str]:
    """The methods this machine can run: UMAP only where umap-learn is installed."""
    return [m for m in PROJECTIONS if m != "umap" or importlib.util.find_spec("umap") is not None]


def project(features: np.ndarray, method: str, seed: int = SEED) -> np.ndarray:
    """(N, 2) float32 coordinates of the rows of `features` (N, D) by `method`, seeded: the same
    features, method and seed give the same picture."""
    if method not in PROJECTIONS:
        raise FerError(f"unknown projection {method!r}: choose one of {', '.join(PROJECTIONS)}")
    features = np.asarray(features, dtype=np.float32)
    if len(features) < MIN_FACES:
        raise FerError(f"a projection needs at least {MIN_FACES} faces, got {len(features)}")
    project_with = {"pca": pca_2d, "tsne": tsne_2d, "umap": umap_2d}[method]
    return np.ascontiguousarray(project_with(features, seed), dtype=np.float32)


def principal_components(features: np.ndarray, dims: int, seed: int = SEED) -> np.ndarray:
    """The first `dims` principal components of the rows (fewer when the data has fewer)."""
    from sklearn.decomposition import PCA

    dims = min(dims, *features.shape)
    return PCA(n_components=dims, random_state=seed).fit_transform(features)


def pca_2d(features: np.ndarray, seed: int = SEED) -> np.ndarray:
    """The first two principal components: linear, instant, keeps global distances."""
    return principal_components(features, 2, seed)


def tsne_2d(features: np.ndarray, seed: int = SEED) -> np.ndarray:
    """t-SNE (Barnes-Hut) of the first PCA_DIMS principal components: local neighbourhoods
    kept, cluster sizes and distances between clusters not meaningful."""
    from sklearn.manifold import TSNE

    reduced = principal_components(features, PCA_DIMS, seed)
    perplexity = min(PERPLEXITY, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(reduced)


def umap_2d(features: np.ndarray, seed: int = SEED) -> np.ndarray:
    """UMAP (McInnes et al. 2018) of the first PCA_DIMS principal components: local structure
    like t-SNE, more of the global layout kept. Seeded, it runs on one thread (umap-learn's rule
    for reproducible results), after numba compiles it on the first call in a process."""
    try:
        from umap import UMAP
    except ImportError as e:
        raise FerError("UMAP needs the umap-learn package: pip install umap-learn") from e

    reduced = principal_components(features, PCA_DIMS, seed)
    neighbours = min(UMAP_NEIGHBOURS, len(features) - 1)
    return UMAP(n_components=2, n_neighbors=neighbours, min_dist=UMAP_MIN_DIST,
                random_state=seed, n_jobs=1).fit_transform(reduced)


def nearest_neighbours(features: np.ndarray, position: int, k: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """The `k` faces whose features point most nearly the way face `position`'s do (cosine
    similarity), most similar first (ties: lower position first), the face itself left out;
    returns (positions, similarities)."""
    features = np.asarray(features, dtype=np.float32)
    if not 0 <= position < len(features):
        raise FerError(f"face {position} is not in a split of {len(features)} faces")
    norms = np.linalg.norm(features, axis=1)
    unit = features / np.maximum(norms, 1e-12)[:, None]
    similarity = unit @ unit[position]
    similarity[position] = -np.inf
    k = max(0, min(k, len(features) - 1))
    candidates = np.argpartition(-similarity, k - 1)[:k] if k else np.empty(0, dtype=np.int64)
    order = np.lexsort((candidates, -similarity[candidates]))
    chosen = candidates[order].astype(np.int64)
    return chosen, similarity[chosen]


def embed_split(model: nn.Module, checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                method: str, device: torch.device,
                progress: ProgressCallback | None = None) -> Embedding:
    """The embedding of `split` by `method`: features from the prediction path (cached with the
    predictions, reporting to `progress` when computed) and the projection from its own cache."""
    if method not in PROJECTIONS:
        raise FerError(f"unknown projection {method!r}: choose one of {', '.join(PROJECTIONS)}")
    preds = cached_predict_split(model, checkpoint_path, dataset, split, device,
                                 progress=progress, features=True)
    key = projection_key(checkpoint_path, dataset, split, method)
    arrays = cache.load_or_compute(key, ("xy",), lambda: {"xy": project(preds.features, method)},
                                   preds.rows)
    return Embedding(preds, arrays["xy"], method)


def projection_cached(checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                      method: str) -> bool:
    """Whether `embed_split` would read this projection from the disk cache."""
    key = projection_key(checkpoint_path, dataset, split, method)
    return cache.matching_arrays(key, (), dataset.indices(split)) is not None


def projection_key(checkpoint_path: str | Path, dataset: FaceDataset, split: str,
                   method: str) -> str:
    """The cache key: checkpoint content hash, dataset fingerprint, split, the method and
    everything that shapes its picture, and the version of the predictions' entries (whose
    features it projects)."""
    settings = {"pca": "", "tsne": f"{PCA_DIMS}-{PERPLEXITY}",
                "umap": f"{PCA_DIMS}-{UMAP_NEIGHBOURS}-{UMAP_MIN_DIST}"}[method]
    return cache.entry_key("embedding", CACHE_VERSION, checkpoint_path, dataset.fingerprint,
                           split, method, settings, SEED, f"predictions-v{PREDICTION_VERSION}")


def embedding_csv(embedding: Embedding, classes: tuple[str, ...]) -> str:
    """One row per face: split, index (position within the split), x, y, label and prediction
    (names of `classes`, the model's task's; label empty when unknown), confidence (the top
    probability)."""
    preds = embedding.predictions
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(["split", "index", "x", "y", "label", "pred", "confidence"])
    confidence = preds.probs.max(1)
    for i, ((x, y), label, pred) in enumerate(zip(embedding.xy.tolist(), preds.labels.tolist(),
                                                  preds.predicted.tolist())):
        out.writerow([preds.split, i, f"{x:.6g}", f"{y:.6g}", classes[label] if label >= 0 else "",
                      classes[pred], f"{confidence[i]:.4f}"])
    return text.getvalue()
