"""Run every benchmark, each as a fresh process, and tabulate each figure against its baseline.

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--readme] [--out DIR]
        [--args NAME=ARGS]...

--quick: a reduced set with small sizes on the built-in data (a few minutes on 2 cores). The
full set uses $FER2013_CSV and checkpoints/fer2013-cnn3 when FER2013_CSV is set, else built-in
data. Writes DIR/suite.json and DIR/suite.md (DIR: benchmarks/results); --readme also puts the
table between README.md's benchmark markers. Exits 1 when any benchmark failed.
"""

import argparse
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks import report
from benchmarks.runner import RESULTS, run_benchmark
from benchmarks.suite import CHROMIUM, FER2013_FACES, Context, select, write_builtin_csv

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = {"quick": 300, "full": 3600}
QUICK_CSV_FACES = 5000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced set, small sizes")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these benchmarks")
    parser.add_argument("--readme", action="store_true", help="also update README.md's table")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where suite.json/.md go")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments for one benchmark's script, e.g. trust='--faces 8'")
    return parser.parse_args()


def extra_args(pairs: list[str]) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, args = pair.partition("=")
        if not sep:
            raise SystemExit(f"--args takes NAME=ARGS, got {pair!r}")
        extra.setdefault(name, []).extend(shlex.split(args))
    return extra


def context(quick: bool, tmp: Path, needs_csv: bool) -> Context:
    """The mode's inputs: FER2013 in full mode when set, else (when a benchmark needs a CSV) a
    built-in Kaggle-format one written into `tmp`."""
    fer2013 = None if quick else os.environ.get("FER2013_CSV") or None
    csv = fer2013 or ""
    if not csv and needs_csv:
        n = QUICK_CSV_FACES if quick else FER2013_FACES
        csv = str(tmp / f"builtin-{n}-kaggle-format.csv")
        write_builtin_csv(Path(csv), n)
    return Context(quick=quick, fer2013=fer2013, csv=csv, browser=CHROMIUM.exists())


def main() -> None:
    start = time.perf_counter()
    args = parse_args()
    readme = ROOT / "README.md"
    if args.readme:
        report.check_markers(readme)
    benches, extra = select(args.only, args.quick), extra_args(args.args)
    mode = "quick" if args.quick else "full"
    fer2013 = not args.quick and os.environ.get("FER2013_CSV")
    command = shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]])
    suite = {"machine": report.machine(),
             "command": f"FER2013_CSV={shlex.quote(fer2013)} {command}" if fer2013 else command,
             "mode": mode, "started": datetime.now().isoformat(timespec="seconds"),
             "load_start": report.load_average()}
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        ctx = context(args.quick, Path(tmp), any(b.needs_csv for b in benches))
        suite["benchmarks"] = [run_benchmark(b, b.args(ctx) + extra.get(b.name, []),
                                             TIMEOUT_S[mode]) for b in benches]
    suite.update(ended=datetime.now().isoformat(timespec="seconds"),
                 load_end=report.load_average(), seconds=round(time.perf_counter() - start, 1))
    text = report.write(args.out, suite)
    if args.readme:
        report.update_readme(readme, text)
    failed = [r["name"] for r in suite["benchmarks"] if r["status"] != "ok"]
    print(f"\n{text}\nwrote {args.out / 'suite.json'} and suite.md; total {suite['seconds']} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
