"""`python -m fer_core timeline`: one face (a photo, or a dataset face by split and index) at
each of a run's snapshots -> its map and class probabilities as a PNG strip and, optionally, JSON,
with the snapshot where the prediction became right (or stopped being right).

Everything is checked before anything is written: on bad input no output file appears.
"""

import argparse
import sys
from pathlib import Path

from ..errors import FerError
from . import explain
from .common import output_paths, png_bytes, write_all


def add_arguments(p: argparse.ArgumentParser) -> None:
    explain.add_face_arguments(p, "a run folder: its snapshots (its best.pt alone when it has "
                                  "none)")
    explain.add_method_arguments(p)
    p.add_argument("--out", required=True, help="PNG file: the map over the face and the "
                                                "probabilities at each snapshot")
    p.add_argument("--json", default=None, help="also write, per snapshot, the epoch, lr, "
                                                "prediction, probabilities and whether it is right")
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..device import choose_device
    from ..explain.timeline import face_timeline, strip_image
    from ..models.checkpoint import load_checkpoint, snapshot_lr
    from ..training.snapshots import SNAPSHOTS, list_snapshots

    outputs = output_paths(args)
    folder = Path(args.checkpoint)
    if not folder.is_dir():
        raise FerError(f"--checkpoint {folder}: not a run folder (a timeline reads the run's "
                       f"{SNAPSHOTS}/)")
    snapshots = list_snapshots(folder)
    if not snapshots:
        raise FerError(f"{folder}: no snapshots and no best.pt")
    device = choose_device(args.device)
    last = load_checkpoint(snapshots[-1].path, device)
    target, params = explain.method_arguments(args, last.task)
    face, label, face_box, source, notes = explain.chosen_face(args, last)
    loaded = ((s.epoch, last if s is snapshots[-1] else load_checkpoint(s.path, device))
              for s in snapshots)
    models = ((epoch, snapshot_lr(ckpt.meta), ckpt.model) for epoch, ckpt in loaded)
    timeline = face_timeline(models, face, None if label is None else int(label[0]),
                             args.method, target, classes=last.task.classes, seed=args.seed,
                             **params)
    print_timeline(timeline)
    report = {**timeline.report(), "face_box": face_box, "source": source,
              "checkpoint": str(folder)}
    write_all(outputs, png_bytes(strip_image(timeline, face)), report)
    print(f"wrote {outputs[0]}" + (f" and {outputs[1]}" if outputs[1] else ""))
    if snapshots[0].path.parent.name != SNAPSHOTS:
        notes.append(f"note: {folder} has no snapshots (train with --snapshots N): its "
                     f"{snapshots[0].path.name} alone is shown")
    elif label is None:
        notes.append("note: the face's class is unknown, so no snapshot is marked right or wrong")
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def print_timeline(timeline) -> None:
    classes = timeline.classes
    if timeline.label is not None:
        print(f"true class: {classes[timeline.label]}")
    correct = timeline.correct or [None] * len(timeline.moments)
    changes = timeline.changes()
    for moment, right in zip(timeline.moments, correct):
        verdict = "" if right is None else " right" if right else " wrong"
        mark = f" ({changes[moment.epoch]})" if moment.epoch in changes else ""
        print(f"epoch {moment.epoch:>4}  lr {moment.lr:.3g}  {classes[moment.predicted]:<9} "
              f"{moment.probs.max():.4f}{verdict}{mark}")
