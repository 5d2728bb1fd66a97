"""`python -m fer_core data`: the detected layout and task of a dataset, what reading it did
(files skipped, images resized), and its counts per split and class. It imports no torch for a
CSV or the built-in faces (a class-folder tree is decoded with torchvision)."""

import argparse
import sys

from .data_options import add_read_arguments, read_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="builtin",
                   help="FER2013 CSV, class-folder tree, or 'builtin' (default)")
    add_read_arguments(p)


def run(args) -> int:
    from ..data.readers import load_dataset

    dataset = load_dataset(args.data, options=read_options(args),
                           report=lambda line: print(line, file=sys.stderr))
    print(f"data: {dataset.name}\nlayout: {dataset.layout}\ntask: {dataset.task.describe()}\n"
          f"faces: {len(dataset)}")
    for note in dataset.notes:
        print(f"note: {note}")
    print()
    counts = dataset.counts()
    columns = list(dataset.task.classes)
    if any("unlabelled" in row for row in counts.values()):
        columns.append("unlabelled")
    print(f"{'split':<7}" + "".join(f"{c[:9]:>10}" for c in columns) + f"{'total':>10}")
    for split, row in counts.items():
        values = [row.get(c, 0) for c in columns]
        print(f"{split:<7}" + "".join(f"{v:>10d}" for v in values) + f"{sum(values):>10d}")
    return 0
