"""Explanations for a whole split, written to disk: every face's prediction, class probabilities,
penultimate features and saliency maps (one per method, each explaining the predicted class), as
the shards and manifest of `export_files`.

`export_split` runs the same under torchrun as in one process: the split is cut into chunks of a
fixed size, and rank r of W explains chunks r, r + W, r + 2W, ... So two ranks write the files
one process writes, and an export stopped at any moment (Ctrl-C, kill -9, a lost machine) resumes
where it stopped: a chunk is written whole (atomically) or not at all, and the chunks already
there are checked (readable, this export's key, the right faces) and kept.

Rank 0 alone decides about the folder: it takes the folder's lock (a second export into the same
folder is refused while this one runs), refuses a folder holding another export (another key) or
other files, and writes the manifest before any chunk; once every rank has written its chunks,
it marks the manifest complete with each chunk's size and content hash.

Probabilities and features come from the one prediction path (`cached_predict_split`), shared
with the pages' caches. The maps of the random methods (SmoothGrad, GradientSHAP) are drawn from
`seed` per call of `explain`, so they depend on the chunk size and `batch` as well; the other
methods' maps depend on neither (beyond float rounding).
"""

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cache, distributed
from ..atomic import atomic_file, write_json
from ..data.dataset import FaceDataset
from ..data.task import Task
from ..distributed import SOLO, World
from ..errors import ExportError, FerError
from ..evaluation.predict import Predictions, cached_predict_split
from ..locks import FolderLock
from ..models.checkpoint import Checkpoint, resolve_checkpoint_path
from .attribution import (
    METHODS,
    Target,
    cam_layers,
    default_cam_name,
    explain,
    method_params,
)
from .export_files import (
    EXPORTS,
    FORMAT,
    LOCK,
    MANIFEST,
    MAP_DTYPE,
    VERSION,
    chunk_bytes,
    chunk_count,
    chunk_name,
    chunk_span,
    default_folder,
    map_name,
    read_chunk,
    read_manifest,
    written_chunks,
)
from .tensors import require_task

CHUNK_SIZE = 512  # faces per shard, whatever the number of ranks

ChunkCallback = Callable[[int, int, bool], None]  # (chunk, chunks in all, kept from before)


@dataclass(frozen=True)
class ExportRequest:
    """What to export: a checkpoint's model (its file, for the key, and its task) on one split
    of a dataset of that task, with methods and their parameters as `resolve_methods` gives
    them."""

    model: nn.Module
    checkpoint_path: Path
    task: Task
    dataset: FaceDataset
    split: str
    methods: dict[str, dict]
    seed: int = 0

    @property
    def key(self) -> str:
        """`cache.entry_key` of the export: format version, checkpoint content, dataset
        fingerprint, split, methods with their parameters, seed and target."""
        methods = json.dumps(self.methods, sort_keys=True)
        return cache.entry_key("export", VERSION, self.checkpoint_path, self.dataset.fingerprint,
                               self.split, methods, f"seed={self.seed}", "target=predicted")


@dataclass(frozen=True)
class ExportDone:
    """How an export went, over all ranks."""

    folder: Path
    faces: int
    chunks: int
    kept: int  # chunks found already written (a resumed export), checked and kept


def resolve_methods(checkpoint: Checkpoint, wanted: dict[str, dict]) -> dict[str, dict]:
    """Each wanted method's parameters as they will be used: the defaults overridden by the
    given ones, checked, and Grad-CAM's default layer named (the model's last conv stage).

    Layers are looked up by the checkpoint's architecture, never by running its model: the
    dashboard's model is shared by every session, and hooks on it would reach them all."""
    task = checkpoint.task
    found = cam_layers(checkpoint.arch, task, **checkpoint.arch_options)
    layers = [layer.name for layer in found]
    resolved = {}
    for method, given in wanted.items():
        if method not in METHODS:
            raise FerError(f"unknown method {method!r}: choose among {', '.join(METHODS)}")
        params = method_params(METHODS[method], given, task.size)
        if "layer" in params:
            params["layer"] = params["layer"] or default_cam_name(checkpoint.arch, found)
            if params["layer"] not in layers:
                raise FerError(f"layer {params['layer']!r}: not a conv, batch-norm or ReLU "
                               f"layer of this model")
        resolved[method] = params
    if not resolved:
        raise FerError("no method to export: name at least one")
    return resolved


