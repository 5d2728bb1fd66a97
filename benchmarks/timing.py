"""Timing helpers the benchmarks share: wall seconds of some work on a device (waiting for a GPU
to finish, since its calls return before the work is done), the bare-forward baseline, and the
JSON each benchmark leaves in benchmarks/results (where `python -m benchmarks` reads it)."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(work: Callable[[], object], device: torch.device | None = None) -> float:
    """Wall seconds `work()` takes, the device's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def bare_forward_seconds(model: torch.nn.Module, batches: list[torch.Tensor],
                         device: torch.device) -> float:
    """Seconds for `model(x)` over ready float batches: the floor of any inference path."""
    return seconds(lambda: [model(x) for x in batches], device)


FLOOR_SCRIPT = "import streamlit as st\nst.write('floor')\n"


def apptest_floor_ms(repeats: int) -> list[float]:
    """Milliseconds of AppTest reruns of a script of one st.write (after one warm-up run): the
    framework's own cost of any script run, the floor under every page render."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(FLOOR_SCRIPT)
    at.run()
    return [1e3 * seconds(at.run) for _ in range(repeats)]


def save_results(name: str, data: dict) -> Path:
    """Write `data` to benchmarks/results/`name` and say so."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"saved {out.relative_to(RESULTS.parent.parent)}")
    return out
