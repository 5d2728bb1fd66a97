"""Handing freed memory back to the operating system.

glibc's malloc keeps what a process frees in its arenas (one per thread that allocates, up to
8 per core) for reuse, so a server whose threads once held a split's tensors keeps that much
resident after letting it go: measured here, 1.1-1.8 GB after the browser sessions closed.
`malloc_trim(0)` returns the free pages of every arena. Elsewhere (macOS, musl, Windows) this is a
no-op: those allocators return memory on their own terms.
"""

import ctypes
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up among the symbols the process has loaded (not through
    ctypes.util.find_library, which runs ldconfig in a subprocess)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> bool:
    """Return freed heap memory to the system; whether this allocator can."""
    function = _malloc_trim()
    if function is None:
        return False
    function(0)
    return True
