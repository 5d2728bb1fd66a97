"""Command line: `python -m fer_core COMMAND`, one of the COMMANDS below (train, evaluate,
embed, explain, export, influence, trust, timeline, visualize, data, env).

Installed, `fer` is the same command. Exit 0 on success; on bad input or a failed run, exit 2
with one line on stderr.

Each command is a module with `add_arguments(parser)` and `run(args)`, and imports what it needs
when it runs: `data` never imports torch (about 2.5 s).
"""

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import FerError
from . import (data, embed, env, evaluate, explain, export, import_model, influence, timeline,
               train, trust, visualize)
from .common import EXIT_ERROR

COMMANDS = {
    "train": (train, "train a model into a run folder"),
    "evaluate": (evaluate, "accuracy, per-class metrics, confusion matrix"),
    "embed": (embed, "every face of a split in 2-D (PCA, t-SNE or UMAP of the penultimate "
                     "features), as CSV"),
    "explain": (explain, "prediction and saliency map of one face (a photo or a dataset face)"),
    "export": (export, "predictions, features and saliency maps of a whole split (torchrun too)"),
    "influence": (influence, "training faces behind a prediction, or ranked by self-influence"),
    "trust": (trust, "which saliency methods to trust: sanity check, deletion, localization"),
    "timeline": (timeline, "one face's map and probabilities at each of a run's snapshots"),
    "visualize": (visualize, "activation maximization of some filters of a layer, as a PNG grid"),
    "import-model": (import_model, "a model trained elsewhere (torchvision, factory, "
                                   "TorchScript, exported program) as a run folder"),
    "data": (data, "the detected layout and the counts per split and class"),
    "env": (env, "versions, device and memory, torchvision's ops, face finding: what is broken "
                 "and its fix"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other error."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=program_name(), description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (command, help) in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=help))
    return parser


def program_name() -> str:
    """How the user called us, for usage lines and errors: `fer` (the installed command) or
    `python -m fer_core`."""
    return "fer" if Path(sys.argv[0]).name == "fer" else "python -m fer_core"


def one_line_warning(message, *_details, **_more) -> str:
    """A warning (a damaged cache file computed again, ...) as one line, like the errors."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = one_line_warning
    try:
        return COMMANDS[args.command][0].run(args)
    except FerError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except Exception as e:  # a failed run: one readable line, never a traceback
        print(f"error: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    return EXIT_ERROR
