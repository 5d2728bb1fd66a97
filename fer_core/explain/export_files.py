"""The files of an export (`python -m fer_core export`): every face of a split with its
prediction, probabilities, penultimate features and saliency maps, as shards beside a manifest.

    <run folder>/exports/<data>-<split>/     (the default place; --out chooses another)
        manifest.json     what was exported (`manifest` below); "complete": true once every
                          chunk is written, with each chunk's size and content hash
        chunk-00000.npz   faces 0 .. C-1 of the split (C = chunk_size, 512 by default)
        chunk-00001.npz   faces C .. 2C-1, and so on: uncompressed numpy arrays, no pickles
        export.lock       held (flock) by the export writing into the folder

A chunk holds, for its faces in split order: `rows` (dataset rows, int64), `labels` (int64,
-1 = unknown), `predictions` (int64), `probs` (float32, one per class of the checkpoint's task,
which the manifest records), `features` (float32 x D, the input of the final linear layer) and
`map_<method>` (float16 x H x W, the task's size) per method, each explaining the predicted
class; and `key`, the export's key, so a chunk of another export is never taken
for one of this. Chunks are cut at a fixed size whatever the number of processes writing them,
so an export by two ranks writes the same files as one by a single process.

`load_export(folder)` reads a complete export back, checking every shard against the manifest:
a missing, cut short or changed shard, or an unfinished export, is an ExportError naming the
file. Nothing here imports torch: a notebook can read an export without it.
"""

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import bytes_fingerprint
from ..data.files import TooLarge, read_file
from ..data.task import Task
from ..errors import DataError, ExportError

FORMAT = "fer_core.export"  # the tag every manifest carries: never renamed
VERSION = 1
MANIFEST = "manifest.json"
LOCK = "export.lock"
EXPORTS = "exports"           # the folder of a run folder holding its exports
MAP_DTYPE = np.float16
MAX_MANIFEST_BYTES = 1 << 20
REQUIRED = {"key": str, "complete": bool, "checkpoint": dict, "dataset": dict, "split": str,
            "faces": int, "chunk_size": int, "chunks": int, "methods": dict, "features": int}
_CHUNK = re.compile(r"chunk-\d{5}\.npz")
BASE_ARRAYS = ("rows", "labels", "predictions", "probs", "features")  # then map_<method>


@dataclass(frozen=True)
class Export:
    """A complete export in memory: the manifest and, for every face of the split in split
    order, its arrays; `maps[method]` is N x H x W float16 (the task's size), for the methods
    loaded."""

    folder: Path
    manifest: dict
    rows: np.ndarray         # int64 (N,): the faces' dataset rows
    labels: np.ndarray       # int64 (N,): -1 = unknown
    predictions: np.ndarray  # int64 (N,)
    probs: np.ndarray        # float32 (N, K): K the task's classes
    features: np.ndarray     # float32 (N, D)
    maps: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def split(self) -> str:
        return self.manifest["split"]

    @property
    def task(self) -> Task:
        """The exported checkpoint's task: its classes (the probabilities' order) and size."""
        return manifest_task(self.manifest)

    @property
    def methods(self) -> list[str]:
        """The methods whose maps were loaded (all the export holds, unless fewer were asked)."""
        return list(self.maps)

    def params(self, method: str) -> dict:
        """The parameters `method`'s maps were computed with (Grad-CAM's layer included)."""
        return self.manifest["methods"][method]["params"]


def default_folder(run_folder: str | os.PathLike, dataset_name: str, split: str) -> Path:
    """`<run folder>/exports/<data>-<split>`, <data> being the dataset's file or folder name
    without its extensions ('builtin' for the built-in faces)."""
    stem = Path(dataset_name.rstrip("/\\")).name.split(".")[0]
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem) or "data"
    return Path(run_folder) / EXPORTS / f"{safe}-{split}"


def chunk_name(k: int) -> str:
    return f"chunk-{k:05d}.npz"


