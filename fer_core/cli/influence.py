"""`python -m fer_core influence`: the training faces that pushed one face's prediction most toward
it (proponents) and against it (opponents), or with `--self` the training faces ranked by
self-influence (likely label errors): TracIn on the last layer over the run's snapshots (see
`fer_core.explain.influence`).

Everything is checked before the work starts: on bad input no output file appears.
"""

import argparse
import json
import sys
from pathlib import Path

from ..errors import FerError
from .common import add_split_argument, checkpoint_data, warn_if_other_data
from .data_options import add_read_arguments
from .explain import dataset_face, photo_face


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a run folder (its snapshots, else its best.pt) or a .pt file")
    p.add_argument("--data", help="CSV, class-folder tree or 'builtin' (default: "
                                  "the data it was trained on): its train split is searched")
    add_read_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="a photo: its largest face (as explain takes it)")
    source.add_argument("--index", type=int, help="the face's position within --split")
    source.add_argument("--self", action="store_true", dest="self_influence",
                        help="rank the training faces by self-influence (likely label errors)")
    add_split_argument(p, default=None, help="the split of --index (default val); --self "
                                             "ranks train, its default")
    p.add_argument("--top", type=int, default=10, help="faces listed per list (default 10)")
    p.add_argument("--json", default=None, help="also write the lists here")
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..device import choose_device
    from ..evaluation.predict import logits_on_device
    from ..explain.influence import (
        TRAIN,
        build_index,
        checkpoint_loader,
        ranked_self_influence,
        top_positions,
    )
    from ..models.checkpoint import load_checkpoint
    from ..training.snapshots import checkpoint_snapshots

    if args.top < 1:
        raise FerError(f"--top must be at least 1, got {args.top}")
    args.split = args.split or (TRAIN if args.self_influence else "val")
    if args.self_influence and args.split != TRAIN:
        raise FerError(f"--self ranks the training faces: use --split {TRAIN}, not {args.split}")
    json_path = Path(args.json) if args.json else None
    if json_path and not json_path.parent.is_dir():
        raise FerError(f"cannot write {json_path}: folder {json_path.parent} does not exist")
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    spec, dataset = checkpoint_data(args, ckpt)
    classes = ckpt.task.classes
    if not len(dataset.indices(TRAIN)):
        raise FerError(f"{spec}: no training faces to search")
    warn_if_other_data(ckpt, dataset)
    notes = []
    if args.self_influence:
        query = None
    elif args.image:
        face, _, box, source, notes = photo_face(args.image, ckpt.task)
        query = (face, None, {**source, "face_box": box})
    else:
        face, label, _, source, _ = dataset_face(args, ckpt, dataset)
        query = (face, None if label is None else int(label[0]), source)
    snapshots = checkpoint_snapshots(ckpt.path, int(ckpt.meta.get("epoch", 0)))
    load = checkpoint_loader(device)
    index = build_index(snapshots, dataset, device, progress=progress_line(len(snapshots)),
                        load=load)
    print(file=sys.stderr)

    def entries(positions, values) -> list[dict]:
        return [{"split": TRAIN, "index": int(i), "label": label_name(classes, index.labels[i]),
                 "score": float(values[i])} for i in positions]

    report = {"checkpoint": str(ckpt.path), "data": dataset.name,
              "snapshots": [{"epoch": s.epoch, "lr": s.train.lr, "path": str(s.path)}
                            for s in index.stages]}
    if query is None:
        ranking, values = ranked_self_influence(index)
        report["self_influence"] = entries(ranking[:args.top], values)
        print_list("highest self-influence (likely label errors)", report["self_influence"])
    else:
        face, label, source = query
        import torch

        faces = torch.from_numpy(face.copy())[None]
        predicted = int(logits_on_device(ckpt.model, faces.to(device)).argmax(1).item())
        scores = index.scores(faces, [predicted], load)[0]
        report |= {"query": source, "pred": classes[predicted],
                   "true": None if label is None else classes[label],
                   "proponents": entries(top_positions(scores, args.top, 1), scores),
                   "opponents": entries(top_positions(scores, args.top, -1), scores)}
        print(f"predicted: {classes[predicted]}"
              + ("" if label is None else f" (true class {classes[label]})"))
        print_list("proponents (pushed toward the prediction)", report["proponents"])
        print_list("opponents (pushed against it)", report["opponents"])
    if json_path:
        from ..atomic import atomic_file

        with atomic_file(json_path, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        print(f"wrote {json_path}")
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def label_name(classes: tuple[str, ...], label) -> str | None:
    return classes[int(label)] if label >= 0 else None


def progress_line(snapshots: int):
    def show(done: int, total: int) -> None:
        print(f"\rtraining faces over {snapshots} snapshot{'s' if snapshots != 1 else ''}: "
              f"{done:,} of {total:,}", end="", file=sys.stderr, flush=True)
    return show


def print_list(title: str, entries: list[dict]) -> None:
    print(f"{title}:")
    for e in entries:
        print(f"  {e['split']} #{e['index']:<6} {e['label'] or '?':<9} {e['score']:+.4g}")
