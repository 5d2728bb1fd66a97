"""Start, stop and resume trainer processes, and tell which state a run folder is in.

A run trains in its own process (`python -m fer_core train`), never in Streamlit's script thread,
and everything shown about it is read from its folder: a run started from the CLI, from another
tab, or before a page reload looks the same as one started here.

The dashboard adds three files to the folders of the runs it starts: launch.json (pid, command,
start time), created exclusively so that two clicks cannot start two trainers under one name;
launch.lock, held while a resume checks the folder and launches, so that two tabs clicking Resume
at once start one trainer; and train.log (the trainer's output), whose last line is the error
when the process dies before it writes status.json.

Paths are made absolute before launching: the trainer runs from the repository root, which need
not be the dashboard's working directory. FER_ALLOW_TRAINING=0 turns launching and stopping off
(a shared deployment where visitors only look).
"""

import fcntl
import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fer_core.errors import RunError
from fer_core.models import arch_options
from fer_core.readers import is_builtin_spec
from fer_core.runs import RunFolder, read_json, write_json_atomic
from fer_core.trainer import TrainConfig

from .paths import REPO_ROOT

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LAUNCH_FILE, LAUNCH_LOCK, LOG_FILE = "launch.json", "launch.lock", "train.log"
LIVE_STATES = ("starting", "running", "stopping")
_children: dict[int, subprocess.Popen] = {}  # kept so finished trainers are reaped, not zombies


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

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def training_allowed() -> bool:
    """False when FER_ALLOW_TRAINING is 0 (or false, no, off): nothing is launched or stopped."""
    return os.environ.get("FER_ALLOW_TRAINING", "1").strip().lower() not in ("0", "false", "no",
                                                                            "off")


def _refuse_unless_allowed() -> None:
    if not training_allowed():
        raise RunError("training is switched off on this server (FER_ALLOW_TRAINING=0)")


def validate_name(name: str) -> str:
    """The name, stripped, if it is a safe folder name; otherwise a RunError saying why."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise RunError(f"run name {name!r} is not a safe folder name: use up to 64 letters, digits, "
                       "'.', '_' or '-', starting with a letter or digit")
    return name


def train_args(config: TrainConfig) -> list[str]:
    """The `python -m fer_core train` flags that reproduce `config` (without --out)."""
    c = config
    args = ["--data", c.data, "--arch", c.arch, "--epochs", str(c.epochs),
            "--batch-size", str(c.batch_size), "--optimizer", c.optimizer, "--lr", repr(c.lr),
            "--momentum", repr(c.momentum), "--weight-decay", repr(c.weight_decay),
            "--schedule", c.schedule, "--label-smoothing", repr(c.label_smoothing),
            "--shift", str(c.shift), "--rotate", repr(c.rotate), "--seed", str(c.seed),
            "--device", c.device, "--log-every", str(c.log_every)]
    if c.nesterov:
        args.append("--nesterov")
    if not c.flip:
        args.append("--no-flip")
    options = arch_options(c.arch, **c.arch_options)
    if "dropout" in options:
        args += ["--dropout", repr(options["dropout"])]
    if options.get("small_input") is False:
        args.append("--imagenet-stem")
    return args


def start_run(root: Path, name: str, config: TrainConfig) -> RunFolder:
    """Launch a new run into root/name; a busy or existing folder is refused, never overwritten."""
    _refuse_unless_allowed()
    name = validate_name(name)
    config.validate()
    if not is_builtin_spec(config.data):
        config.data = os.path.abspath(os.path.expanduser(config.data))
    folder = RunFolder(Path(root).expanduser().absolute() / name)
    _refuse_busy(folder)
    taken = RunError(f"a run named {name!r} already exists: choose another name (a stopped run "
                     "can be resumed from its panel)")
    if folder.path.exists() and any(folder.path.iterdir()):
        raise taken
    folder.path.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder.path / LAUNCH_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise taken from None
    _launch(folder, [*train_args(config), "--out", str(folder.path)],
            {"arch": config.arch, "data": config.data, "epochs": config.epochs})
    return folder


def can_resume(info: RunInfo) -> bool:
    """A stopped run, or one that failed after saving last.pt, continues where it was."""
    return info.state == "stopped" or (info.state == "failed" and (info.path / "last.pt").exists())


def resume_run(folder: RunFolder) -> None:
    """Relaunch a run with --resume; it continues from its last.pt. The checks and the launch
    hold launch.lock, and a launched run reads as 'starting', so a second click is refused."""
    _refuse_unless_allowed()
    folder = RunFolder(folder.path.expanduser().absolute())
    with _launch_lock(folder):
        _refuse_busy(folder)
        info = run_info(folder)
        if not can_resume(info):
            raise RunError(f"run {folder.name} is {info.state}: only a stopped run can be resumed")
        _launch(folder, ["--out", str(folder.path), "--resume"],
                {"arch": info.arch, "data": info.data, "epochs": info.epochs})


@contextmanager
def _launch_lock(folder: RunFolder):
    """Hold the folder's launch.lock (an flock: released if this process dies); refused at once
    when another tab holds it."""
    with open(folder.path / LAUNCH_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"run {folder.name} is being launched from another tab") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stop_run(folder: RunFolder) -> None:
    """Ask the trainer to stop after its current step; it saves last.pt and reports 'stopped'."""
    _refuse_unless_allowed()
    folder.request_stop()


def _refuse_busy(folder: RunFolder) -> None:
    """A trainer holding the folder's lock, or one launched here that has not taken it yet,
    owns the folder. (A trainer that has released the lock is only exiting.)"""
    if folder.is_locked() or run_info(folder).state == "starting":
        raise RunError(f"run folder {folder.path} is in use by a running trainer")


def _launch(folder: RunFolder, args: list[str], summary: dict) -> None:
    command = [sys.executable, "-m", "fer_core", "train", *args]
    with open(folder.path / LOG_FILE, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        child = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _children[child.pid] = child
    write_json_atomic(folder.path / LAUNCH_FILE,
                      {"pid": child.pid, "command": command, "started": time.time(), **summary})


def reap() -> None:
    """Collect the exit status of finished trainers this process started."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


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


# ---- reading run folders ----------------------------------------------------------------------

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
        has_checkpoint=folder.best_path.exists() or folder.last_path.exists())


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


def list_runs(root: Path) -> list[RunInfo]:
    """Every run under root (including those still starting), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [RunFolder(p) for p in root.iterdir() if p.is_dir()]
    infos = [run_info(f) for f in folders if f.exists() or (f.path / LAUNCH_FILE).exists()]
    return sorted(infos, key=lambda r: (r.started or 0, r.name), reverse=True)
