"""`python -m fer_core export`: every face of a split explained (its prediction, class
probabilities, penultimate features and one saliency map per method) into shards and a manifest
that `fer_core.load_export` reads back. Under `torchrun --nproc_per_node=N -m fer_core export ...`
each rank explains its share of the chunks; an interrupted export resumes when run again."""

import argparse
import sys
from pathlib import Path

from ..errors import FerError
from ..explain.settings import METHOD_KEYS, add_param_argument, given_params
from .common import add_split_argument, split_data, warn_if_other_data
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", default=None, help="CSV, class-folder tree or 'builtin' (default: "
                                                "its training data); classes are matched to "
                                                "the model's by name")
    add_read_arguments(p)
    add_split_argument(p)
    p.add_argument("--methods", required=True,
                   help=f"comma-separated saliency methods, or 'all': {', '.join(METHOD_KEYS)}")
    add_param_argument(p)
    p.add_argument("--seed", type=int, default=0, help="smoothgrad, gradshap: random seed")
    p.add_argument("--out", default=None, help="the export's folder (default: "
                                               "<run folder>/exports/<data>-<split>)")
    p.add_argument("--chunk", type=int, default=None,
                   help="faces per shard (default 512; a resumed export keeps its own)")
    p.add_argument("--batch", type=int, default=None,
                   help="images per forward pass (default 128 on a CPU, 1024 on a GPU)")
    p.add_argument("--device", default=None)


def run(args) -> int:
    wanted = wanted_methods(args.methods, args.param)
    for flag in ("chunk", "batch"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise FerError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    from ..distributed import join, leave

    world, device = join(args.device)
    done = False
    try:
        code = export(args, wanted, world, device)
        done = True
        return code
    finally:
        leave(together=done)


def export(args, wanted: dict[str, dict], world, device) -> int:
    from ..explain.export import ExportRequest, export_split, resolve_methods
    from ..explain.export_files import default_folder
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint, device)
    ckpt.model.requires_grad_(False)  # gradients are taken with respect to the faces only
    data, dataset = split_data(args, ckpt)
    if world.main:
        warn_if_other_data(ckpt, dataset)
    request = ExportRequest(ckpt.model, ckpt.path, ckpt.task, dataset, args.split,
                            resolve_methods(ckpt, wanted), args.seed)
    folder = Path(args.out) if args.out else default_folder(ckpt.path.parent, dataset.name,
                                                            args.split)
    done = export_split(request, folder, device, world, chunk_size=args.chunk, batch=args.batch,
                        on_chunk=chunk_reporter(world))
    if world.main:
        kept = f", {done.kept} kept from before" if done.kept else ""
        print(f"exported {done.faces:,} faces of {data}, split {args.split} "
              f"({', '.join(request.methods)}) in {done.chunks} chunks{kept} to {done.folder}")
    return 0


def wanted_methods(methods: str, params: list[str]) -> dict[str, dict]:
    """--methods and --param as {method: {name: value text}} (`settings.given_params`;
    `resolve_methods` checks the values)."""
    names = list(METHOD_KEYS) if methods.strip() == "all" else [
        m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHOD_KEYS]
    if unknown or not names:
        raise FerError(f"--methods {methods!r}: unknown method {', '.join(unknown) or '(none)'}; "
                       f"choose among {', '.join(METHOD_KEYS)}, or 'all'")
    return given_params(params, dict.fromkeys(names))


def chunk_reporter(world):
    """A line on stderr per chunk, with the rank under torchrun."""
    rank = f"[rank {world.rank}] " if world.launched else ""

    def report(k: int, chunks: int, kept: bool) -> None:
        state = "kept (written before)" if kept else "written"
        print(f"{rank}chunk {k + 1}/{chunks} {state}", file=sys.stderr, flush=True)

    return report
