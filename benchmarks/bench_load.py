"""Time loading the FER2013 CSV: a pandas baseline, our cold load, and our cached (warm) load.

    python benchmarks/bench_load.py [--csv PATH]

PATH defaults to $FER2013_CSV, else ../shared/data/fer2013/fer2013.csv.gz beside the repository.
The cold load runs against a fresh, empty FER_CACHE_DIR, so it parses and writes the cache entry
that the warm loads then read. Targets: cold <= 40% of the baseline, warm <= 0.5 s. Both of our
loads are checked to give exactly the baseline's labels and pixels. Figures are printed and saved
to benchmarks/results/load.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.data.readers import load_dataset

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
COLD_RATIO_TARGET = 0.40
WARM_TARGET_S = 0.5
WARM_REPEATS = 3


def pandas_baseline(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The usual notebook recipe: read_csv, then split and convert each row's pixel string."""
    frame = pd.read_csv(path)
    images = np.stack([np.array(s.split(), dtype=np.uint8) for s in frame["pixels"]])
    return images.reshape(-1, 1, 48, 48), frame["emotion"].to_numpy(dtype=np.int64)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=os.environ.get("FER2013_CSV", str(DEFAULT_CSV)))
    path = parser.parse_args().csv

    baseline_s, (images, labels) = timed(pandas_baseline, path)
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["FER_CACHE_DIR"] = cache_dir
        cold_s, cold = timed(load_dataset, path)
        warm = [timed(load_dataset, path) for _ in range(WARM_REPEATS)]
    identical = all(np.array_equal(ds.images, images) and np.array_equal(ds.labels, labels)
                    for ds in [cold] + [ds for _, ds in warm])
    warm_s = statistics.median(s for s, _ in warm)
    figures = {
        "csv": path,
        "rows": len(cold),
        "baseline_s": round(baseline_s, 3),
        "cold_s": round(cold_s, 3),
        "warm_median_s": round(warm_s, 3),
        "warm_runs_s": [round(s, 3) for s, _ in warm],
        "cold_over_baseline": round(cold_s / baseline_s, 3),
        "identical_to_baseline": identical,
        "meets_targets": cold_s / baseline_s <= COLD_RATIO_TARGET and warm_s <= WARM_TARGET_S,
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "pandas": pd.__version__, "cpus": os.cpu_count()},
    }
    print(f"{path}: {len(cold)} rows; identical to the pandas parse: {identical}")
    print(f"{'load':<38}{'seconds':>9}{'vs baseline':>13}")
    print(f"{'pandas baseline':<38}{baseline_s:>9.3f}{1:>13.2f}")
    print(f"{'fer_core cold (parse + cache write)':<38}{cold_s:>9.3f}{cold_s / baseline_s:>13.2f}")
    print(f"{f'fer_core warm (median of {WARM_REPEATS})':<38}{warm_s:>9.3f}"
          f"{warm_s / baseline_s:>13.2f}")
    print(f"targets: cold <= {COLD_RATIO_TARGET:.0%} of baseline, warm <= {WARM_TARGET_S} s: "
          f"{'met' if figures['meets_targets'] else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    if not identical:
        sys.exit("fer_core's arrays differ from the pandas baseline")


if __name__ == "__main__":
    main()
