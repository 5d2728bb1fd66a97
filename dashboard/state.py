"""Where things are, and the loaders every page shares.

Datasets, checkpoints and architecture tables are loaded once per process and shared by every
tab (bounded caches). Each cache key carries a file stamp (mtime, size), so a file that changes on
disk (a best.pt rewritten by a running trainer, a fixed CSV) is loaded again.
"""

import argparse
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

import streamlit as st
import torch

from fer_core.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint_path
from fer_core.device import choose_device, describe_device
from fer_core.errors import FerError
from fer_core.models import arch_options, build_model
from fer_core.predict import Predictions, ProgressCallback, cached_predict_split
from fer_core.readers import load_dataset
from fer_core.summary import summarize

BUILTIN = "builtin"


@dataclass(frozen=True)
class Selection:
    """The shared sidebar choice every page reads: the dataset spec and the checkpoint run."""

    data: str
    run: str | None


def startup_data_spec() -> str:
    """The dataset the app starts on: `--data` after `streamlit run dashboard/app.py --`, then
    FER_DATA, then the built-in faces."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--data")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.data or os.environ.get("FER_DATA") or BUILTIN


def selection() -> Selection:
    """The current sidebar choice (set by the sidebar on every run, before the page runs)."""
    return st.session_state["selection"]


def file_stamp(path: str | os.PathLike) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file or folder, or None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@st.cache_resource(max_entries=6, show_spinner="Loading faces...")
def _faces_or_error(spec: str, stamp: tuple | None):
    """The dataset for `spec`, or the reader's message; failures are cached too so a bad path
    is not re-read on every rerun (the stamp changes when the file does)."""
    try:
        return load_dataset(spec)
    except FerError as e:
        return str(e)


def load_faces(spec: str):
    """(dataset, None) or (None, the reader's error message)."""
    stamp = None if spec.startswith(BUILTIN) else file_stamp(spec)
    result = _faces_or_error(spec, stamp)
    return (None, result) if isinstance(result, str) else (result, None)


@st.cache_resource(max_entries=1, show_spinner=False)
def _device_choice() -> tuple[torch.device, str | None]:
    """The device (FER_DEVICE, else cuda, mps, cpu), and why it is not FER_DEVICE's when that
    names a device this machine lacks."""
    try:
        return choose_device(), None
    except FerError as e:
        fallback = choose_device("auto")
        return fallback, f"{e}; using {fallback.type} instead"


def device() -> torch.device:
    """The device the dashboard computes on."""
    return _device_choice()[0]


def device_problem() -> str | None:
    return _device_choice()[1]


@st.cache_resource(max_entries=1, show_spinner=False)
def device_text() -> str:
    return describe_device(device())


@st.cache_resource(max_entries=4, show_spinner="Loading checkpoint...")
def _checkpoint(path: str, stamp: tuple | None) -> Checkpoint:
    return load_checkpoint(path, device())


def checkpoint(run_path: str | os.PathLike) -> Checkpoint:
    """The run's best.pt (or last.pt), loaded once per version on disk; raises CheckpointError."""
    file = resolve_checkpoint_path(run_path)
    return _checkpoint(str(file), file_stamp(file))


@st.cache_data(max_entries=16, show_spinner=False)
def architecture_table(arch: str, options: dict) -> tuple[list[dict], int, int]:
    """Layer records, total and trainable parameters of `arch` for one 48x48 face.

    A fresh CPU model is summarized rather than a cached checkpoint's, since summarize() attaches
    hooks and a cached model is shared by every tab.
    """
    summary = summarize(build_model(arch, **arch_options(arch, **options)))
    return summary.as_records(), summary.total_params, summary.trainable_params


_PREDICTIONS: "OrderedDict[tuple, Predictions]" = OrderedDict()
_PREDICTIONS_LOCK = threading.Lock()
PREDICTIONS_KEPT = 8


def predictions(ckpt: Checkpoint, dataset, split: str,
                progress: ProgressCallback | None = None) -> Predictions:
    """Every face of `split` predicted by `ckpt`: from memory, else from the disk cache (keyed by
    the checkpoint file's content), else computed, reporting to `progress`.

    Not an st.cache_* function: those replay the elements a call creates, which would redraw the
    progress bar on every cache hit. The lock keeps two tabs from predicting the same split at
    once on the shared model.
    """
    key = (str(ckpt.path), file_stamp(ckpt.path), dataset.fingerprint, split)
    with _PREDICTIONS_LOCK:
        if key in _PREDICTIONS:
            _PREDICTIONS.move_to_end(key)
            return _PREDICTIONS[key]
        result = cached_predict_split(ckpt.model, ckpt.path, dataset, split, device(),
                                      progress=progress)
        _PREDICTIONS[key] = result
        while len(_PREDICTIONS) > PREDICTIONS_KEPT:
            _PREDICTIONS.popitem(last=False)
        return result


def predictions_ready(ckpt: Checkpoint, dataset, split: str) -> bool:
    """Whether `predictions` would answer from memory (no progress bar needed)."""
    return (str(ckpt.path), file_stamp(ckpt.path), dataset.fingerprint, split) in _PREDICTIONS
