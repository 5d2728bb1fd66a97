"""Results kept in memory per process, shared by every tab, within a stated budget: the datasets,
checkpoints and predictions of `common/state.py`, and the stores of the pages
(`views/embeddings/store.py`, `views/confusions/cell_maps.py`, `views/filters/jobs.py`) over the
disk caches.

Not an st.cache_* function: those replay the elements a call draws, such as a progress bar, on
every hit, and compute in the script thread, where any click in the tab stops the computation
halfway (Streamlit interrupts a script at its next element) and the rerun starts it again.

Here a result is computed in a thread of its own, once, however many tabs ask: each tab waiting
for it follows its progress, and a tab that reruns or closes while waiting leaves it running, so
the next to ask finds it done or further along. No lock is held while computing, so a tab asking
for another result (or one already kept) is never kept waiting.

Heavy computations (a split's predictions, its features and projection, a cell's mean map, a
layer's filter statistics, a trust report) take turns: at most `HEAVY_AT_ONCE` run at a time (one
on a 2-core machine). Each one already spreads over every core; side by side they only slow each
other and add up their memory: measured with 5 browser sessions on 2 cores, none of four such
computations had finished after 160 s, while one alone takes 11-95 s. Turns are served in order
of arrival (`Turns`); a long job nobody waits for (a trust report) passes its turn on between its
steps. A heavy computation still waiting for its turn when every tab that asked for it has gone
(for `ABANDONED_S`) is dropped.

What is kept is bounded in bytes (each store's `budget`, counted over the numpy arrays and
tensors a result holds) and let go when unused: a sweeper drops the results nobody asked for in
`IDLE_S` seconds. Memory freed then, and after each computation, is handed back to the operating
system (`heap.trim`).
"""

import contextlib
import dataclasses
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import numpy as np
import torch

