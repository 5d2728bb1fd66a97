"""The keys of what the dashboard keeps in memory (`memo.Memo` stores and `st.cache_data`), built
by one function from their parts.

A file's version is named two ways, each for its job:
- `disk_version(path)`: (mtime_ns, size), a stat: cheap enough for every rerun, and it changes
  when the file is rewritten (a trainer's new best.pt), so what memory holds of it is read again.
  Memory keys use it.
- `fer_core.cache.file_fingerprint(path)`: a hash of the content: what the disk cache keys on
  (`cache.entry_key`), since an entry must outlive a copy or a touch of the file and never meet
  other weights.
"""

import os
from pathlib import Path


def disk_version(path: str | os.PathLike) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file or folder, or None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def memo_key(*parts) -> tuple:
    """A memory key: each file or folder (a Path, or what has a `path`: a checkpoint, its file)
    as its name and `disk_version`, each dataset (what has a `fingerprint`) as its fingerprint,
    a tuple part by part, anything else (text, numbers) as itself."""
    return tuple(_key_part(part) for part in parts)


def _key_part(part):
    if hasattr(part, "fingerprint"):
        return part.fingerprint
    if hasattr(part, "path"):
        part = Path(part.path)
    if isinstance(part, Path):
        return str(part), disk_version(part)
    if isinstance(part, tuple):
        return memo_key(*part)
    return part
