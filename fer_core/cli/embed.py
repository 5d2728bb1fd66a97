"""`python -m fer_core embed`: every face of a split in 2-D (PCA, t-SNE or UMAP of the
penultimate features), as CSV."""

import argparse
import sys
from pathlib import Path

from ..errors import FerError
from ..explain.settings import PROJECTIONS
from .common import add_split_argument, split_data, warn_if_other_data
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", default=None, help="CSV, class-folder tree or 'builtin' (default: "
                                                "its training data); classes are matched to "
                                                "the model's by name")
    add_read_arguments(p)
    add_split_argument(p)
    p.add_argument("--method", choices=tuple(PROJECTIONS), default="pca",
                   help="pca (instant), tsne or umap (seconds for 3,589 faces, minutes for "
                        "28,709); default pca")
    p.add_argument("--out", required=True,
                   help="CSV file: split,index,x,y,label,pred,confidence, one row per face")
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..device import choose_device
    from ..explain.embeddings import embed_split, embedding_csv
    from ..models.checkpoint import load_checkpoint

    out = Path(args.out)
    if not out.parent.is_dir():
        raise FerError(f"cannot write {out}: folder {out.parent} does not exist")
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    data, dataset = split_data(args, ckpt)
    warn_if_other_data(ckpt, dataset)
    n = len(dataset.indices(args.split))
    if args.method != "pca":  # seconds to minutes: say what is going on
        print(f"{PROJECTIONS[args.method]} of {n:,} {args.split} faces (cached after the "
              f"first time)...", file=sys.stderr, flush=True)
    embedding = embed_split(ckpt.model, ckpt.path, dataset, args.split, args.method, device)
    out.write_text(embedding_csv(embedding, ckpt.task.classes))
    print(f"wrote {n:,} faces of {data}, split {args.split}, by {PROJECTIONS[args.method]} "
          f"({embedding.predictions.features.shape[1]} features each) to {out}")
    return 0
