"""Faults in the disk cache: an entry cut short or damaged is computed again with a note (never a
crash), an entry whose writer was killed (kill -9) halfway is never read, and what such a writer
leaves behind is removed by the next write."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from fer_core import cache
from fer_core.cli.main import one_line_warning

ROOT = Path(__file__).resolve().parents[1]


def compute_counting(calls: list):
    def compute():
        calls.append(1)
        return {"values": np.arange(1000, dtype=np.float32)}
    return compute


def entry_path(key: str) -> Path:
    return cache.cache_dir() / f"{key}.npz"


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_an_entry_cut_short_is_computed_again_with_a_note(keep):
    calls, key = [], f"faults-cut-{keep}"
    cache.load_or_compute(key, ("values",), compute_counting(calls))
    data = entry_path(key).read_bytes()
    entry_path(key).write_bytes(data[:int(len(data) * keep)])
    before = cache.damage_notes()
    with pytest.warns(cache.DamagedEntry, match=f"{key}.npz could not be read"):
        again = cache.load_or_compute(key, ("values",), compute_counting(calls))
    assert len(calls) == 2 and np.array_equal(again["values"], np.arange(1000))
    assert len(cache.damage_notes(before[-1][0] if before else 0)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # written anew: read with no note
        assert cache.load_or_compute(key, ("values",), compute_counting(calls)) is not None
    assert len(calls) == 2


def test_a_missing_entry_or_one_of_another_format_is_a_plain_miss():
    cache.save_arrays("faults-format", {"old": np.zeros(3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load_arrays("faults-none") is None
        assert cache.load_arrays("faults-format", ("new",)) is None


WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from fer_core import cache

    real_fsync = os.fsync
    def slow_disk(fd):  # the new file is written; the writer is killed before it is renamed
        print("written", flush=True)
        time.sleep(60)
    os.fsync = slow_disk
    cache.load_or_compute(sys.argv[1], ("values",),
                          lambda: {"values": np.ones(1_000_000, np.float32)})
""")


def test_an_entry_whose_writer_is_killed_halfway_is_never_read():
    key = "faults-killed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, key], stdout=subprocess.PIPE,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    left = list(cache.cache_dir().glob(f".{key}.npz.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size > 4_000_000  # the whole new file, unread
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load_arrays(key) is None
    calls = []
    cache.load_or_compute(key, ("values",), compute_counting(calls))
    assert calls == [1] and not left[0].exists()  # the next write removed it


def test_the_cli_prints_a_warning_as_one_line():
    line = one_line_warning(cache.DamagedEntry("the cache file x.npz could not be\nread"),
                            cache.DamagedEntry, "cache.py", 1)
    assert line == "warning: the cache file x.npz could not be read\n"
