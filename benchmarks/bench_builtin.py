"""Time make_builtin_faces(10000): median of 3 runs after a warm-up, printed and saved to
benchmarks/results/builtin.json.

The baseline, in the same run: the same renderer called on one face at a time (--loop faces, the
parameters drawn beforehand and not timed), per face: what rendering faces in chunks saves.

    python benchmarks/bench_builtin.py [--n 10000] [--repeats 3] [--loop 200]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_core.data.builtin import VERSION, draw_face_params, make_builtin_faces, render_faces

RESULTS = Path(__file__).resolve().parent / "results" / "builtin.json"


def one_face_per_call(m: int) -> float:
    """Seconds per face of render_faces called on each of `m` faces alone."""
    _, params = draw_face_params(m, seed=0)
    start = time.perf_counter()
    for i in range(m):
        render_faces({k: v[i:i + 1] for k, v in params.items()}, seed=0)
    return (time.perf_counter() - start) / m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop", type=int, default=200, help="faces of the one-per-call baseline")
    args = parser.parse_args()

    make_builtin_faces(200, seed=0)
    seconds = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        make_builtin_faces(args.n, seed=seed)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    loop = one_face_per_call(args.loop)

    result = {
        "benchmark": "make_builtin_faces",
        "generator_version": VERSION,
        "n": args.n,
        "repeats": args.repeats,
        "seconds": [round(s, 4) for s in seconds],
        "median_seconds": round(median, 4),
        "faces_per_second": round(args.n / median),
        "loop_faces": args.loop,
        "loop_seconds_per_face": loop,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"make_builtin_faces({args.n}): median {median:.3f} s of {args.repeats} "
          f"({result['faces_per_second']:,} faces/s); runs {result['seconds']}; one face per "
          f"call: {1 / loop:,.0f} faces/s; saved {RESULTS}")


if __name__ == "__main__":
    main()
