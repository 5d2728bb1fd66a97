"""`python -m fer_core import-model`: a model trained elsewhere (a torchvision classifier or a
factory's module with a state dict, a TorchScript file, an exported program) made a run folder
that every command and page opens. Everything is checked before anything is written: the state
dict loads strictly, a forward pass of the declared input gives one finite logit per class."""

import argparse
import json
import shutil
import tempfile
from pathlib import Path



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the new run folder, e.g. checkpoints/NAME")
    p.add_argument("--classes", required=True,
                   help="the model's output classes in order, comma-separated")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--torchvision", metavar="NAME",
                        help="a classification builder of torchvision.models (resnet18...)")
    source.add_argument("--factory", metavar="MODULE:CALLABLE",
                        help="a callable returning the nn.Module (from --code DIR or importable)")
    source.add_argument("--torchscript", metavar="FILE", help="a torch.jit.save file")
    source.add_argument("--program", metavar="FILE", help="a torch.export.save file (.pt2)")
    p.add_argument("--weights", metavar="STATE_DICT", help="the state dict (torch.save of "
                   "model.state_dict()) for --torchvision and --factory")
    p.add_argument("--code", metavar="DIR", help="the folder holding --factory's module; it is "
                   "copied into the run folder")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="input channels (default: the first convolution's)")
    p.add_argument("--size", type=int, default=None, required=True,
                   help="the input size (square) the model takes")
    p.add_argument("--mean", default="0", help="subtracted from pixels in [0, 1]: M or M,M,M")
    p.add_argument("--std", default="1", help="then divided by: S or S,S,S")
    p.add_argument("--data", default=None, help="the data the model is meant for (the default "
                                                "--data of other commands and the dashboard)")


def run(args) -> int:
    from ..errors import FerError
    from ..models.imported import KINDS

    kind = next(k for k in KINDS if getattr(args, k) is not None)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FerError(f"--out {out}: already exists and is not empty")
    if args.weights is not None and kind not in ("torchvision", "factory"):
        raise FerError(f"--weights is for --torchvision and --factory; a {kind} file holds its "
                       f"weights")
    made = _make_folders(out.parent)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            folder = Path(scratch) / "run"
            folder.mkdir()
            summary = _import(args, kind, folder)
            if out.exists():
                out.rmdir()
            folder.rename(out)
    except BaseException:
        for made_folder in reversed(made):  # a refused import leaves nothing behind
            made_folder.rmdir()
        raise
    print(summary.replace("{out}", str(out)))
    return 0


def _make_folders(path: Path) -> list[Path]:
    """Make `path` and the folders above it that are missing; returns those made, outermost
    first."""
    missing = [p for p in (path, *path.parents) if not p.exists()][::-1]
    for folder in missing:
        folder.mkdir()
    return missing


def _import(args, kind: str, folder: Path) -> str:
    """Check the model and write its run into `folder`; a one-line summary."""
    from ..atomic import write_json
    from ..data.task import Task, task_problem
    from ..errors import FerError
    from ..models import imported
    from ..models.checkpoint import FORMAT, VERSION, save_atomic

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    name = {"torchvision": args.torchvision, "factory": args.factory}.get(kind)
    if kind in imported.FILES:
        source = Path(getattr(args, kind))
        if not source.is_file():
            raise FerError(f"--{kind} {source}: no such file")
        shutil.copyfile(source, folder / imported.FILES[kind])
        name = source.name
    if kind == "factory" and args.code:
        if not Path(args.code).is_dir():
            raise FerError(f"--code {args.code}: no such folder")
        shutil.copytree(args.code, folder / imported.CODE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    state = imported.read_state_dict(Path(args.weights)) if args.weights else None
    # every kind but torchvision is built the same whatever the classes and channels: once
    model = (None if kind == "torchvision"
             else imported.build_source({"kind": kind, "name": name}, 0, 0, folder))
    known = state if state is not None or model is None else model.state_dict()
    channels = args.channels or _channels(kind, known)
    problem = task_problem(classes, args.size, channels)
    if problem:
        raise FerError(problem)
    task = Task(classes, args.size, channels)
    options = {"kind": kind, "name": name, "mean": _per_channel(args.mean, "--mean", channels),
               "std": _per_channel(args.std, "--std", channels)}
    model = model or imported.build_source(options, task.num_classes, channels, folder)
    if state is None and kind in ("torchvision", "factory"):
        state = model.state_dict()
    if state is not None:
        imported.load_strict(model, state, Path(args.weights or "the built model"))
    model = imported.normalized(imported.hook_safe(model), options["mean"], options["std"], kind)
    _check_forward(model.eval(), task)
    config = {"data": args.data, "arch": f"imported:{kind}", "imported_from": {
        "kind": kind, "name": name, "weights": args.weights, "code": args.code}}
    save_atomic({"format": FORMAT, "version": VERSION, "arch": imported.IMPORTED,
                 "arch_options": options, **task.to_meta(), "model": dict(state or {}),
                 "config": config, "epoch": 0,
                 "dataset": {"name": args.data} if args.data else {}}, folder / "best.pt")
    write_json(folder / "config.json", config)
    write_json(folder / "status.json", {"state": "finished", "epoch": 0, "imported": True})
    return f"imported {kind} {name} as {{out}}: {task.named()}"


def _channels(kind: str, state: dict | None) -> int:
    """The input channels the weights tell (the first convolution's); torchvision builds for 3;
    else --channels is needed."""
    from ..errors import FerError

    for value in (state or {}).values():
        if value.dim() == 4:
            return int(value.shape[1])
    if kind == "torchvision":
        return 3
    raise FerError(f"--channels: the {kind} model's input channels cannot be read from its "
                   f"weights; pass --channels 1 or 3")


def _per_channel(text: str, flag: str, channels: int) -> list[float]:
    from ..errors import FerError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise FerError(f"{flag} {text}: expected numbers, e.g. 0.5 or 0.485,0.456,0.406") from None
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise FerError(f"{flag} {text}: {len(values)} values for {channels} channels")
    return values


def _check_forward(model, task) -> None:
    """Forward passes of 2 and then 3 faces of the declared input: one finite logit per class
    (two batch sizes, since a program exported for one batch size runs no other)."""
    import torch

    from ..errors import FerError

    for n in (2, 3):
        try:
            with torch.no_grad():
                out = model(torch.rand(n, *task.shape))
        except Exception as e:  # noqa: BLE001  (any model's own error)
            again = (" (it ran 2: export it with a dynamic batch dimension, dynamic_shapes="
                     "({0: torch.export.Dim('batch')},))") if n == 3 else ""
            raise FerError(f"a forward pass of {n} x {task.channels} x {task.size} x {task.size} "
                           f"faces failed{again}: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, task.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise FerError(f"the model gives {shape} for {n} faces, not one logit for each of "
                           f"its {task.num_classes} classes (--classes)")
        if not torch.isfinite(out).all():
            raise FerError("the model's output is not finite (NaN or infinity) for random faces")
