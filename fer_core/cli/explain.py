"""`python -m fer_core explain`: one face (a photo, or a dataset face by split and index) ->
the prediction, a saliency map as a PNG (face, map, overlay) and, optionally, JSON.

Everything is checked before anything is written: on bad input no output file appears.
"""

import argparse
import sys

from ..errors import FerError
from ..explain.settings import METHOD_KEYS, add_param_argument, given_params
from .common import (
    add_split_argument,
    checkpoint_data,
    other_data_warning,
    output_paths,
    png_bytes,
    write_all,
)
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_face_arguments(p, "a run folder (its best.pt) or a .pt file")
    add_method_arguments(p)
    p.add_argument("--out", required=True, help="PNG file: the face, the map and the overlay")
    p.add_argument("--json", default=None, help="also write pred, probs, face_box and method here")
    p.add_argument("--device", default=None)


def add_face_arguments(p: argparse.ArgumentParser, checkpoint_help: str) -> None:
    """--checkpoint and the face: --image, or --data with --split and --index (`chosen_face`)."""
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="a photo (JPEG, PNG, WebP, BMP, GIF): its largest face, "
                                        "or a centre crop when none is found")
    source.add_argument("--data", help="CSV, class-folder tree or 'builtin': the face --index of "
                                       "--split (classes matched to the model's by name)")
    add_read_arguments(p)
    add_split_argument(p)
    p.add_argument("--index", type=int, help="the face's position within the split (with --data)")


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """--method, --target, --param and --seed (`method_arguments`)."""
    p.add_argument("--method", choices=METHOD_KEYS, default="vanilla", help="default vanilla")
    p.add_argument("--target", default="pred",
                   help="pred (default), true, a class by name or index, or A-B: why A rather "
                        "than B (logit A minus logit B)")
    add_param_argument(p)
    p.add_argument("--seed", type=int, default=0, help="smoothgrad, gradshap: random seed")


def run(args) -> int:
    """Check everything, explain, then write; notes (no face found, other data) go to stderr
    only once the command has succeeded, so a failure is one line."""
    from ..data.pictures import picture
    from ..device import choose_device
    from ..explain.attribution import explain
    from ..models.checkpoint import load_checkpoint

    outputs = output_paths(args)
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    classes = ckpt.task.classes
    target, params = method_arguments(args, ckpt.task)
    face, label, face_box, source, notes = chosen_face(args, ckpt)
    result = explain(ckpt.model, face_tensor(face), args.method, target, labels=label,
                     seed=args.seed, **params)
    probs = result.probs[0].tolist()
    pred = classes[max(range(len(probs)), key=probs.__getitem__)]
    print_prediction(classes, pred, probs, label)
    explained = result.target_names(classes)[0]
    caption = f"{result.title}, target {explained}; predicted {pred} {max(probs):.2f}"
    from ..explain.heatmap import panels

    sheet = panels(picture(face), result.maps[0].cpu().numpy(), result.signed, caption)
    report = {"pred": pred, "probs": probs, "face_box": face_box, "method": result.method,
              "params": result.params, "target": explained,
              "true": None if label is None else classes[int(label[0])], "source": source,
              "checkpoint": str(ckpt.path)}
    write_all(outputs, png_bytes(sheet), report)
    print(f"wrote {outputs[0]}" + (f" and {outputs[1]}" if outputs[1] else ""))
    if args.image and ckpt.trained_on_builtin:
        notes.append(f"note: {ckpt.path} was trained on the built-in synthetic faces, not on "
                     f"photos; a FER2013-trained checkpoint explains a photo better")
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def method_arguments(args, task):
    """(target, the method's parameters given with --param), each checked against the model's
    `task` (its classes, its size) before any work."""
    from ..explain.attribution import METHODS, Target, method_params

    target = Target.parse(args.target, task.classes)
    params = method_params(METHODS[args.method], given_params(args.param, [args.method])[
        args.method], task.size)
    return target, params


def chosen_face(args, ckpt):
    """(uint8 C x H x W face of the checkpoint's task, labels tensor or None, face box or None,
    source description, notes for stderr)."""
    if args.image:
        if args.index is not None:
            raise FerError("--index goes with --data, not --image")
        return photo_face(args.image, ckpt.task)
    if args.index is None:
        raise FerError("--data needs --index (the face's position within --split)")
    return dataset_face(args, ckpt)


def photo_face(path: str, task):
    """The face of the photo at `path` as a model of `task` takes it (`chosen_face`'s tuple)."""
    from ..data.files import TooLarge, read_file
    from ..data.photos import MAX_PHOTO_BYTES, face_from_upload

    try:
        data = read_file(path, path, limit=MAX_PHOTO_BYTES)
    except TooLarge:
        raise FerError(f"{path}: above the {MAX_PHOTO_BYTES >> 20} MB limit for a photo") from None
    found = face_from_upload(data, path, task=task)
    crop = f"used the centre crop {list(found.crop)}"
    if found.finder_problem:
        notes = [f"warning: {found.finder_problem}; {crop} of {path}"]
    else:
        notes = [] if found.face_box else [f"no face found in {path}: {crop}"]
    box = None if found.face_box is None else list(found.face_box)
    return found.face, None, box, {"image": path, "crop": list(found.crop)}, notes


def dataset_face(args, ckpt, dataset=None):
    """Face --index of --split of --data (`dataset`, when the caller loaded it with
    `checkpoint_data`), as the checkpoint's model sees it."""
    import torch

    data, split, index = args.data, args.split, args.index
    dataset = checkpoint_data(args, ckpt)[1] if dataset is None else dataset
    rows = dataset.indices(split)
    if not 0 <= index < len(rows):
        raise FerError(f"{data}: split {split} has {len(rows)} faces, no index {index}")
    row = rows[index]
    label = int(dataset.labels[row])
    labels = None if label < 0 else torch.tensor([label])
    warning = other_data_warning(ckpt, dataset)
    return (dataset.images[row], labels, None,
            {"data": data, "split": split, "index": index, "row": int(row)},
            [warning] if warning else [])


def face_tensor(face):
    import torch

    return torch.from_numpy(face.copy())[None]


def print_prediction(classes: tuple[str, ...], pred: str, probs: list[float], label) -> None:
    true = "" if label is None else f" (true class {classes[int(label[0])]})"
    print(f"predicted: {pred}{true}")
    width = max(9, *map(len, classes))
    for name, p in zip(classes, probs):
        print(f"  {name:<{width}} {p:.4f}")
