"""Command line: `python -m fer_core train | evaluate | embed | explain | trust | visualize | data`.

Exit 0 on success; on bad input or a failed run, exit 2 with one line on stderr.

Each command imports what it needs when it runs: `data` never imports torch (about 2.5 s), so
the parser takes no defaults from TrainConfig (which lives with the trainer); options left unset
are None and TrainConfig fills them in.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import FerError
from . import explain, trust, visualize

EXIT_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), like every other error."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m fer_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_train(sub.add_parser("train", help="train a model into a run folder",
                              formatter_class=TrainDefaultsHelp))
    _add_evaluate(sub.add_parser("evaluate", help="accuracy, per-class metrics, confusion matrix"))
    _add_embed(sub.add_parser("embed", help="every face of a split in 2-D (PCA, t-SNE or UMAP of "
                                            "the penultimate features), as CSV"))
    explain.add_arguments(sub.add_parser(
        "explain", help="prediction and saliency map of one face (a photo or a dataset face)"))
    trust.add_arguments(sub.add_parser(
        "trust", help="which saliency methods to trust: sanity check, deletion, localization"))
    visualize.add_arguments(sub.add_parser(
        "visualize", help="activation maximization of some filters of a layer, as a PNG grid"))
    data = sub.add_parser("data", help="the detected layout and the counts per split and class")
    data.add_argument("--data", default="builtin", help="FER2013 path, or 'builtin' (default)")
    return parser


class TrainDefaultsHelp(argparse.HelpFormatter):
    """Adds TrainConfig's default to each train option's help, importing the trainer (and torch)
    only when the help is printed."""

    def _get_help_string(self, action):
        from ..training.trainer import TrainConfig

        text = action.help or ""
        default = getattr(TrainConfig(), action.dest, None)
        if default is None or isinstance(default, (bool, dict)) or "default" in text:
            return text
        return f"{text} (default {default})".strip()


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="FER2013 path, 'builtin' or 'builtin:N'")
    p.add_argument("--arch", choices=("cnn3", "resnet18"), help="architecture")
    p.add_argument("--out", required=True, help="run folder, e.g. checkpoints/NAME")
    p.add_argument("--epochs", type=int, help="epochs to train")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--resume-schedule", choices=("stretch", "constant", "restart"),
                   default="stretch",
                   help="a cosine schedule resumed with more epochs: stretch it to the new length "
                        "(default; raises the learning rate again), hold the last epoch's rate "
                        "(constant), or start a fresh cosine over the added epochs (restart)")
    p.add_argument("--batch-size", type=int, help="faces per step")
    p.add_argument("--optimizer", choices=("adam", "sgd"), help="optimizer")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float, help="SGD momentum")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=float, help="weight decay")
    p.add_argument("--schedule", choices=("cosine", "plateau", "none"),
                   help="learning-rate schedule")
    p.add_argument("--label-smoothing", type=float, help="label smoothing")
    p.add_argument("--shift", type=int, help="random shift in pixels (0: off)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips")
    p.add_argument("--rotate", type=float, help="max rotation in degrees (0: off)")
    p.add_argument("--dropout", type=float, default=None, help="cnn3 head dropout")
    p.add_argument("--head", choices=("pool", "flat"), default=None,
                   help="cnn3 head: average-pool block3 (default) or flatten its 6x6 map into "
                        "a 256-unit hidden layer")
    p.add_argument("--class-weights", choices=("none", "balanced"),
                   help="weigh each class's loss by n / (7 x its count) (balanced)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 where the CPU or GPU has it natively, fp16 on older GPUs, "
                        "else fp32")
    p.add_argument("--imagenet-stem", action="store_true",
                   help="resnet18: keep the 7x7 stride-2 stem and max-pool")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    p.add_argument("--log-every", type=int, help="steps between loss lines")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", default=None, help="FER2013 path or 'builtin' (default: the "
                                                "checkpoint's training data)")
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--tta", action="store_true",
                   help="also report test-time augmentation (flip and 2-pixel shifts, "
                        "probabilities averaged)")
    p.add_argument("--device", default=None)


def _add_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", default=None, help="FER2013 path or 'builtin' (default: the "
                                                "checkpoint's training data)")
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca",
                   help="pca (instant), tsne or umap (seconds for 3,589 faces, minutes for "
                        "28,709); default pca")
    p.add_argument("--out", required=True,
                   help="CSV file: split,index,x,y,label,pred,confidence, one row per face")
    p.add_argument("--device", default=None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "evaluate": cmd_evaluate, "embed": cmd_embed,
               "explain": explain.run, "trust": trust.run, "visualize": visualize.run,
               "data": cmd_data}[args.command]
    try:
        return command(args)
    except FerError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except Exception as e:  # a failed run: one readable line, never a traceback
        print(f"error: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    return EXIT_ERROR


# ---- train ------------------------------------------------------------------------------------

def train_config_from_args(args):
    """The run's configuration: the saved one when resuming (epochs/device may be changed)."""
    from ..training.runs import RunFolder
    from ..training.trainer import TrainConfig

    if args.resume:
        saved = RunFolder(args.out).config()
        if saved is None:
            raise FerError(f"cannot resume {args.out}: it has no readable config.json")
        config = TrainConfig(**saved)
        config.epochs = args.epochs or config.epochs
        config.device = args.device or config.device
        config.precision_used = None
        return config
    options = {}
    if args.dropout is not None:
        options["dropout"] = args.dropout
    if args.head is not None:
        options["head"] = args.head
    if args.imagenet_stem:
        options["small_input"] = False
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return TrainConfig(**{**values, "arch_options": options})


