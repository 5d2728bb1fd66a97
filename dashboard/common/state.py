"""Where things are, and the loaders every page shares.

Datasets, checkpoints, predictions and architecture tables are loaded once per process and shared
by every tab (`memo.Memo` stores, bounded in bytes and let go when unused). Each key
carries a stamp of what is on disk (`keys.memo_key`: a file's size and mtime; for an image
folder, its images' names, sizes and mtimes), so data that changes on disk (a best.pt rewritten by a running trainer,
a fixed CSV, a replaced image) is loaded again.

What the caches share is read-only: dataset arrays cannot be written and model parameters take
no gradient, so no page can change what another tab sees. A dataset that can no longer be read
(deleted, or replaced by something unreadable) keeps showing its last good copy, with the
reader's message.
"""

import argparse
import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

import streamlit as st
import torch

from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from dashboard.common.paths import run_path
from dashboard.common.progress import on_bar
from fer_core.data.dataset import FaceDataset
from fer_core.data.matching import for_model
from fer_core.data.readers import load_dataset, source_stamp
from fer_core.data.task import Task
from fer_core.data.tree import memory_budget
from fer_core.device import choose_device, describe_device
from fer_core.errors import FerError
from fer_core.evaluation.predict import Predictions, ProgressCallback, cached_predict_split
from fer_core.models.architectures import arch_options, build_model
from fer_core.models.checkpoint import (
    Checkpoint,
    load_checkpoint,
    resolve_checkpoint_path,
)
from fer_core.models.imported import layers_problem
from fer_core.models.layer_table import summarize

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


# A dataset may be as large as the reader lets it be (the memory budget: half the machine, or
# FER_MEMORY_BUDGET): one copy of each, shared by every tab, let go when no tab has asked for it
# in memo.IDLE_S. LAST_GOOD holds the same objects as FACES, so it costs no memory of its own.
def _dataset_budget() -> int:
    try:
        return max(384 * MB, memory_budget())
    except FerError:  # a malformed FER_MEMORY_BUDGET: the reader says so for each dataset
        return 384 * MB


FACES: Memo[FaceDataset | str] = Memo("faces", budget=_dataset_budget())
LAST_GOOD: Memo[FaceDataset] = Memo("last good faces", budget=FACES.budget)  # by spec
STAMP_S = 10.0  # a dataset's stamp is looked up again after this long (a tree's lists its files)
_STAMPS: dict[str, tuple[float, tuple | None]] = {}
_STAMPS_LOCK = threading.Lock()


def data_stamp(spec: str) -> tuple | None:
    """`source_stamp(spec)`; a folder's looked up at most once every STAMP_S seconds: a
    15,000-image tree's stamp lists every file (0.2-0.4 s here), and every rerun of every tab
    asks for it. A changed tree is read again within STAMP_S; a file's stamp (one stat) is
    always fresh."""
    now = time.monotonic()
    with _STAMPS_LOCK:
        seen = _STAMPS.get(spec)
    if seen is not None and now - seen[0] < STAMP_S and _is_folder_stamp(seen[1]):
        return seen[1]
    stamp = source_stamp(spec)
    with _STAMPS_LOCK:
        _STAMPS[spec] = (now, stamp)
    return stamp


def _is_folder_stamp(stamp: tuple | None) -> bool:
    return stamp is not None and stamp[0] == "folder"


def _faces_or_error(spec: str) -> FaceDataset | str:
    """The dataset for `spec` (read-only), or the reader's message; failures are kept too so a
    bad path is not re-read on every rerun (the key's stamp changes when the data does)."""
    try:
        return load_dataset(spec).read_only()
    except FerError as e:
        return str(e)


def load_faces(spec: str) -> tuple[FaceDataset | None, str | None]:
    """(dataset, problem): (dataset, None) when `spec` loads; when it cannot be read any more,
    (its last good copy, the reader's message); (None, the message) when it never loaded."""
    key = (spec, data_stamp(spec))
    with contextlib.nullcontext() if FACES.has(key) else st.spinner("Loading faces..."):
        result = FACES.get(key, lambda report: _faces_or_error(spec))
    if isinstance(result, str):
        return LAST_GOOD.peek(spec), result
    LAST_GOOD.put(spec, result)
    return result, None


def page_faces(spec: str) -> FaceDataset:
    """The dataset a page shows: with a warning when it is the last good copy of data that can
    no longer be read; the page stops with the message when there is none."""
    dataset, problem = load_faces(spec)
    if dataset is None:
        st.error(problem, icon=":material/error:")
        st.stop()
    if problem:
        st.warning(f"Showing the faces loaded earlier: {problem}", icon=":material/warning:")
    return dataset


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


CHECKPOINTS: Memo[Checkpoint] = Memo("checkpoints", budget=192 * MB)  # resnet18: 45 MB


def checkpoint(run_path: str | os.PathLike) -> Checkpoint:
    """The run's best.pt (or last.pt), loaded once per version on disk, its parameters frozen
    (pages take gradients with respect to the input); raises CheckpointError."""
    file = resolve_checkpoint_path(run_path)
    on = device()

    def load(report) -> Checkpoint:
        ckpt = load_checkpoint(file, on)
        ckpt.model.requires_grad_(False)
        return ckpt

    return CHECKPOINTS.get(memo_key(file, str(on)), load)