def export_split(request: ExportRequest, folder: str | os.PathLike, device: torch.device,
                 world: World = SOLO, *, chunk_size: int | None = None,
                 batch: int | None = None, on_chunk: ChunkCallback | None = None) -> ExportDone:
    """Write (or finish) the export of `request` into `folder`, this rank's chunks on `device`.

    `chunk_size` (faces per shard; default CHUNK_SIZE, or the size a resumed export was begun
    with) and `batch` (images per forward pass, as in `explain`) bound memory; only the random
    methods' draws depend on them. Every rank raises the same ExportError when the folder is
    refused.
    """
    folder = Path(folder)
    require_task(request.task, request.dataset)
    distributed.agree(request.key, "the export (checkpoint, data, split, methods)")
    lock = FolderLock(folder / LOCK)
    try:
        problem, manifest, predictions = None, None, None
        if world.main:
            try:
                manifest, predictions = begin(request, folder, lock, chunk_size, device)
            except FerError as exc:
                problem = str(exc)
        problem, manifest = distributed.from_main((problem, manifest))
        if problem:
            raise ExportError(problem)
        if predictions is None:  # the other ranks: from the cache rank 0 has just filled
            predictions = predicted(request, device)
        done = {k: write_or_keep(request, predictions, manifest, folder, k, device, batch, on_chunk)
                for k in range(world.rank, manifest["chunks"], world.size)}
        records = {k: record for part in distributed.gathered(done) for k, record in part.items()}
        if world.main:
            write_json(folder / MANIFEST, {**manifest, "complete": True,
                                           "shards": [records[k]["shard"]
                                                      for k in range(manifest["chunks"])]})
    finally:
        lock.release()
    return ExportDone(folder=folder, faces=manifest["faces"], chunks=manifest["chunks"],
                      kept=sum(record["kept"] for record in records.values()))


def begin(request: ExportRequest, folder: Path, lock: FolderLock, chunk_size: int | None,
          device: torch.device) -> tuple[dict, Predictions]:
    """Rank 0's part before any chunk: the folder made and locked, checked, and its manifest
    (not complete yet) written; the manifest and the split's predictions."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        others = [] if (folder / MANIFEST).exists() else foreign_files(folder)
        locked = not others and lock.acquire()
    except OSError as exc:
        raise ExportError(f"cannot write in {folder} ({exc.strerror or exc}): choose another "
                          f"folder with --out") from None
    if others:
        raise ExportError(f"{folder} holds files that are not an export ({others[0]}, ...): "
                          f"choose an empty or new folder")
    if not locked:
        holder = lock.holder()
        raise ExportError(f"{folder} is in use by another export"
                          f"{f' (pid {holder})' if holder else ''}: wait for it to finish")
    existing = read_manifest(folder)
    if existing is not None and existing["key"] != request.key:
        raise ExportError(f"{folder} holds another export ({describe(existing)}): remove it or "
                          f"choose another folder with --out")
    predictions = predicted(request, device)
    manifest = new_manifest(request, predictions, resumed_chunk_size(existing, chunk_size, folder))
    write_json(folder / MANIFEST, manifest)
    return manifest, predictions


def resumed_chunk_size(existing: dict | None, asked: int | None, folder: Path) -> int:
    """The chunk size of an export begun earlier (a different one asked for is refused), else
    the one asked for, else CHUNK_SIZE."""
    if existing is None:
        return asked or CHUNK_SIZE
    if asked and asked != existing["chunk_size"]:
        raise ExportError(f"{folder} holds this export begun in chunks of "
                          f"{existing['chunk_size']} faces: resume it with that --chunk (or "
                          f"none)")
    return existing["chunk_size"]


def foreign_files(folder: Path) -> list[str]:
    """The entries of `folder` an export did not write (its lock, chunks and temporary
    files)."""
    ours = {LOCK, *written_chunks(folder)}
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in ours and not (p.name.startswith(".") and p.suffix == ".tmp"))


def describe(manifest: dict) -> str:
    checkpoint = manifest["checkpoint"].get("path", "?")
    dataset = manifest["dataset"].get("name", "?")
    return (f"{checkpoint} on {dataset}, split {manifest['split']}, methods "
            f"{', '.join(manifest['methods'])}")


def new_manifest(request: ExportRequest, predictions: Predictions, chunk_size: int) -> dict:
    faces = len(predictions.rows)
    return {
        "format": FORMAT, "version": VERSION, "key": request.key, "complete": False,
        "checkpoint": {"path": str(request.checkpoint_path.resolve()),
                       "fingerprint": cache.file_fingerprint(request.checkpoint_path),
                       "task": request.task.to_meta()},
        "dataset": {"name": request.dataset.name, "fingerprint": request.dataset.fingerprint},
        "split": request.split, "faces": faces, "chunk_size": chunk_size,
        "chunks": chunk_count(faces, chunk_size), "classes": list(request.task.classes),
        "target": "predicted class", "seed": request.seed,
        "methods": {m: {"title": METHODS[m].title, "signed": METHODS[m].signed, "params": p}
                    for m, p in request.methods.items()},
        "features": int(predictions.features.shape[1]), "map_dtype": np.dtype(MAP_DTYPE).name,
    }


def predicted(request: ExportRequest, device: torch.device) -> Predictions:
    """The split's predictions with features, from the prediction cache when there."""
    if len(request.dataset.indices(request.split)) == 0:
        raise FerError(f"{request.dataset.name} has no {request.split} faces")
    return cached_predict_split(request.model, request.checkpoint_path, request.dataset,
                                request.split, device, features=True)


