"""`python -m fer_core visualize`: activation maximization of some filters of one layer, as a
grid PNG (each filter's image and its final activation), and JSON with the best real face's
activation beside each.

Everything is checked before any work: a bad layer or filter gives one line naming what exists,
and no output file appears."""

import argparse

from ..errors import FerError
from ..explain.settings import PARAMETERIZATIONS
from .common import checkpoint_data, output_paths, png_bytes, write_all
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--layer", required=True, help="a layer name (see the Model page or an "
                                                  "error message for the list)")
    p.add_argument("--filters", required=True, help="e.g. 0-15 or 3,7,9")
    p.add_argument("--steps", type=int, default=128, help="default 128")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--parameterization", choices=PARAMETERIZATIONS, default="pixels",
                   help="the image as pixels, or as a Fourier spectrum scaled by 1/frequency "
                        "(default pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="whose val split gives the best real faces "
                                                "(default: the checkpoint's training data)")
    add_read_arguments(p)
    p.add_argument("--out", required=True, help="PNG file: the grid")
    p.add_argument("--json", default=None, help="also write each filter's activations here")
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..device import choose_device
    from ..explain.filter_stats import filter_stats
    from ..explain.filters import Settings, channel_count, parse_filters, visualize
    from ..models.checkpoint import load_checkpoint

    outputs = output_paths(args)
    settings = Settings(steps=args.steps, lr=args.lr, param=args.parameterization, seed=args.seed)
    settings.check()
    ckpt = load_checkpoint(args.checkpoint, choose_device(args.device))
    options, task = ckpt.arch_options, ckpt.task
    filters = parse_filters(args.filters, channel_count(ckpt.arch, options, task, args.layer))
    data, dataset = checkpoint_data(args, ckpt)
    if "val" not in dataset.present_splits():
        raise FerError(f"{data} has no val split to compare with")
    result = visualize(ckpt.model, ckpt.arch, options, args.layer, filters, settings, task=task)
    stats = filter_stats(ckpt.model, ckpt.path, dataset, "val", args.layer, k=1)
    report = {"layer": args.layer, "steps": args.steps, "filters": [
        {"filter": f, "activation": float(a), "max_real_activation": float(stats.max_activation[f])}
        for f, a in zip(filters, result.activations)]}
    for row in report["filters"]:
        print(f"filter {row['filter']:>4}: {row['activation']:9.3f}  (best real face "
              f"{row['max_real_activation']:.3f})")
    write_all(outputs, png_bytes(grid(result, filters)), report)
    print(f"wrote {outputs[0]}" + (f" and {outputs[1]}" if outputs[1] else ""))
    return 0


def grid(result, filters):
    """The images (in colour for a colour model), 8 a row, each captioned with its filter and
    final activation."""
    from ..data.pictures import pictures
    from ..explain.contact_sheet import gallery_grid

    captions = [(f"filter {f}", f"{a:.2f}") for f, a in zip(filters, result.activations)]
    return gallery_grid(pictures(result.images), captions, columns=min(8, len(filters)), scale=2)
