"""`TrainConfig`, the one source of a run's settings: each field a person sets carries its
`python -m fer_core train` flag and help, so the CLI's flags, the dashboard launcher's arguments
and the Training page's form are all built from `settings()`.

This module imports no torch: the CLI's parser is built from it for every command, `data` too.
"""

import dataclasses
from dataclasses import dataclass, field

from ..choices import PRECISIONS
from ..errors import FerError

# The keys of models.architectures.ARCHITECTURES and its cnn3 heads, spelled out so that this
# module imports no torch (tests/test_train_config.py checks that they agree).
ARCHS = ("cnn3", "resnet18")
TORCHVISION = "torchvision:"  # models.imported.TORCHVISION
IMPORTED = "imported"  # models.imported.IMPORTED: what `--init` of an imported run trains
# What the Training form offers beside ARCHS (the CLI takes any torchvision classifier).
TORCHVISION_PICKS = ("resnet18", "resnet34", "mobilenet_v3_small", "efficientnet_b0")
CNN3_HEADS = ("pool", "flat")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "onecycle", "plateau", "none")
CLASS_WEIGHTS = ("none", "balanced")
RESUME_SCHEDULES = ("stretch", "constant", "restart")
# What the loss is computed against (fer_core.training.targets): the four modes of the FER+
# paper; the last three need crowd votes.
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")

# Named starting points: `--recipe NAME` sets these, and the flags given override them.
# fer2013-resnet18 follows the anchors that reach 73-74% on FER2013 (SGD with Nesterov momentum,
# one-cycle, label smoothing, mixup, random erasing, an average of the weights), scaled to a few
# minutes on one GPU; benchmarks/recipe_ablation.py measures what each of its levers adds.
RECIPES = {
    "none": {},
    "fer2013-resnet18": {
        "arch": "resnet18", "epochs": 60, "batch_size": 256, "optimizer": "sgd", "lr": 0.1,
        "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
        "label_smoothing": 0.1, "erase": 0.25, "mixup": 0.2, "ema": 0.999,
    },
}