from dashboard.common import heap

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, in all); in all is 0 until under way
MB = 1 << 20
IDLE_S = 120.0   # a result nobody asked for this long is let go
SWEEP_S = 15.0   # how often the sweeper looks
POLL_S = 0.1     # how often a waiting tab looks at the progress it follows
REDRAW_S = 0.5   # how often it draws that progress when it has not changed
ABANDONED_S = 5.0  # a queued computation nobody has waited for this long is dropped
HEAVY_AT_ONCE = max(1, (os.cpu_count() or 1) // 8)


class Turns:
    """At most `n` holders at a time, served in order of arrival."""

    def __init__(self, n: int):
        self.free, self._queue, self._changed = n, deque(), threading.Condition()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        self._take()
        try:
            yield
        finally:
            self._give()

    def pass_on(self) -> None:
        """Called while holding a turn: let those waiting go first, then take a turn again."""
        with self._changed:
            if not self._queue:
                return
        self._give()
        self._take()

    def _take(self) -> None:
        with self._changed:
            me = object()
            self._queue.append(me)
            self._changed.wait_for(lambda: self._queue[0] is me and self.free > 0)
            self._queue.popleft()
            self.free -= 1
            self._changed.notify_all()

    def _give(self) -> None:
        with self._changed:
            self.free += 1
            self._changed.notify_all()


HEAVY = Turns(HEAVY_AT_ONCE)


class Abandoned(Exception):
    """A heavy computation dropped before it started: every tab that asked for it has gone."""


def nbytes(value, depth: int = 5) -> int:
    """The bytes of the numpy arrays and tensors in `value`: itself, or its fields, items or
    attributes down to `depth` levels (what dominates every result kept here; the deepest is the
    influence index: index, stages, stage, gradients, arrays)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, torch.nn.Module):
        return sum(nbytes(t) for t in (*value.parameters(), *value.buffers()))
    if depth == 0 or isinstance(value, (str, bytes, int, float)):
        return 0
    if isinstance(value, dict):
        parts = value.values()
    elif isinstance(value, (list, tuple)):
        parts = value
    elif dataclasses.is_dataclass(value):
        parts = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        parts = getattr(value, "__dict__", {}).values()
    return sum(nbytes(part, depth - 1) for part in parts)


class Job:
    """One computation of a result, followed by every tab that asks for it meanwhile."""

    def __init__(self):
        self.done_count, self.total = 0, 0
        self.result = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._waiting, self._left = 0, time.monotonic()
        self._lock = threading.Lock()

    def report(self, done: int, total: int) -> None:
        self.done_count, self.total = done, total

    def abandoned(self) -> bool:
        """Whether nobody has waited for the result for ABANDONED_S."""
        with self._lock:
            return self._waiting == 0 and time.monotonic() - self._left > ABANDONED_S

    def wait(self, progress: Progress | None = None):
        """The result (raising the computation's error), passing the progress on to `progress`
        from the calling thread as it changes."""
        with self._lock:
            self._waiting += 1
        try:
            return self._follow(progress)
        finally:
            with self._lock:
                self._waiting -= 1
                self._left = time.monotonic()

    def _follow(self, progress: Progress | None):
        """Pass each change on, and the same again every REDRAW_S: a Streamlit script is only
        stopped (for a rerun, or when its tab closes) when it draws, so a tab whose computation
        waits for its turn must still draw now and then."""
        shown, drawn = None, 0.0
        while not self.finished.wait(POLL_S if progress else None):
            now, clock = (self.done_count, self.total), time.monotonic()
            if now != shown or clock - drawn >= REDRAW_S:
                progress(*now)
                shown, drawn = now, clock
        if self.error is not None:
            raise self.error
        return self.result


@dataclasses.dataclass
class _Kept:
    value: object
    size: int
    used: float


class Memo(Generic[T]):
    """Results by key within `budget` bytes (the least recently used go first; one result
    larger than the budget is returned but not kept), each computed once in its own thread;
    `heavy` computations take turns (see the module's docstring)."""

    def __init__(self, name: str, budget: int, *, heavy: bool = False, idle_s: float = IDLE_S):
        self.name, self.budget, self.heavy, self.idle_s = name, budget, heavy, idle_s
        self._memory: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._jobs: dict[Hashable, Job] = {}
        self._lock = threading.Lock()
        STORES.append(self)

    def has(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._memory

    def peek(self, key: Hashable) -> T | None:
        """The result kept for `key`, or None; it computes nothing and keeps the order."""
        with self._lock:
            kept = self._memory.get(key)
            return None if kept is None else kept.value

    def put(self, key: Hashable, result: T) -> None:
        """Keep `result` for `key` as the newest, in place of any kept before."""
        with self._lock:
            self._keep(key, result)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()

    def kept_bytes(self) -> int:
        with self._lock:
            return sum(kept.size for kept in self._memory.values())

    def running(self, key: Hashable) -> Job | None:
        """The computation of `key` in progress, or None."""
        with self._lock:
            return self._jobs.get(key)

    def get(self, key: Hashable, compute: Callable[[Progress], T],
            progress: Progress | None = None) -> T:
        """The result for `key`: from memory, else from the computation of it already running,
        else from `compute(report)` started now in a thread of its own. `progress` follows the
        computation's reports (`report(done, total)`) while this call waits."""
        with self._lock:
            if (kept := self._memory.get(key)) is not None:
                self._memory.move_to_end(key)
                kept.used = time.monotonic()
                return kept.value
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = Job()
                threading.Thread(target=self._compute, args=(key, job, compute), daemon=True,
                                 name=f"memo-{self.name}").start()
        return job.wait(progress)

    def release_idle(self, now: float) -> int:
        """Let go of the results unused for `idle_s`; the bytes let go."""
        with self._lock:
            idle = [key for key, kept in self._memory.items() if now - kept.used > self.idle_s]
            return sum(self._memory.pop(key).size for key in idle)

    def _compute(self, key: Hashable, job: Job, compute: Callable[[Progress], T]) -> None:
        """Compute in this thread (a heavy one in its turn), keep the result, wake the waiting
        tabs, then hand back what the computation freed (its tensors, its batches)."""
        try:
            with HEAVY.turn() if self.heavy else contextlib.nullcontext():
                if job.abandoned():
                    raise Abandoned(f"{self.name}: nobody waits for it any more")
                job.result = compute(job.report)
        except BaseException as e:  # noqa: BLE001 - raised again in every waiting tab
            job.error = e
        with self._lock:
            if job.error is None:
                self._keep(key, job.result)
            del self._jobs[key]  # a failed computation is tried again by the next to ask
        job.finished.set()
        heap.trim()

    def _keep(self, key: Hashable, result: T) -> None:
        """Store `result` as the newest and drop the oldest beyond the budget (hold `_lock`)."""
        self._memory.pop(key, None)
        size = nbytes(result)
        if size > self.budget:
            return
        self._memory[key] = _Kept(result, size, time.monotonic())
        total = sum(kept.size for kept in self._memory.values())
        while total > self.budget:
            total -= self._memory.popitem(last=False)[1].size


STORES: list[Memo] = []


def sweep(now: float | None = None) -> int:
    """Let go of every store's idle results and, when any went, hand the memory back; the
    bytes let go."""
    released = sum(store.release_idle(time.monotonic() if now is None else now)
                   for store in list(STORES))
    if released:
        heap.trim()
    return released


def _sweep_forever() -> None:
    while True:
        time.sleep(SWEEP_S)
        sweep()


threading.Thread(target=_sweep_forever, name="memo-sweeper", daemon=True).start()
