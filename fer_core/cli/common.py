"""What two or more commands share: the exit status of an error, a checkpoint's training data,
the data of a split and the warning when other data is used, and the PNG + JSON outputs of
explain and visualize."""

import contextlib
import io
import os
import sys
from pathlib import Path

from ..atomic import atomic_file
from ..choices import SPLITS
from ..errors import FerError

EXIT_ERROR = 2  # bad input, a failed run or a broken install: one line each on stderr


def add_split_argument(p, default: str | None = "val", help: str = "default val") -> None:
    """--split, restricted to the split names, as every command takes it."""
    p.add_argument("--split", choices=SPLITS, default=default, help=help)


def training_data(ckpt) -> str:
    """The data spec a checkpoint was trained on (its config), refused when it is a path that
    does not exist here (a checkpoint trained on another machine)."""
    from ..data.readers import is_builtin_spec

    spec = ckpt.meta.get("config", {}).get("data") or ckpt.meta.get("dataset", {}).get("name")
    spec = spec or "builtin"
    if not is_builtin_spec(spec) and not Path(spec).exists():
        raise FerError(f"{ckpt.path} was trained on {spec}, which is not on this machine: "
                       f"pass --data")
    return spec


def checkpoint_data(args, ckpt):
    """(the data spec, the dataset as the checkpoint's model sees it): `--data` read with
    --classes/--size/--channels where the command has them, else (or when --data names the
    training data and no such flag is given) the data the checkpoint was trained on, read as
    it was. Classes are matched to the model's by name and faces converted
    to its size and channels (`data.matching.for_model`); what reading and matching did
    (`dataset.notes`) is said once on stderr."""
    from ..data.matching import for_model
    from ..data.readers import load_dataset
    from .data_options import config_read_options, read_options

    from ..data.tree import ReadOptions

    given = read_options(args) if hasattr(args, "classes") else ReadOptions()
    if args.data and not (given == ReadOptions() and _is_training_data(args.data, ckpt)):
        data, options = args.data, given
    else:
        data, options = training_data(ckpt), config_read_options(ckpt.meta.get("config", {}))
    dataset = for_model(load_dataset(data, options=options), ckpt.task)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return data, dataset


def _is_training_data(data: str, ckpt) -> bool:
    trained = ckpt.meta.get("config", {}).get("data")
    return trained is not None and os.path.realpath(data) == os.path.realpath(trained)


def split_data(args, ckpt):
    """(the data spec, the dataset) of `checkpoint_data`, which must hold split `--split`."""
    data, dataset = checkpoint_data(args, ckpt)
    if args.split not in dataset.present_splits():
        raise FerError(f"{data} has no {args.split} split (it has "
                       f"{', '.join(dataset.present_splits())})")
    return data, dataset


def other_data_warning(ckpt, dataset) -> str | None:
    """A warning when the data's fingerprint is not the checkpoint's (another copy of FER2013
    differs by a few grey levels: worth knowing, not an error)."""
    trained = ckpt.meta.get("dataset", {}).get("fingerprint")
    if trained and trained != dataset.fingerprint:
        return (f"warning: {dataset.name} (fingerprint {dataset.fingerprint}) is not the data "
                f"{ckpt.path} was trained on (fingerprint {trained})")
    return None


def warn_if_other_data(ckpt, dataset) -> None:
    """The other-data warning, if any, as one line on stderr."""
    if warning := other_data_warning(ckpt, dataset):
        print(warning, file=sys.stderr)


def output_paths(args) -> tuple[Path, Path | None]:
    """--out (a .png) and --json, refused before any work when they cannot be written."""
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise FerError(f"--out {out}: must name a .png file")
    paths = (out, Path(args.json) if args.json else None)
    for path in filter(None, paths):
        if not path.parent.is_dir():
            raise FerError(f"cannot write {path}: folder {path.parent} does not exist")
    return paths


def png_bytes(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def write_all(paths: tuple[Path, Path | None], png: bytes, report: dict) -> None:
    """The PNG and the JSON, each written to a temporary file first and both renamed at the
    end, so a failure leaves neither behind."""
    import json

    contents = [(paths[0], png)]
    if paths[1]:
        contents.append((paths[1], (json.dumps(report, indent=2) + "\n").encode()))
    with contextlib.ExitStack() as files:
        for path, data in contents:
            files.enter_context(atomic_file(path, "wb")).write(data)
