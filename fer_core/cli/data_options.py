"""--classes, --size and --channels: how to read a class-folder tree where it does not say (every
command that reads data takes them; the run records them so later commands read its data the
same way). Imports no torch."""

import argparse

from ..errors import FerError


def add_read_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classes", help="class names, comma-separated: for numeric class folders "
                   "(in their numeric order) or to order named ones (default: classes.txt "
                   "beside the split folders, else the folder names sorted)")
    p.add_argument("--size", type=int, help="image size in pixels: every face is resized to "
                   "it (default: the data's; a tree's most common size)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 grey or 3 colour, grey faces "
                   "repeated (default: the data's; grey when every image is grey)")


def read_options(args):
    """The ReadOptions of --classes, --size and --channels."""
    return _options(args.classes, args.size, args.channels)


def config_read_options(config: dict | object):
    """The ReadOptions a run read its data with: its config's classes, size and channels (a
    TrainConfig or config.json's dict; '' and 0 mean the tree's own)."""
    get = config.get if isinstance(config, dict) else lambda name, default: getattr(config, name)
    return _options(get("classes", "") or None, get("size", 0) or None,
                    get("channels", 0) or None)


def _options(classes: str | None, size: int | None, channels: int | None):
    from ..data.tree import ReadOptions

    names = None
    if classes is not None:
        names = tuple(name.strip() for name in classes.split(","))
        if not all(names):
            raise FerError(f"--classes {classes!r}: an empty class name")
    return ReadOptions(classes=names, size=size, channels=channels)
