"""`python -m fer_core data`: the detected layout of a dataset and its counts per split and
class. It imports no torch."""

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="builtin", help="FER2013 path, or 'builtin' (default)")


def run(args) -> int:
    from ..data.classes import CLASSES
    from ..data.readers import load_dataset

    dataset = load_dataset(args.data)
    print(f"data: {dataset.name}\nlayout: {dataset.layout}\nfaces: {len(dataset)}\n")
    counts = dataset.counts()
    columns = list(CLASSES)
    if any("unlabelled" in row for row in counts.values()):
        columns.append("unlabelled")
    print(f"{'split':<7}" + "".join(f"{c[:9]:>10}" for c in columns) + f"{'total':>10}")
    for split, row in counts.items():
        values = [row.get(c, 0) for c in columns]
        print(f"{split:<7}" + "".join(f"{v:>10d}" for v in values) + f"{sum(values):>10d}")
    return 0
