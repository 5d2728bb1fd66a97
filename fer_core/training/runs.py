"""The run folder shared by the trainer, the CLI and the dashboard.

    checkpoints/<name>/
        config.json     the training configuration
        history.jsonl   one JSON object per line, appended and flushed as it happens:
                        {"kind": "step", ...} every few steps, {"kind": "epoch", ...} per epoch
        status.json     state (running, finished, failed, stopped), pid, epoch, best_val_acc, error
        best.pt         the checkpoint with the best validation accuracy
        last.pt         the latest checkpoint, with optimizer state, for resuming
        STOP            present = please stop (the trainer removes it when it stops)
        run.lock        held (flock) by the one trainer writing to the folder
"""

import fcntl
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from ..atomic import atomic_file, write_json
from ..errors import RunError
from ..locks import FolderLock, try_lock

PROCESS_STARTED = time.time()  # as early as fer_core is imported (see clear_stale_stop)


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class RunFolder:
    """Paths and small file operations of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = FolderLock(self.lock_path)

    @property
    def name(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / "config.json")
    history_path = property(lambda self: self.path / "history.jsonl")
    status_path = property(lambda self: self.path / "status.json")
    best_path = property(lambda self: self.path / "best.pt")
    last_path = property(lambda self: self.path / "last.pt")
    stop_path = property(lambda self: self.path / "STOP")
    lock_path = property(lambda self: self.path / "run.lock")

    def exists(self) -> bool:
        return any(p.exists() for p in (self.config_path, self.status_path, self.history_path,
                                        self.best_path, self.last_path))

    def acquire(self) -> None:
        """Take the folder's lock; a second trainer on the same folder is refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            pid = self._lock.holder()
            raise RunError(f"run folder {self.path} is in use by another trainer"
                           + (f" (pid {pid})" if pid else ""))

    def release(self) -> None:
        self._lock.release()

    def is_locked(self) -> bool:
        """True while some process holds the folder's lock (a trainer is writing to it)."""
        if not self.lock_path.exists():
            return False
        with open(self.lock_path, "a+") as f:
            if not try_lock(f, attempts=1):
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False

    def config(self) -> dict | None:
        return read_json(self.config_path)

    def status(self) -> dict | None:
        """status.json; a 'running' run whose trainer died without saying so reads as failed."""
        status = read_json(self.status_path)
        if status and status.get("state") == "running" and not self.is_locked():
            status = {**status, "state": "failed",
                      "error": "the trainer process ended unexpectedly"}
        return status

    def write_status(self, **fields) -> None:
        status = read_json(self.status_path) or {}
        status.update(fields, updated=time.time())
        write_json(self.status_path, status)

    def clear_stale_stop(self) -> None:
        """Remove a STOP file left from before this process started; a newer one is a request
        made while this process was starting up, and stays."""
        try:
            if self.stop_path.stat().st_mtime < PROCESS_STARTED:
                self.stop_path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def request_stop(self) -> None:
        """Ask the trainer to stop after its current step (it polls for the STOP file)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.stop_path.touch()

    def history(self) -> list[dict]:
        """All complete history lines; a partly written last line is skipped."""
        return read_history(self.history_path).records

    def epochs(self) -> list[dict]:
        return [r for r in self.history() if r.get("kind") == "epoch"]


class HistoryRead(NamedTuple):
    records: list[dict]
    offset: int      # where the next read starts: just after the last complete line
    inode: int | None
    restarted: bool  # the file was replaced or shrank since `inode`/`start`: read from 0


def read_history(path: Path, start: int = 0, inode: int | None = None) -> HistoryRead:
    """The complete JSON lines of history.jsonl from byte `start`.

    A partly written last line is left for the next call. A resumed run rewrites its history
    (a new file renamed into place), so when the file's inode differs from `inode` (if given) or
    it is shorter than `start`, reading starts over from the beginning.
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            restarted = (inode is not None and info.st_ino != inode) or info.st_size < start
            start = 0 if restarted else start
            f.seek(start)
            data = f.read()
    except OSError:
        return HistoryRead([], start, inode, False)
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return HistoryRead(records, start + end, info.st_ino, restarted)


class HistoryWriter:
    """Appends one JSON object per line to history.jsonl and flushes it at once; with no path,
    keeps nothing (the ranks of a torchrun run other than rank 0)."""

    def __init__(self, path: Path | None):
        self._file = open(path, "a", buffering=1) if path is not None else None

    def write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def truncate_history(path: Path, keep) -> None:
    """Rewrite history.jsonl atomically with only the records for which keep(record) is true."""
    if not path.exists():
        return
    kept = [r for r in read_history(path).records if keep(r)]
    with atomic_file(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
