"""Time make_builtin_faces(10000): median of 3 runs after a warm-up, printed and saved to
benchmarks/results/builtin.json.

    python benchmarks/bench_builtin.py [--n 10000] [--repeats 3]
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
from fer_core.builtin import VERSION, make_builtin_faces  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "builtin.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    make_builtin_faces(200, seed=0)
    seconds = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        make_builtin_faces(args.n, seed=seed)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)

    result = {
        "benchmark": "make_builtin_faces",
        "generator_version": VERSION,
        "n": args.n,
        "repeats": args.repeats,
        "seconds": [round(s, 4) for s in seconds],
        "median_seconds": round(median, 4),
        "faces_per_second": round(args.n / median),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"make_builtin_faces({args.n}): median {median:.3f} s of {args.repeats} "
          f"({result['faces_per_second']:,} faces/s); runs {result['seconds']}; saved {RESULTS}")


if __name__ == "__main__":
    main()
