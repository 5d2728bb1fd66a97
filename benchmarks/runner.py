"""Run one benchmark script as a fresh process and turn what it wrote into a record.

The scripts write fixed paths under benchmarks/results, so a benchmark's old JSON is deleted
before it runs: a failed run can never be read back as a stale success.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.suite import Benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STDERR_LINES = 20


def run_benchmark(bench: Benchmark, args: list[str], timeout: float) -> dict:
    """Run `bench` with `args`; its record: status ('ok', 'failed' or 'timeout'), exit code,
    seconds, rows, the script's raw JSON, and on failure the error and the end of stderr."""
    for stale in RESULTS.glob(bench.results):
        stale.unlink()
    command = [sys.executable, f"benchmarks/{bench.script}", *args]
    print(f"\n=== {bench.name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    code, timed_out, stderr = stream(command, bench.name, timeout)
    record = {"name": bench.name, "script": bench.script, "args": args, "exit_code": code,
              "seconds": round(time.perf_counter() - start, 1), "status": "ok", "rows": [],
              "raw": None}
    if timed_out:
        record.update(status="timeout", error=f"timed out after {timeout:.0f} s")
    elif code != 0:
        record.update(status="failed", error=f"exit code {code}")
    else:
        read_results(bench, record)
    if record["status"] != "ok":
        record["stderr_tail"] = stderr
        print(f"=== {bench.name} FAILED: {record['error']}\n" + "\n".join(stderr), flush=True)
    return record


def read_results(bench: Benchmark, record: dict) -> None:
    """Fill `record` with the JSON the script wrote and its rows, or mark it failed."""
    found = sorted(RESULTS.glob(bench.results))
    if len(found) != 1:
        record.update(status="failed", error=f"expected one {bench.results} in "
                                             f"benchmarks/results, found {len(found)}")
        return
    record["raw"] = json.loads(found[0].read_text())
    try:
        record["rows"] = bench.rows(record["raw"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        record.update(status="failed", error=f"unreadable result: {type(e).__name__} {e}")


def stream(command: list[str], name: str, timeout: float) -> tuple[int, bool, list[str]]:
    """Run `command` from the repository root, printing its stdout line by line as it comes;
    kill its process group after `timeout` seconds. Returns the exit code, whether it timed out,
    and the last lines of its stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True, start_new_session=True)
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), kill_group(proc)))
        timer.start()
        for line in proc.stdout:
            print(f"[{name}] {line}", end="", flush=True)
        code = proc.wait()
        timer.cancel()
        err.seek(0)
        tail = err.read().splitlines()[-STDERR_LINES:]
    return code, timed_out.is_set(), tail


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
