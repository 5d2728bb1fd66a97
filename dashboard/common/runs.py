"""What the run folders say: one row per run for the runs table, the sidebar and every page.

A run trains in its own process (`python -m fer_core train`); everything shown about it is read
from its folder, so a run started from the CLI, another tab or before a page reload looks the
same. Besides the trainer's files (fer_core.training.runs), a run launched from the dashboard has
launch.json (pid, command, start time) and train.log (the trainer's output, whose last `error:`
line is the reason when the process dies before it writes status.json). The Training page's
launcher writes them; this module only reads them.
"""

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dashboard.common.paths import run_roots
from fer_core.models.checkpoint import looks_whole
from fer_core.training.runs import RunFolder, read_json

LAUNCH_FILE, LOG_FILE = "launch.json", "train.log"
LIVE_STATES = ("starting", "running", "stopping")
CHILDREN: dict[int, subprocess.Popen] = {}  # trainers this process started, reaped when done


@dataclass(frozen=True)
class RunInfo:
    """One row of the runs table: what the run folder says, plus the derived state."""

    name: str
    path: Path
    state: str
    arch: str | None
    data: str | None
    epoch: int
    epochs: int | None
    best_val_acc: float | None
    started: float | None
    error: str | None
    has_checkpoint: bool
    checkpoint_cut: bool = False  # its best.pt (or last.pt) is cut short: it cannot load

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def run_info(folder: RunFolder) -> RunInfo:
    """What a run folder says about its run, whoever started it."""
    status = folder.status()
    launch = read_json(folder.path / LAUNCH_FILE) or {}
    config = folder.config() or launch
    state, error = _state(folder, status, launch)
    status = status or {}
    return RunInfo(
        name=folder.name, path=folder.path, state=state, arch=config.get("arch"),
        data=config.get("data"), epoch=status.get("epoch") or 0,
        epochs=status.get("epochs") or config.get("epochs"),
        best_val_acc=status.get("best_val_acc"),
        started=status.get("started") or launch.get("started"), error=error,
        has_checkpoint=folder.best_path.exists() or folder.last_path.exists(),
        checkpoint_cut=_checkpoint_cut(folder))


def _checkpoint_cut(folder: RunFolder) -> bool:
    """Whether the checkpoint the pages would load (best.pt, else last.pt) fails the cheap
    whole-file test (`looks_whole`); a fuller load, which finds other damage, is the pages'."""
    file = next((p for p in (folder.best_path, folder.last_path) if p.is_file()), None)
    return file is not None and not looks_whole(file)


def _state(folder: RunFolder, status: dict | None, launch: dict) -> tuple[str, str | None]:
    """(state, error): status.json's state, unless the dashboard launched a trainer after
    status.json was last written (a new run or a resume that has not reported yet)."""
    relaunched = bool(launch) and launch.get("started", 0) > (status or {}).get("updated", 0)
    if relaunched and launch.get("pid") and _trainer_alive(launch["pid"]):
        return "starting", None  # still importing and loading data
    if relaunched:
        return "failed", log_error(folder) or "the trainer ended before it started"
    if status is None:
        return "saved", None  # weights without a status, e.g. a copied checkpoint
    state = status.get("state", "failed")
    if state == "running" and folder.stop_path.exists():
        return "stopping", None
    if state == "failed":
        return state, status.get("error") or log_error(folder) or "unknown error"
    return state, None


def log_tail(folder: RunFolder, lines: int = 12) -> list[str]:
    """The last lines of train.log (progress-bar redraws split into lines of their own)."""
    try:
        with open(folder.path / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()][-lines:]


def log_error(folder: RunFolder) -> str | None:
    """The CLI's one-line error ('error: ...') from train.log, if it wrote one."""
    errors = [line for line in log_tail(folder, 40) if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else None


def all_runs() -> list[RunInfo]:
    """Every run of every run folder root (`paths.run_roots`), including those still starting,
    newest first; a name found in two roots is the first root's."""
    found: dict[str, RunInfo] = {}
    for root in run_roots():
        for folder in _run_folders(root):
            found.setdefault(folder.name, run_info(folder))
    return sorted(found.values(), key=lambda r: (r.started or 0, r.name), reverse=True)


def _run_folders(root: Path) -> list[RunFolder]:
    """The folders under `root` that hold a run's files or a launch record."""
    if not root.is_dir():
        return []
    folders = [RunFolder(p) for p in root.iterdir() if p.is_dir()]
    return [f for f in folders if f.exists() or (f.path / LAUNCH_FILE).exists()]


def reap() -> None:
    """Collect the exit status of finished trainers this process started."""
    for pid, child in list(CHILDREN.items()):
        if child.poll() is not None:
            del CHILDREN[pid]


def _trainer_alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) `fer_core train` process."""
    reap()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():  # not Linux: trust os.kill
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"fer_core" in cmdline
