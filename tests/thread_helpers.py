"""Several callers at once, as several tabs or threads of a server would call."""

import threading
from collections.abc import Callable


def run_at_once(*targets: Callable[[], object], timeout: float | None = None) -> None:
    """Run each target in a thread of its own, all started before any is joined."""
    threads = [threading.Thread(target=target) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
