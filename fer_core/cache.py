"""An on-disk cache of parsed numpy arrays, keyed by content fingerprints.

Entries are uncompressed .npz files (no pickles) under `cache_dir()`, written atomically (see
`atomic`), so a reader never sees half an entry. A large array can be kept beside its entry as a
.npy file (`scratch_array`, `save_entry`, `load_array`): written where it will stay (by the
tree reader's worker processes), fsynced and renamed into place when complete, and mapped (copy
on write) when read, so a 460 MB dataset is neither copied to be cached nor read whole to be
used. An entry that exists but cannot be read (cut short by a full disk, damaged, edited) is
computed again and written anew, with a note: a `DamagedEntry` warning, and a line in
`damage_notes` for the dashboard to show. Deleting the cache only costs time.

The results of a checkpoint on a dataset (predictions, filter statistics, cell saliency, trust
reports, projections) are keyed by `entry_key` and read or made by `load_or_compute`.
"""

import contextlib
import functools
import hashlib
import itertools
import os
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .atomic import atomic_file, remove_orphans

_DIGITS = 32  # hex digits kept from each hash: 128 bits


class DamagedEntry(UserWarning):
    """A cache entry that exists but cannot be read: it is computed again."""


_NOTES: deque[tuple[int, str]] = deque(maxlen=32)  # (serial, note), the newest last
_SERIALS = itertools.count(1)
_NOTES_LOCK = threading.Lock()


def cache_dir() -> Path:
    """FER_CACHE_DIR if set, else $XDG_CACHE_HOME/fer_core, else ~/.cache/fer_core."""
    if configured := os.environ.get("FER_CACHE_DIR"):
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_core"


def bytes_fingerprint(data: bytes) -> str:
    """Content hash of some bytes; equals `file_fingerprint` of a file holding them."""
    return _hasher(data).hexdigest()[:_DIGITS]


def file_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a file's bytes, read in large chunks; remembered per version of the file
    (its identity, size and mtime), since pages ask for a checkpoint's on every rerun (a
    resnet18 checkpoint takes about 30 ms to hash)."""
    info = os.stat(path)
    return _fingerprint(os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, inode: int, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, _hasher).hexdigest()[:_DIGITS]


def tree_fingerprint(files: Iterable[tuple[str, bytes]]) -> str:
    """Content hash of (relative path, bytes) pairs; each is framed by its lengths so no two
    different trees hash the same stream. Pass the pairs in a fixed (sorted) order."""
    digest = _hasher()
    for relative, data in files:
        name = relative.encode()
        digest.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:_DIGITS]


def load_arrays(key: str, names: Iterable[str] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored under `key` (only those in `names`, when given: the others are not
    read), or None when there is no entry, it lacks one of `names`, or it cannot be read (then
    with a note: see `DamagedEntry`)."""
    path = _entry_path(key)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in (stored.files if names is None else names)}
    except (FileNotFoundError, KeyError):  # no entry, or one of another format
        return None
    # np.load reports damage in many ways (BadZipFile, ValueError, EOFError, TokenError,
    # NotImplementedError, MemoryError for a garbled shape...): each is a miss, with a note.
    except Exception as exc:  # noqa: BLE001
        _note_damage(path, exc)
        return None


def damage_notes(after: int = 0) -> list[tuple[int, str]]:
    """The notes about damaged entries with a serial above `after`, oldest first."""
    with _NOTES_LOCK:
        return [(serial, note) for serial, note in _NOTES if serial > after]


def _note_damage(path: Path, exc: Exception) -> None:
    note = (f"the cache file {path.name} could not be read ({type(exc).__name__}: it is cut "
            f"short or damaged); computing it again")
    with _NOTES_LOCK:
        _NOTES.append((next(_SERIALS), note))
    warnings.warn(note, DamagedEntry, stacklevel=3)