@dataclass(frozen=True)
class Setting:
    """One setting a person chooses: its name (a TrainConfig field, or an arch option when
    `arch` is set), default, help, choices and flag (default: --NAME with dashes).

    A bool's flag turns it away from its default (--nesterov, --no-flip, --imagenet-stem); any
    other flag takes a value.
    """

    name: str
    default: object
    help: str
    choices: tuple | None = None
    flag: str | None = None
    arch: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def setting(default, help: str, *, choices: tuple | None = None, flag: str | None = None):
    """A TrainConfig field that a person sets (see Setting)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


# The options of TrainConfig.arch_options a person sets; the architectures' defaults (checked
# against models.architectures.DEFAULT_OPTIONS by the tests). Mean and std are recorded there
# too, but they are the data's, not a choice.
ARCH_OPTIONS = (
    Setting("dropout", 0.3, "cnn3 head dropout", arch="cnn3"),
    Setting("head", "pool", "cnn3 head: average-pool block3 (default) or flatten its map "
                            "(size/8 x size/8: 6x6 for 48-pixel faces) into a 256-unit hidden "
                            "layer", choices=CNN3_HEADS, arch="cnn3"),
    Setting("small_input", True, "resnet18: keep the 7x7 stride-2 stem and max-pool",
            flag="--imagenet-stem", arch="resnet18"),
)
NOT_SET_BY_HAND = ("arch_options", "precision_used")  # set through ARCH_OPTIONS; by the trainer


@dataclass
class TrainConfig:
    """A run's settings, saved as its config.json. A field a person sets is declared with
    `setting(...)`; arch_options holds the ARCH_OPTIONS given (the trainer adds the rest)."""

    data: str = setting("builtin", "FER2013 CSV, class-folder tree, 'builtin' or 'builtin:N'")
    classes: str = setting("", "a class-folder tree's class names, comma-separated: for numeric "
                               "folders (in numeric order) or to order named ones (default: its "
                               "classes.txt, else the folder names)")
    size: int = setting(0, "the faces' size: every face resized to it (0: the data's own; a "
                           "tree's most common size)")
    channels: int = setting(0, "the faces as 1 grey or 3 colour, grey faces repeated (0: the "
                               "data's own; grey when every image is)", choices=(0, 1, 3))
    recipe: str = setting("none", "start from a named recipe's settings (the flags given override "
                                  "them)", choices=tuple(RECIPES))
    arch: str = setting("cnn3", "architecture: cnn3, resnet18, or torchvision:NAME (any "
                                "classifier of torchvision.models, e.g. torchvision:resnet18, "
                                "trained from scratch for the data's classes and channels)")
    arch_options: dict = field(default_factory=dict)
    init: str = setting("", "start from the weights of this checkpoint or run folder "
                            "(fine-tuning; same architecture and options)")
    epochs: int = setting(10, "epochs to train")
    batch_size: int = setting(128, "faces per step")
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "learning rate (a one-cycle schedule's peak)")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    weight_decay: float = setting(1e-4, "weight decay")
    schedule: str = setting("cosine", "learning-rate schedule: cosine over the epochs, one-cycle "
                                      "(up to --lr over the first 3 tenths of the steps, then "
                                      "down), halve on a val-loss plateau, or none",
                            choices=SCHEDULES)
    labels: str = setting("majority", "what the loss learns from: the label (majority: the "
                                      "crowd's majority where the data has votes), a label drawn "
                                      "from the votes each epoch (probability), the vote "
                                      "distribution (crossentropy), or every emotion with 3 "
                                      "tenths of the votes (multi_target)", choices=LABEL_MODES)
    holdout: float = setting(0.0, "validate on this stratified, seeded share of the training "
                                  "split instead of the val split (e.g. 0.1), which stays unseen "
                                  "for one final report (0: the val split)")
    label_smoothing: float = setting(0.0, "label smoothing")
    shift: int = setting(3, "random shift in pixels (0: off)")
    flip: bool = setting(True, "no horizontal flips", flag="--no-flip")
    rotate: float = setting(10.0, "max rotation in degrees (0: off)")
    erase: float = setting(0.0, "random erasing: the share of faces that get a random box of "
                                "noise (0: off)")
    mixup: float = setting(0.0, "mixup: blend each batch with its reverse by a Beta(a, a) "
                                "weight (0: off)")
    cutmix: float = setting(0.0, "cutmix: paste a box of the reversed batch, its share drawn from "
                                 "Beta(a, a); with mixup, each batch is one or the other (0: off)")
    ema: float = setting(0.0, "decay of an average of the weights kept every step, e.g. 0.999; "
                              "validation and checkpoints use the average (0: off)")
    compile: bool = setting(False, "torch.compile the training step's model (fused kernels; "
                                   "compiling costs 20-60 s at the start)")
    sync_bn: bool = setting(False, "under torchrun on GPUs: batch-norm statistics over the "
                                   "global batch, not each rank's slice (SyncBatchNorm)")
    snapshots: int = setting(4, "snapshots of the weights kept at epochs evenly spaced over the "
                                "run, in half precision, for the timeline and TracIn (0: none)")
    probes: int = setting(8, "validation faces whose gradient and Grad-CAM maps are kept every "
                             "epoch (0: none)")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", "auto (default), cpu, cuda, mps")
    precision: str = setting("auto", "auto: bf16 where the CPU or GPU has it natively, fp16 on "
                                     "older GPUs, else fp32", choices=PRECISIONS)
    precision_used: str | None = None  # what `precision` resolved to on the training device
    class_weights: str = setting("none", "weigh each class's loss by n / (K x its count), K the "
                                         "number of classes (balanced)", choices=CLASS_WEIGHTS)
    log_every: int = setting(10, "steps between loss lines")

    @classmethod
    def from_settings(cls, values: dict) -> "TrainConfig":
        """The config of `values` by setting name (None: left unset, the recipe's value if the
        recipe sets it, else the default)."""
        given = {name: value for name, value in values.items() if value is not None}
        recipe = given.get("recipe", "none")
        if recipe not in RECIPES:
            raise FerError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
        given = {**RECIPES[recipe], **given}
        options = {s.name: given.pop(s.name) for s in ARCH_OPTIONS if s.name in given}
        return cls(**given, arch_options=options)

    def validate(self) -> None:
        """Raise FerError naming the first setting that makes no sense."""
        checks = [
            (self.arch in ARCHS or (self.arch == IMPORTED and self.init)
             or (self.arch.startswith(TORCHVISION) and len(self.arch) > len(TORCHVISION)),
             f"architecture must be one of {', '.join(ARCHS)} or {TORCHVISION}NAME, got "
             f"{self.arch!r}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES,
             f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1,
             f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.shift >= 0 and self.rotate >= 0, "shift and rotation must be >= 0"),
            (0 <= self.erase <= 1, f"erase must be in [0, 1], got {self.erase}"),
            (self.mixup >= 0 and self.cutmix >= 0,
             f"mixup and cutmix must be >= 0, got {self.mixup} and {self.cutmix}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}"),
            (self.snapshots >= 0, f"snapshots must be >= 0, got {self.snapshots}"),
            (self.probes >= 0, f"probes must be >= 0, got {self.probes}"),
            (self.precision in PRECISIONS,
             f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.labels in LABEL_MODES,
             f"labels must be one of {LABEL_MODES}, got {self.labels!r}"),
            (0 <= self.holdout < 1, f"holdout must be in [0, 1), got {self.holdout}"),
            (self.labels != "multi_target" or (self.label_smoothing == 0
                                               and self.class_weights == "none"),
             "--labels multi_target has its own loss: it takes no label smoothing or class "
             "weights"),
            (self.class_weights in CLASS_WEIGHTS,
             f"class weights must be one of {CLASS_WEIGHTS}, got {self.class_weights!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise FerError(message)


def settings() -> tuple[Setting, ...]:
    """Every setting a person chooses: TrainConfig's fields, then ARCH_OPTIONS."""
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name not in NOT_SET_BY_HAND]
    for f in fields:
        if "help" not in f.metadata:
            raise TypeError(f"TrainConfig.{f.name}: declare it with setting(...)")
    return (*(Setting(f.name, f.default, **f.metadata) for f in fields), *ARCH_OPTIONS)


def train_args(config: TrainConfig) -> list[str]:
    """The `python -m fer_core train` flags that reproduce `config` (all but --out): a value for
    every field, a bool's flag when it is away from its default, and the arch options set."""
    unknown = set(config.arch_options) - {s.name for s in ARCH_OPTIONS}
    if unknown:
        raise FerError(f"arch option(s) {', '.join(sorted(unknown))} have no train flag")
    args = []
    for s in settings():
        if s.arch and s.name not in config.arch_options:
            continue
        value = config.arch_options[s.name] if s.arch else getattr(config, s.name)
        if not isinstance(s.default, bool):
            args += [s.option, str(value)]
        elif value != s.default:
            args.append(s.option)
    return args