def chunk_count(faces: int, chunk_size: int) -> int:
    return -(-faces // chunk_size)


def chunk_span(k: int, chunk_size: int, faces: int) -> range:
    """The split positions of chunk k's faces."""
    return range(k * chunk_size, min((k + 1) * chunk_size, faces))


def written_chunks(folder: Path) -> list[str]:
    """The chunk files in `folder` (whatever their state), sorted."""
    return sorted(p.name for p in folder.glob("chunk-*.npz") if _CHUNK.fullmatch(p.name))


def map_name(method: str) -> str:
    return f"map_{method}"


def chunk_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A chunk's arrays as the bytes of an uncompressed .npz."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def expected_arrays(manifest: dict, faces: int) -> dict[str, tuple[np.dtype, tuple]]:
    """The dtype and shape of every array a chunk of `faces` faces holds."""
    i64, f32 = np.dtype(np.int64), np.dtype(np.float32)
    task = manifest_task(manifest)
    expected = {"rows": (i64, (faces,)), "labels": (i64, (faces,)),
                "predictions": (i64, (faces,)), "probs": (f32, (faces, task.num_classes)),
                "features": (f32, (faces, manifest["features"]))}
    for method in manifest["methods"]:
        expected[map_name(method)] = (np.dtype(MAP_DTYPE), (faces, task.size, task.size))
    return expected


def manifest_task(manifest: dict) -> Task:
    """The checkpoint's task the export records (`checkpoint.task`, in checkpoint metadata form);
    FER2013's for an export written before tasks were recorded."""
    return Task.from_meta(manifest["checkpoint"].get("task", {}))


def read_chunk(path: Path, manifest: dict, k: int,
               record: dict | None = None) -> tuple[dict[str, np.ndarray], str, int]:
    """Chunk k of the export `manifest` describes, read from `path` and checked (against the
    manifest's `record` of it when given: size and content hash; then key, arrays, dtypes and
    shapes): (its arrays, its content hash, its size in bytes); else an ExportError saying what
    is wrong."""
    if not os.path.lexists(path):
        raise ExportError(f"{path}: missing")
    try:
        data = read_file(path, str(path), limit=None if record is None else record["bytes"])
    except TooLarge:
        raise ExportError(f"{path}: larger than the export wrote it (changed since)") from None
    except DataError as exc:
        raise ExportError(str(exc)) from None
    digest = bytes_fingerprint(data)
    if record is not None and len(data) < record["bytes"]:
        raise ExportError(f"{path}: cut short ({len(data):,} of its {record['bytes']:,} bytes)")
    if record is not None and digest != record["hash"]:
        raise ExportError(f"{path}: changed since the export was written (its content hash is "
                          f"not the manifest's)")
    arrays = parse_chunk(data, path)
    if str(arrays.get("key", "")) != manifest["key"]:
        raise ExportError(f"{path}: belongs to another export (its key is not the manifest's)")
    faces = len(chunk_span(k, manifest["chunk_size"], manifest["faces"]))
    for name, (dtype, shape) in expected_arrays(manifest, faces).items():
        array = arrays.get(name)
        if array is None:
            raise ExportError(f"{path}: lacks the array {name}")
        if array.dtype != dtype or array.shape != shape:
            raise ExportError(f"{path}: {name} is {array.dtype} {array.shape}, expected "
                              f"{dtype} {shape}")
    return arrays, digest, len(data)


def parse_chunk(data: bytes, path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    # np.load reports damage in many ways (BadZipFile, ValueError, EOFError, ...): each means
    # the file is cut short or damaged.
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{path}: cannot be read ({type(exc).__name__}: cut short or "
                          f"damaged)") from None


def read_manifest(folder: Path) -> dict | None:
    """The export manifest in `folder`, None when there is none; an ExportError when it is not
    a readable fer_core export manifest."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(read_file(path, str(path), limit=MAX_MANIFEST_BYTES))
    except DataError as exc:
        raise ExportError(str(exc)) from None
    except ValueError:
        raise ExportError(f"{path}: not valid JSON (damaged or edited)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not a fer_core export manifest (no '{FORMAT}' format tag)")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise ExportError(f"{path}: export format v{manifest.get('version')} is not one this "
                          f"fer_core reads (v{VERSION}); upgrade fer_core")
    wrong = [name for name, kind in REQUIRED.items() if not of_type(manifest.get(name), kind)]
    wrong += [] if wrong or valid_methods(manifest["methods"]) else ["methods"]
    if wrong:
        raise ExportError(f"{path}: damaged manifest ({', '.join(wrong)} missing or of the "
                          f"wrong type)")
    faces, size = manifest["faces"], manifest["chunk_size"]
    if min(faces, size) < 1 or manifest["chunks"] != chunk_count(faces, size):
        raise ExportError(f"{path}: damaged manifest (its faces, chunk size and chunks do not "
                          f"agree)")
    if manifest["complete"] and not valid_shards(manifest.get("shards"), manifest["chunks"]):
        raise ExportError(f"{path}: damaged manifest (its shards do not match its chunks)")
    return manifest


def of_type(value, kind: type) -> bool:
    """isinstance, but a bool is no int (JSON's true is not a count)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def valid_methods(methods: dict) -> bool:
    return all(isinstance(m, dict) and isinstance(m.get("params"), dict)
               for m in methods.values())


def valid_shards(shards, chunks: int) -> bool:
    """Whether `shards` is one record per chunk, each with the fields `read_chunk` checks."""
    return (isinstance(shards, list) and len(shards) == chunks
            and all(isinstance(s, dict) and isinstance(s.get("bytes"), int)
                    and isinstance(s.get("hash"), str) for s in shards))


def load_export(folder: str | os.PathLike, methods: list[str] | None = None) -> Export:
    """The complete export in `folder`, every shard checked against the manifest's record of
    it (size and content hash, then its arrays); with `methods`, only their maps are kept (a
    method's maps of FER2013's training split weigh 132 MB)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ExportError(f"{folder}: no export here (no {MANIFEST})")
    if not manifest["complete"]:
        raise ExportError(f"{folder}: the export is incomplete ({len(written_chunks(folder))} "
                          f"of {manifest['chunks']} chunks written): run the same export "
                          f"command again to finish it")
    unknown = sorted(set(methods or []) - set(manifest["methods"]))
    if unknown:
        raise ExportError(f"{folder}: holds no {', '.join(unknown)} maps (it has "
                          f"{', '.join(manifest['methods'])})")
    kept = list(manifest["methods"]) if methods is None else methods
    names = [*BASE_ARRAYS, *(map_name(m) for m in kept)]
    parts = []
    for k, record in enumerate(manifest["shards"]):
        arrays = read_chunk(folder / chunk_name(k), manifest, k, record)[0]
        parts.append({name: arrays[name] for name in names})
    joined = {name: np.concatenate([part[name] for part in parts]) for name in names}
    return Export(folder=folder, manifest=manifest, rows=joined["rows"], labels=joined["labels"],
                  predictions=joined["predictions"], probs=joined["probs"],
                  features=joined["features"], maps={m: joined[map_name(m)] for m in kept})
