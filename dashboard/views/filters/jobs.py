"""Activation-maximization runs of the Filters page, each in a background thread on its own copy
of the model (`filters.maximize` copies it), so neither the page nor another tab waits; the
page polls the latest snapshot. One run per browser session: Run stops the previous one, so a
changed slider starts fresh at once.
"""

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from fer_core.explain.filter_stats import FilterStats, filter_stats
from fer_core.explain.filters import Settings, Snapshot, maximize

SNAPSHOT_EVERY = 4
FIRST_WAIT = 0.5  # seconds Run waits for the start image (a copy of the model and one forward)
KEY = "fi_job"
STATS: Memo[FilterStats] = Memo("filter statistics", budget=32 * MB, heavy=True)


@dataclass
class FilterJob:
    """A run: what it climbs, its latest snapshot, each snapshot's step and activations (for the
    activation-versus-step chart), and how it ended."""

    layer: str
    filters: list[int]
    settings: Settings
    source: tuple  # the checkpoint version and dataset it belongs to (see `source_of`)
    latest: Snapshot | None = None
    steps: list[int] = field(default_factory=list)
    activations: list[np.ndarray] = field(default_factory=list)
    error: str | None = None
    drawn: tuple | None = None  # the page's last picture of it: (what it shows, PNG bytes)
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    first: threading.Event = field(default_factory=threading.Event)  # the start image is in

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def follow(self, snapshots) -> None:
        try:
            for snap in snapshots:
                self.activations.append(snap.activations)  # before steps: the chart pairs them
                self.steps.append(snap.step)
                self.latest = snap
                self.first.set()
        except Exception as e:  # noqa: BLE001 - shown on the page, never a traceback
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.first.set()
            self.done.set()


def source_of(ckpt, dataset) -> tuple:
    """What a run's results belong to: the checkpoint file's version and the dataset."""
    return memo_key(ckpt, dataset)


def current(ckpt, dataset) -> FilterJob | None:
    """This session's run, unless it was made with another checkpoint or dataset than the ones
    chosen now (then it is stopped and forgotten: its images and the new model's faces would
    not belong together)."""
    job = st.session_state.get(KEY)
    if job is not None and job.source != source_of(ckpt, dataset):
        job.stop.set()
        del st.session_state[KEY]
        return None
    return job


def start(ckpt, dataset, layer: str, filters: list[int], settings: Settings,
          face=None) -> FilterJob:
    """Stop this session's run, if any, and start a new one."""
    stop_current()
    job = FilterJob(layer=layer, filters=filters, settings=settings,
                    source=source_of(ckpt, dataset))
    snapshots = maximize(ckpt.model, ckpt.arch, ckpt.arch_options, layer, filters, settings,
                         face=face, every=SNAPSHOT_EVERY, stop=job.stop, task=ckpt.task)
    threading.Thread(target=job.follow, args=(snapshots,), name="filters", daemon=True).start()
    st.session_state[KEY] = job
    job.first.wait(FIRST_WAIT)  # so this very rerun shows the fresh start, not "Starting..."
    return job


def stop_current() -> None:
    job = st.session_state.get(KEY)
    if job is not None:
        job.stop.set()


def real_face_stats(ckpt, dataset, split: str, layer: str, k: int,
                    progress=None) -> FilterStats:
    """The layer's per-filter statistics over `split`: from memory, else the disk cache, else
    computed in a thread of its own (`memo`), so the page's polling reruns never restart it."""
    return STATS.get(stats_key(ckpt, dataset, split, layer, k), lambda report: filter_stats(
        ckpt.model, ckpt.path, dataset, split, layer, k=k, progress=report), progress)


def stats_kept(ckpt, dataset, split: str, layer: str, k: int) -> bool:
    """Whether `real_face_stats` has these statistics in memory (it returns them at once)."""
    return STATS.has(stats_key(ckpt, dataset, split, layer, k))


def stats_key(ckpt, dataset, split: str, layer: str, k: int) -> tuple:
    return *source_of(ckpt, dataset), split, layer, k
