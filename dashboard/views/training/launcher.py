"""Start, stop and resume trainer processes (what the runs' folders say is `common.runs`).

A run trains in its own process (`python -m fer_core train`, or torchrun with one process per GPU
when several are asked for), never in Streamlit's script thread.
The dashboard adds three files to the folders of the runs it starts: launch.json (pid, command,
start time), created exclusively so that two clicks cannot start two trainers under one name;
launch.lock, held while a resume checks the folder and launches, so that two tabs clicking Resume
at once start one trainer; and train.log (the trainer's output), whose last line is the error
when the process dies before it writes status.json.

Paths are made absolute before launching: the trainer runs from CODE_ROOT (the folder holding
fer_core), which need not be the dashboard's working directory. FER_ALLOW_TRAINING=0 turns
launching and stopping off (a shared deployment where visitors only look).
"""

import fcntl
import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from dashboard.common.paths import CODE_ROOT
from dashboard.common.runs import CHILDREN, LAUNCH_FILE, LOG_FILE, RunInfo, run_info
from fer_core.atomic import write_json
from fer_core.data.readers import is_builtin_spec
from fer_core.errors import RunError
from fer_core.training.config import TrainConfig, train_args
from fer_core.training.preflight import load_init
from fer_core.training.runs import RunFolder, read_json

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LAUNCH_LOCK = "launch.lock"


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
        raise RunError(f"run name {name!r} is not a safe folder name: use up to 64 letters, "
                       "digits, '.', '_' or '-', starting with a letter or digit")
    return name


def start_run(root: Path, name: str, config: TrainConfig, gpus: int = 1) -> RunFolder:
    """Launch a new run into root/name (on `gpus` GPUs under torchrun when more than one); a busy
    or existing folder is refused, never overwritten."""
    _refuse_unless_allowed()
    name = validate_name(name)
    config.validate()
    _check_gpus(config, gpus)
    if not is_builtin_spec(config.data):
        config.data = os.path.abspath(os.path.expanduser(config.data))
    if config.init:
        config.init = os.path.abspath(os.path.expanduser(config.init.strip()))
        load_init(config)  # unusable: said under the form, not a failed run
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
            {"arch": config.arch, "data": config.data, "epochs": config.epochs, "gpus": gpus})
    return folder


def _check_gpus(config: TrainConfig, gpus: int) -> None:
    if gpus == 1:
        return
    if config.device not in ("auto", "cuda"):
        raise RunError(f"training on {gpus} GPUs needs the cuda device, not {config.device}")
    if config.batch_size % gpus:
        raise RunError(f"a batch of {config.batch_size} faces does not divide among {gpus} "
                       f"GPUs: choose a multiple of {gpus}")


def train_command(args: list[str], gpus: int = 1) -> list[str]:
    """The trainer's command line: one process, or torchrun with one process per GPU."""
    if gpus == 1:
        return [sys.executable, "-m", "fer_core", "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={gpus}", "-m", "fer_core", "train", *args]


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
        gpus = (read_json(folder.path / LAUNCH_FILE) or {}).get("gpus", 1)
        _launch(folder, ["--out", str(folder.path), "--resume"],
                {"arch": info.arch, "data": info.data, "epochs": info.epochs, "gpus": gpus})


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
    command = train_command(args, summary["gpus"])
    with open(folder.path / LOG_FILE, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        child = subprocess.Popen(command, cwd=CODE_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    CHILDREN[child.pid] = child
    write_json(folder.path / LAUNCH_FILE,
                      {"pid": child.pid, "command": command, "started": time.time(), **summary})
