"""Trust reports for the Saliency page, computed in a background thread (minutes on a CPU: never
in the script thread), one job per (checkpoint version, dataset, split, probe size) for the
whole server, so two tabs asking for the same report share one run; it takes its turn with the
other heavy computations (`memo.HEAVY`), passing it on between its steps. Finished reports live
in the disk cache (`fer_core.explain.trust`), where the `trust` command's land too.
"""

import threading
from dataclasses import dataclass, field

from dashboard.common.memo import HEAVY
from fer_core.cache import cache_dir
from fer_core.explain.trust import cached_trust_report, report_key, stored_report


@dataclass
class Job:
    """A running or finished report: its progress (fraction, text), then the report or the
    error's message."""

    fraction: float = 0.0
    text: str = "starting"
    report: object = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def step(self, fraction: float, text: str) -> None:
        """A step of the report is done: say so, and let any computation a tab waits for go
        first (the report is waited for by nobody: it fills in when ready)."""
        self.fraction, self.text = fraction, text
        HEAVY.pass_on()


_JOBS: dict[str, Job] = {}
_FOUND: dict = {}  # reports read from disk, by cache folder and key
_LOCK = threading.Lock()


def key(ckpt, dataset, split: str, n: int) -> str:
    return report_key(ckpt.path, dataset, split, n)


def report(ckpt, dataset, split: str, n: int):
    """The finished report (from memory or disk), or None. A report found on disk is kept in
    memory: a key names one checkpoint content, dataset and probe, so it never changes."""
    name = key(ckpt, dataset, split, n)
    job = _JOBS.get(name)
    if job is not None and job.report is not None:
        return job.report
    found = (str(cache_dir()), name)  # another FER_CACHE_DIR holds other entries
    if found not in _FOUND and (stored := stored_report(name)) is not None:
        _FOUND[found] = stored
    return _FOUND.get(found)


def running(ckpt, dataset, split: str, n: int) -> Job | None:
    """The job for this report while it runs, or when it failed (to show why)."""
    job = _JOBS.get(key(ckpt, dataset, split, n))
    return job if job is not None and job.report is None else None


def start(ckpt, dataset, split: str, n: int) -> Job:
    """Start the report in a daemon thread unless one is running for the same key. It works on
    its own copies of the model (trust_report deep-copies), so no tab waits on it."""
    with _LOCK:
        name = key(ckpt, dataset, split, n)
        job = _JOBS.get(name)
        if job is not None and job.error is None:
            return job
        job = _JOBS[name] = Job()

    def work() -> None:
        job.text = "waiting for another computation to finish"
        try:
            with HEAVY.turn():
                job.report = cached_trust_report(ckpt.model, ckpt.path, ckpt.arch,
                                                 ckpt.arch_options, dataset, split,
                                                 n, progress=job.step, task=ckpt.task)
        except Exception as e:  # noqa: BLE001 - shown on the page, never a traceback
            job.error = f"{type(e).__name__}: {e}"
        finally:
            job.done.set()

    threading.Thread(target=work, name=f"trust-{name[:14]}", daemon=True).start()
    return job