def checkpoint_problem(run: str) -> str | None:
    """Why the run's checkpoint cannot be loaded (the loader's one line), or None; one that
    loads stays in memory for the pages."""
    try:
        checkpoint(run_path(run))
    except FerError as e:
        return str(e)
    return None


@st.cache_data(max_entries=16, show_spinner=False)
def architecture_table(arch: str, options: dict, task: Task) -> tuple[list[dict], int, int]:
    """Layer records, total and trainable parameters of `arch` built for `task`, for one face of
    the task's size.

    A fresh CPU model is summarized rather than a cached checkpoint's, since summarize() attaches
    hooks and a cached model is shared by every tab.
    """
    summary = summarize(build_model(arch, task, **arch_options(arch, **options)), task)
    return summary.as_records(), summary.total_params, summary.trainable_params


# a FER2013 training split's predictions take 1 MB
PREDICTIONS: Memo[Predictions] = Memo("predictions", budget=128 * MB, heavy=True)


def predictions(ckpt: Checkpoint, dataset, split: str,
                progress: ProgressCallback | None = None) -> Predictions:
    """Every face of `split` predicted by `ckpt`: from memory, else from the disk cache (keyed by
    the checkpoint file's content), else computed (see `memo`: once, however many tabs ask,
    and never halfway), reporting to `progress` while this call waits."""
    on = device()
    return PREDICTIONS.get(memo_key(ckpt, dataset, split), lambda report: (
        cached_predict_split(ckpt.model, ckpt.path, dataset, split, on, progress=report)),
        progress)


def predictions_ready(ckpt: Checkpoint, dataset, split: str) -> bool:
    """Whether `predictions` would answer from memory (no progress bar needed)."""
    return PREDICTIONS.has(memo_key(ckpt, dataset, split))


def shown_predictions(ckpt: Checkpoint, dataset, split: str) -> Predictions:
    """Predictions of the split, with a progress bar while they are computed (by this tab or
    another)."""
    if predictions_ready(ckpt, dataset, split):
        return predictions(ckpt, dataset, split)
    n = len(dataset.indices(split))
    bar = st.progress(0.0, text=f"Predicting {n:,} {split} faces on {device().type}...")
    result = predictions(ckpt, dataset, split, progress=on_bar(
        bar, lambda done, total: f"Predicting {split} faces: {done:,} of {total:,}"))
    bar.empty()
    return result


def page_checkpoint(run: str | None) -> Checkpoint | None:
    """The chosen run's checkpoint for a page that scores faces, or None after showing why
    there is none (no run, an unreadable file, a model whose layers cannot be watched)."""
    if run is None:
        st.info("No checkpoint yet: train one on the Training page.", icon=":material/info:")
        return None
    try:
        ckpt = checkpoint(run_path(run))
    except FerError as e:
        st.error(str(e), icon=":material/error:")
        return None
    if problem := layers_problem(ckpt.model):
        st.error(f"{run} is {problem}, and this page needs them. `python -m fer_core evaluate "
                 f"--checkpoint {run_path(run)}` scores it, and `explain` maps its faces with "
                 f"the input-gradient methods.", icon=":material/error:")
        return None
    return ckpt


ADAPTED: Memo[FaceDataset] = Memo("faces for a model", budget=FACES.budget)


def model_faces(dataset: FaceDataset, task: Task) -> FaceDataset:
    """`dataset` as a model of `task` sees it (`matching.for_model`: classes matched by name,
    faces converted to its size and channels), made once per dataset and task and shared by
    every tab and page; the dataset itself when the tasks are the same. Raises FerError when
    they share no class."""
    if dataset.task == task:
        return dataset
    key = (dataset.fingerprint, task)
    with contextlib.nullcontext() if ADAPTED.has(key) else st.spinner("Mapping the faces..."):
        return ADAPTED.get(key, lambda report: for_model(dataset, task).read_only())


def page_model_faces(run: str, ckpt: Checkpoint, dataset: FaceDataset) -> FaceDataset | None:
    """The faces a page scores with `ckpt`: the dataset, or the dataset mapped to the model's
    task with one note saying how; None after saying why it cannot be (no shared class)."""
    try:
        faces = model_faces(dataset, ckpt.task)
    except FerError as e:
        st.error(f"{run} cannot score these faces: {e}.", icon=":material/error:")
        return None
    if faces is not dataset:
        done = "; ".join(faces.notes[len(dataset.notes):])
        st.info(f"**{run}** is a model of {ckpt.task.named()}, and the dataset holds "
                f"{dataset.task.named()}. Shown as the model sees the data: {done}.",
                icon=":material/swap_horiz:")
    return faces


def scoring_page(title: str) -> tuple[Selection, FaceDataset, Checkpoint] | None:
    """The opening of a page that scores faces: the sidebar's choice, its dataset as the
    checkpoint sees it (`page_model_faces`; the page stops with the reader's message when there
    is no dataset), the title, and the checkpoint; None after saying why there is no usable
    checkpoint."""
    choice = selection()
    dataset = page_faces(choice.data)
    st.title(title)
    ckpt = page_checkpoint(choice.run)
    if ckpt is None:
        return None
    faces = page_model_faces(choice.run, ckpt, dataset)
    return None if faces is None else (choice, faces, ckpt)
