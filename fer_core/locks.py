"""A folder held by one writer at a time: an exclusive `flock` on a lock file inside it, taken
without waiting (a second writer is refused at once, not queued) and released by the kernel when
the holder ends, even by kill -9, so a crashed writer never leaves the folder locked.

The holder writes its pid into the lock file, so a refused writer can say who holds it.
"""

import fcntl
import os
import time
from pathlib import Path


class FolderLock:
    """The lock file `path`; `acquire()` is True when this process now holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def acquire(self, attempts: int = 5) -> bool:
        """Take the lock, trying `attempts` times 50 ms apart (a holder about to release it is
        waited for, a running one is not); the holder's pid replaces the file's content."""
        f = open(self.path, "a+")  # noqa: SIM115 (kept open while the lock is held)
        if not try_lock(f, attempts):
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def holder(self) -> int | None:
        """The pid written by the process holding (or that last held) the lock, if any."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


def try_lock(f, attempts: int) -> bool:
    """Take an exclusive flock on `f` without blocking, trying `attempts` times 50 ms apart."""
    for attempt in range(attempts):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.05)
    return False