def cmd_train(args) -> int:
    from ..data.readers import load_dataset
    from ..training.trainer import train

    config = train_config_from_args(args)
    config.validate()
    dataset = load_dataset(config.data)
    bar = ProgressBar(config.epochs)
    try:
        state = train(config, args.out, dataset, resume=args.resume,
                      resume_schedule=args.resume_schedule, on_step=bar.step, on_epoch=bar.epoch)
    finally:
        bar.close()
    print_train_summary(args.out, state)
    return 0


class ProgressBar:
    """A tqdm bar per epoch with the running loss and accuracy, and one line per finished epoch."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar = None

    def step(self, record: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=record["steps"], desc=f"epoch {record['epoch']}/{self.epochs}",
                            unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.bar.update(record["step"] - self.bar.n)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}")

    def epoch(self, r: dict) -> None:
        self.close()
        val = ("" if r["val_acc"] is None
               else f"  val loss {r['val_loss']:.4f} acc {r['val_acc']:.4f}")
        print(f"epoch {r['epoch']}/{self.epochs}  train loss {r['train_loss']:.4f} "
              f"acc {r['train_acc']:.4f}{val}  {r['images_per_s']:.0f} img/s  {r['seconds']:.1f} s",
              flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_train_summary(out: str, state: str) -> None:
    from ..training.runs import RunFolder

    run = RunFolder(out)
    status = run.status() or {}
    best = status.get("best_val_acc")
    best_text = "n/a" if best is None else f"{best:.4f}"
    print(f"{state}: {status.get('epoch', 0)}/{status.get('epochs', '?')} epochs, best val acc "
          f"{best_text}, run folder {run.path}")


# ---- evaluate and data ------------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    from ..data.readers import load_dataset
    from ..device import choose_device
    from ..evaluation.report import evaluate_split, format_report
    from ..models.checkpoint import load_checkpoint
    from ..training.runs import write_json_atomic

    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    data = args.data or training_data(ckpt)
    dataset = load_dataset(data)
    warn_if_other_data(ckpt, dataset)
    metrics = evaluate_split(ckpt.model, dataset, args.split, device)
    print(f"checkpoint {ckpt.path} ({ckpt.arch}, epoch {ckpt.meta.get('epoch')}) "
          f"on {data}, split {args.split}")
    print(format_report(metrics))
    report = {"checkpoint": str(ckpt.path), "data": data, "split": args.split, **metrics}
    if args.tta:
        tta = evaluate_split(ckpt.model, dataset, args.split, device, tta=True)
        print(f"\nwith test-time augmentation (flip and shifts): accuracy = "
              f"{tta['accuracy']:.4f} (without: {metrics['accuracy']:.4f})")
        report["tta"] = tta
    if args.json:
        write_json_atomic(Path(args.json), report)
    return 0


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


def warn_if_other_data(ckpt, dataset) -> None:
    """One line on stderr when the data's fingerprint is not the checkpoint's (another copy of
    FER2013 differs by a few grey levels: worth knowing, not an error)."""
    trained = ckpt.meta.get("dataset", {}).get("fingerprint")
    if trained and trained != dataset.fingerprint:
        print(f"warning: {dataset.name} (fingerprint {dataset.fingerprint}) is not the data "
              f"{ckpt.path} was trained on (fingerprint {trained})", file=sys.stderr)


def cmd_embed(args) -> int:
    from ..data.readers import load_dataset
    from ..device import choose_device
    from ..explain.embeddings import METHOD_NAMES, embed_split, embedding_csv
    from ..models.checkpoint import load_checkpoint

    out = Path(args.out)
    if not out.parent.is_dir():
        raise FerError(f"cannot write {out}: folder {out.parent} does not exist")
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    data = args.data or training_data(ckpt)
    dataset = load_dataset(data)
    if args.split not in dataset.present_splits():
        raise FerError(f"{data} has no {args.split} split (it has "
                       f"{', '.join(dataset.present_splits())})")
    warn_if_other_data(ckpt, dataset)
    n = len(dataset.indices(args.split))
    if args.method != "pca":  # seconds to minutes: say what is going on
        print(f"{METHOD_NAMES[args.method]} of {n:,} {args.split} faces (cached after the "
              f"first time)...", file=sys.stderr, flush=True)
    embedding = embed_split(ckpt.model, ckpt.path, dataset, args.split, args.method, device)
    out.write_text(embedding_csv(embedding))
    print(f"wrote {n:,} faces of {data}, split {args.split}, by {METHOD_NAMES[args.method]} "
          f"({embedding.predictions.features.shape[1]} features each) to {out}")
    return 0


def cmd_data(args) -> int:
    from ..data.classes import CLASSES
    from ..data.readers import load_dataset

    dataset = load_dataset(args.data)
    print(f"data: {dataset.name}\nlayout: {dataset.layout}\nfaces: {len(dataset)}\n")
    counts = dataset.counts()
    columns = list(CLASSES)
    if any("unlabelled" in row for row in counts.values()):
        columns.append("unlabelled")
    print(f"{'split':<7}" + "".join(f"{c[:9]:>10}" for c in columns) + f"{'total':>10}")
    for split, row in counts.items():
        values = [row.get(c, 0) for c in columns]
        print(f"{split:<7}" + "".join(f"{v:>10d}" for v in values) + f"{sum(values):>10d}")
    return 0
