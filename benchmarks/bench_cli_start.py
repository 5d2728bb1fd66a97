"""Time `python -m fer_core data --data FILE` as whole processes, against a pandas baseline
process in the same run.

    python benchmarks/bench_cli_start.py [--csv PATH] [--repo DIR] [--repeats N]

PATH defaults to $FER2013_CSV, else ../shared/data/fer2013/fer2013.csv.gz beside the repository.
DIR is the source tree to time (default: this one; pass an exported older commit to compare).
Measured, each as a fresh process: the baseline (pandas.read_csv of the file and the usual
per-row pixel split), `data` cold (an empty FER_CACHE_DIR: it parses the file), `data` warm
(the cache entry the cold run wrote), and `import torch, torchvision` alone, the cost that `data`
no longer pays. Medians are printed and saved to benchmarks/results/cli_start.json.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
RESULTS = ROOT / "benchmarks" / "results" / "cli_start.json"
BASELINE = ("import sys, numpy as np, pandas as pd; f = pd.read_csv(sys.argv[1]); "
            "np.stack([np.array(s.split(), dtype=np.uint8) for s in f['pixels']])")


def seconds(command: list[str], cwd: Path, env: dict) -> float:
    """Wall time of one process, which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_seconds(command: list[str], cwd: Path, env: dict, repeats: int) -> float:
    return statistics.median(seconds(command, cwd, env) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=os.environ.get("FER2013_CSV") or str(DEFAULT_CSV))
    parser.add_argument("--repo", default=str(ROOT), help="source tree whose CLI is timed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repo, python = Path(args.repo).resolve(), sys.executable
    data = [python, "-m", "fer_core", "data", "--data", args.csv]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(repo), "FER_CACHE_DIR": cache}
        figures = {
            "baseline_pandas_s": median_seconds([python, "-c", BASELINE, args.csv], repo, env,
                                                args.repeats),
            "data_cold_s": seconds(data, repo, env),
            "data_warm_s": median_seconds(data, repo, env, args.repeats),
            "import_torch_torchvision_s": median_seconds(
                [python, "-c", "import torch, torchvision"], repo, env, args.repeats),
        }
    figures["cold_vs_baseline"] = figures["data_cold_s"] / figures["baseline_pandas_s"]
    report = {"csv": args.csv, "repo": str(repo), "repeats": args.repeats,
              "python": platform.python_version(), "cpus": os.cpu_count(), **figures}
    for key, value in figures.items():
        print(f"{key:28s} {value:8.2f}")
    if repo == ROOT:
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
