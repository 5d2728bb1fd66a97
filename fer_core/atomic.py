"""Atomic file writes: a reader of the target sees its old content or the new, never part of it.

Every file fer_core writes whole (run JSON, history rewrites, checkpoints, cache entries, the
commands' outputs) goes through `atomic_file`: the content is written to a new file in the same
folder, flushed and fsynced, then renamed over the target; when the writing fails the new file is
removed and the target is left as it was. A writer killed outright (kill -9, a power cut) leaves
its new file behind, never read: the next write of the same target removes it.
"""

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A file opened in `mode` ("w" or "wb") that takes `path`'s place when the block ends
    without an error, and is removed when it raises. Its name is unique to the call, so two
    threads writing the same target do not write into one file."""
    path = Path(path)
    remove_orphans(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(temporary, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_orphans(path: Path) -> None:
    """Remove the new files of `path` left by writers that no longer run (named by their pid)."""
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = orphan.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            orphan.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """`obj` as JSON indented by 2 (no newline at the end)."""
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2)