def save_arrays(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store `arrays` under `key` atomically; failing to write only warns: the cache is optional."""
    target = _entry_path(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, "wb") as f:
            np.savez(f, **arrays)
    except OSError as exc:
        warnings.warn(f"could not write cache entry {target}: {exc}", stacklevel=2)


def load_array(key: str, name: str) -> np.ndarray | None:
    """The array `name` kept beside entry `key` (see `save_entry`), mapped copy-on-write: its
    pages are read as they are used and a write changes this process's copy only. None when
    there is none or it cannot be read (with a note)."""
    path = array_path(key, name)
    try:
        return map_array(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001  (as in load_arrays)
        _note_damage(path, exc)
        return None


def load_with_array(key: str, name: str) -> dict[str, np.ndarray] | None:
    """The arrays of entry `key` with its kept array `name` (mapped) among them, or None when
    either is missing or unreadable."""
    arrays = load_arrays(key)
    kept = None if arrays is None else load_array(key, name)
    return None if kept is None else {**arrays, name: kept}


def map_array(path: Path) -> np.ndarray:
    """The .npy file `path` mapped copy-on-write, as a plain ndarray."""
    return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))


@contextlib.contextmanager
def scratch_array(key: str | None, name: str):
    """A path for a new .npy file that will become array `name` of entry `key` (`save_entry`),
    in the cache folder (so the rename is not a copy), or in the temporary folder when `key` is
    None or the cache folder cannot be written. Removed at the end unless kept; a mapping of it
    stays valid after that."""
    folder = cache_dir() if key is not None else Path(tempfile.gettempdir())
    target = array_path(key or "scratch", name, folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_orphans(target)
        path = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        path.touch()
    except OSError:
        if key is None:
            raise
        with scratch_array(None, name) as path:
            yield path
        return
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def save_entry(key: str, arrays: dict[str, np.ndarray], scratches: dict[str, Path]) -> None:
    """Store `arrays` under `key` with the complete .npy files `scratches` kept beside them
    (name: scratch path): each file is flushed to disk and renamed into place, then the entry
    is written, so an entry that exists has all its files. Failing only warns."""
    try:
        for name, scratch in scratches.items():
            fd = os.open(scratch, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(scratch, array_path(key, name))
    except OSError as exc:
        warnings.warn(f"could not write cache entry {key}: {exc}", stacklevel=2)
        return
    save_arrays(key, arrays)


def array_path(key: str, name: str, folder: Path | None = None) -> Path:
    return (folder or cache_dir()) / f"{key}.{name}.npy"


def entry_key(kind: str, version: int, checkpoint_path: str | os.PathLike,
              dataset_fingerprint: str, *parts) -> str:
    """The key of a result of a checkpoint on a dataset: `<kind>-` and a hash of the entry's
    format `version`, the checkpoint file's content, the dataset's fingerprint and `parts` (the
    split and whatever else shapes the result), so a new checkpoint or dataset never meets an
    old entry."""
    fields = [f"v{version}", file_fingerprint(checkpoint_path), dataset_fingerprint,
              *map(str, parts)]
    return f"{kind}-" + bytes_fingerprint("|".join(fields).encode())


def matching_arrays(key: str, names: Iterable[str],
                    rows: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """The arrays `names` stored under `key`, or None when the entry is missing, unreadable or
    lacks one of them; given `rows` (the dataset rows the result was computed on), also None
    unless the entry's "rows" array equals them."""
    names = tuple(names) if rows is None else ("rows", *names)
    stored = load_arrays(key, names)
    if stored is None or (rows is not None and not np.array_equal(stored["rows"], rows)):
        return None
    return stored


def load_or_compute(key: str, names: Iterable[str], compute: Callable[[], dict[str, np.ndarray]],
                    rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`matching_arrays(key, names, rows)` when the entry holds them; else the arrays of
    `compute()` (with "rows": `rows` added when given), stored under `key` first."""
    if (stored := matching_arrays(key, names, rows)) is not None:
        return stored
    arrays = compute() if rows is None else {"rows": rows, **compute()}
    save_arrays(key, arrays)
    return arrays


def _entry_path(key: str) -> Path:
    return cache_dir() / f"{key}.npz"


def _hasher(data: bytes = b""):
    # SHA-256 runs in hardware on current x86 and ARM CPUs: here about twice as fast as BLAKE2b.
    return hashlib.sha256(data)
