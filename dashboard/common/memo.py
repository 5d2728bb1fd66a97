"""Results kept in memory per process, shared by every tab: the predictions and last good
datasets of `common/state.py`, and the stores of the pages (`views/embeddings/store.py`,
`views/confusions/cell_maps.py`) over the disk caches.

Not an st.cache_* function: those replay the elements a call draws, such as a progress bar, on
every hit. The lock that guards the memory is never held while computing (a projection can take
minutes): each key being computed has its own lock, so two tabs asking for the same result
compute it once, and a tab asking for another is not kept waiting.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Memo(Generic[T]):
    """The newest `kept` results by key, each computed once."""

    def __init__(self, kept: int):
        self.kept = kept
        self._memory: OrderedDict[Hashable, T] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def has(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._memory

    def peek(self, key: Hashable) -> T | None:
        """The result kept for `key`, or None; it computes nothing and keeps the order."""
        with self._lock:
            return self._memory.get(key)

    def put(self, key: Hashable, result: T) -> None:
        """Keep `result` for `key` as the newest, in place of any kept before."""
        with self._lock:
            self._keep(key, result)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The result for `key`: from memory, else `compute()` (once, however many ask)."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:
            with self._lock:
                if key in self._memory:
                    return self._memory[key]
            result = compute()
            with self._lock:
                self._keep(key, result)
                self._computing.pop(key, None)
        return result

    def _keep(self, key: Hashable, result: T) -> None:
        """Store `result` as the newest and drop the oldest beyond `kept` (hold `_lock`)."""
        self._memory[key] = result
        self._memory.move_to_end(key)
        while len(self._memory) > self.kept:
            self._memory.popitem(last=False)
