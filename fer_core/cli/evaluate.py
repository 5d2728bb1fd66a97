"""`python -m fer_core evaluate`: accuracy, per-class metrics, the confusion matrix and the most
confused pairs of a checkpoint on one split (optionally with test-time augmentation), as text and
JSON."""

import argparse
from pathlib import Path

from .common import add_split_argument, split_data, warn_if_other_data
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", default=None, help="FER2013 CSV, class-folder tree or 'builtin' "
                                                "(default: the checkpoint's training data); "
                                                "classes are matched to the model's by name")
    add_read_arguments(p)
    add_split_argument(p)
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--tta", action="store_true",
                   help="also report test-time augmentation (flip and 2-pixel shifts, "
                        "probabilities averaged)")
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..atomic import write_json
    from ..device import choose_device
    from ..evaluation.report import evaluate_split, format_report
    from ..models.checkpoint import load_checkpoint

    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    data, dataset = split_data(args, ckpt)
    warn_if_other_data(ckpt, dataset)
    metrics = evaluate_split(ckpt.model, dataset, args.split, device)
    print(f"checkpoint {ckpt.path} ({ckpt.arch}, epoch {ckpt.meta.get('epoch')}) "
          f"on {data}, split {args.split}")
    print(f"task: {ckpt.task.named()}")
    print(format_report(metrics))
    report = {"checkpoint": str(ckpt.path), "data": data, "split": args.split,
              "notes": list(dataset.notes), **metrics}
    if args.tta:
        tta = evaluate_split(ckpt.model, dataset, args.split, device, tta=True)
        print(f"\nwith test-time augmentation (flip and shifts): accuracy = "
              f"{tta['accuracy']:.4f} (without: {metrics['accuracy']:.4f})")
        report["tta"] = tta
    if args.json:
        write_json(Path(args.json), report)
    return 0
