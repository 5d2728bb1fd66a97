"""`python -m fer_core train`: train a model into a run folder, or resume one.

Its flags are TrainConfig's settings (fer_core.training.config), each left None when unset so
that TrainConfig fills in the default; --out, --resume and --resume-schedule are the command's
own.
"""

import argparse
import sys

from ..errors import FerError
from ..training.config import RESUME_SCHEDULES, Setting, TrainConfig, settings

# --help lists the flags in this order (as it did before TrainConfig's field order gave them);
# a setting not named here comes last.
HELP_ORDER = ("data", "classes", "size", "channels", "recipe", "arch", "init", "out", "epochs", "resume", "resume_schedule",
              "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
              "labels", "holdout", "label_smoothing", "shift", "flip", "rotate", "erase", "mixup", "cutmix", "ema",
              "dropout", "head", "class_weights", "precision", "compile", "sync_bn", "small_input",
              "snapshots", "probes", "seed", "device", "log_every")
OWN_FLAGS = {
    "out": (("--out",), {"required": True, "help": "run folder, e.g. checkpoints/NAME"}),
    "resume": (("--resume",), {"action": "store_true",
                               "help": "continue the run in --out from last.pt"}),
    "resume_schedule": (("--resume-schedule",), {
        "choices": RESUME_SCHEDULES, "default": "stretch",
        "help": "a cosine schedule resumed with more epochs: stretch it to the new length "
                "(default; raises the learning rate again), hold the last epoch's rate "
                "(constant), or start a fresh cosine over the added epochs (restart)"}),
}


class DefaultsHelp(argparse.HelpFormatter):
    """Adds TrainConfig's default to each setting's help."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = getattr(TrainConfig(), action.dest, None)
        if default is None or isinstance(default, (bool, dict)) or "default" in text:
            return text
        return f"{text} (default {default})".strip()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = DefaultsHelp
    by_name = {s.name: s for s in settings()}
    for name in (*HELP_ORDER, *(n for n in by_name if n not in HELP_ORDER)):
        if name in OWN_FLAGS:
            flags, kwargs = OWN_FLAGS[name]
            p.add_argument(*flags, **kwargs)
        else:
            add_setting(p, by_name[name])


def add_setting(p: argparse.ArgumentParser, s: Setting) -> None:
    """The flag of one setting, None when not given (a bool's flag sets the other value)."""
    if isinstance(s.default, bool):
        p.add_argument(s.option, dest=s.name, default=None, help=s.help,
                       action="store_false" if s.default else "store_true")
    else:
        p.add_argument(s.option, dest=s.name, type=type(s.default), choices=s.choices,
                       help=s.help)


def train_config_from_args(args) -> TrainConfig:
    """The run's configuration: the saved one when resuming (epochs/device may be changed)."""
    from ..training.runs import RunFolder

    if args.resume:
        saved = RunFolder(args.out).config()
        if saved is None:
            raise FerError(f"cannot resume {args.out}: it has no readable config.json")
        config = TrainConfig(**saved)
        config.epochs = args.epochs or config.epochs
        config.device = args.device or config.device
        config.precision_used = None
        return config
    return TrainConfig.from_settings({s.name: getattr(args, s.name) for s in settings()})


def run(args) -> int:
    """Train; under torchrun every rank runs this, and rank 0 alone prints."""
    from ..data.readers import load_dataset
    from ..distributed import launched_world
    from ..training.preflight import adopt_imported_init, as_init_sees_it
    from ..training.trainer import train
    from .data_options import config_read_options

    config = train_config_from_args(args)
    adopt_imported_init(config)
    config.validate()
    dataset = as_init_sees_it(config, load_dataset(
        config.data, options=config_read_options(config),
        report=lambda line: print(line, file=sys.stderr)))
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    if launched_world().main:
        print(f"task: {dataset.task.named()}", flush=True)
    bar = ProgressBar(config.epochs)
    try:
        state = train(config, args.out, dataset, resume=args.resume,
                      resume_schedule=args.resume_schedule, on_step=bar.step, on_epoch=bar.epoch)
    finally:
        bar.close()
    if launched_world().main:
        print_train_summary(args.out, state)
    return 0


class ProgressBar:
    """A tqdm bar per epoch with the running loss and accuracy, and one line per finished epoch.

    A bar is made at its epoch's first step record, which comes log_every steps in (more on a
    resume): those steps, which it did not time, are its `initial` count, so that its rate
    counts only the steps done while it watched ('?' until there are some).
    """

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar = None

    def step(self, record: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=record["steps"], initial=record["step"],
                            desc=f"epoch {record['epoch']}/{self.epochs}", unit="step",
                            leave=False, file=sys.stderr, dynamic_ncols=True)
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