def write_or_keep(request: ExportRequest, predictions: Predictions, manifest: dict,
                  folder: Path, k: int, device: torch.device, batch: int | None,
                  on_chunk: ChunkCallback | None) -> dict:
    """Chunk k's shard record, from the chunk already there when it is whole and of this
    export, else from computing and writing it (atomically)."""
    path = folder / chunk_name(k)
    span = chunk_span(k, manifest["chunk_size"], manifest["faces"])
    shard = kept_chunk(path, manifest, k, predictions.rows[span.start:span.stop])
    kept = shard is not None
    if not kept:
        data = chunk_bytes(chunk_arrays(request, predictions, manifest["key"], span, device,
                                        batch))
        with atomic_file(path, "wb") as f:
            f.write(data)
        shard = {"file": path.name, "faces": len(span), "bytes": len(data),
                 "hash": cache.bytes_fingerprint(data)}
    if on_chunk:
        on_chunk(k, manifest["chunks"], kept)
    return {"shard": shard, "kept": kept}


def kept_chunk(path: Path, manifest: dict, k: int, rows: np.ndarray) -> dict | None:
    """The shard record of the chunk at `path` when it is whole, of this export and holds
    `rows`; None when it must be computed (missing, cut short, another export's)."""
    if not path.exists():
        return None
    try:
        arrays, digest, size = read_chunk(path, manifest, k)
    except ExportError:
        return None
    if not np.array_equal(arrays["rows"], rows):
        return None
    return {"file": path.name, "faces": len(rows), "bytes": size, "hash": digest}


def chunk_arrays(request: ExportRequest, predictions: Predictions, key: str, span: range,
                 device: torch.device, batch: int | None) -> dict[str, np.ndarray]:
    """Chunk `span`'s arrays: predictions, probabilities and features from `predictions`, and
    each method's maps of the predicted class (float16)."""
    part = slice(span.start, span.stop)
    probs = predictions.probs[part]
    chosen = probs.argmax(1)
    faces = torch.from_numpy(request.dataset.images[predictions.rows[part]]).to(device)
    # Target "true" explains the class given per face in `labels`: here the recorded
    # prediction, so each map explains exactly the class the export reports.
    classes = torch.from_numpy(chosen).to(device)
    arrays = {"key": np.array(key), "rows": predictions.rows[part],
              "labels": predictions.labels[part], "predictions": chosen.astype(np.int64),
              "probs": probs.astype(np.float32),
              "features": predictions.features[part].astype(np.float32)}
    for method, params in request.methods.items():
        result = explain(request.model, faces, method, Target("true"), labels=classes,
                         seed=request.seed, batch=batch, **params)
        arrays[map_name(method)] = result.maps.cpu().numpy().astype(MAP_DTYPE)
    return arrays


def find_export(checkpoint: Checkpoint, dataset: FaceDataset, split: str,
                methods: Iterable[str] | dict[str, dict], seed: int = 0) -> Path | None:
    """The folder of a complete export of `checkpoint` on `dataset` and `split` (as
    `split_exports` finds them) that holds every wanted method with the wanted parameters
    (defaults where not given) and seed, or None. `load_export` reads (and checks) what it
    names."""
    wanted = methods if isinstance(methods, dict) else {m: {} for m in methods}
    params = resolve_methods(checkpoint, wanted)
    for folder, manifest in split_exports(checkpoint, dataset, split):
        recorded = manifest["methods"]
        if manifest.get("seed") == seed and all(
                m in recorded and recorded[m]["params"] == p for m, p in params.items()):
            return folder
    return None


def split_exports(checkpoint: Checkpoint, dataset: FaceDataset,
                  split: str) -> list[tuple[Path, dict]]:
    """The complete exports of `checkpoint` (by content) on `dataset` (by fingerprint) and
    `split`, with their manifests: looked for in the checkpoint's run folder, its default export
    folder first, then the others under `exports/` by name (an export written elsewhere with
    --out is not found). The one rule by which the CLI and the dashboard find exports."""
    run = resolve_checkpoint_path(checkpoint.path).parent
    first = default_folder(run, dataset.name, split)
    fingerprint = cache.file_fingerprint(checkpoint.path)
    found = []
    for folder in [first, *sorted(p for p in (run / EXPORTS).glob("*") if p != first)]:
        try:
            manifest = read_manifest(folder)
        except (ExportError, OSError):
            continue
        if (manifest is not None and manifest["complete"] and manifest["split"] == split
                and manifest["checkpoint"].get("fingerprint") == fingerprint
                and manifest["dataset"].get("fingerprint") == dataset.fingerprint):
            found.append((folder, manifest))
    return found
