"""What a training can be refused for before its run folder is touched.

`fer train` and the Training form call `check_before_folder` first, so a setting, a dataset or an
--init checkpoint that cannot train leaves no folder behind (no run.lock, no failed status.json)
and is said as one line. A failure after that is a failed run, recorded in the folder. The
Trainer makes the same checks itself, for callers that build it directly.
"""

from torch import nn

from .. import distributed
from ..data.dataset import FaceDataset
from ..data.task import Task
from ..device import choose_device
from ..errors import FerError
from ..models.architectures import arch_options, build_model
from ..models.checkpoint import load_weights, read_payload, resolve_checkpoint_path
from .config import TrainConfig


def check_before_folder(config: TrainConfig, dataset: FaceDataset, resume: bool = False) -> None:
    """Raise FerError for the settings, the device, the dataset or the --init checkpoint (unless
    resuming: a resume takes last.pt's weights) that this training cannot start with."""
    config.validate()
    refuse_setup(config, distributed.launched_world(), choose_device(config.device))
    refuse_dataset(dataset)
    if config.init and not resume:
        load_init(config, dataset.task)


def refuse_setup(config: TrainConfig, world: distributed.World, device) -> None:
    """One clear line, before any process group is joined, for settings the ranks cannot train
    with."""
    if config.sync_bn and device.type != "cuda":
        raise FerError(f"--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm runs only there), "
                       f"not {device.type}")
    if config.batch_size % world.size:
        raise FerError(f"the global batch of {config.batch_size} faces does not divide among "
                       f"{world.size} ranks: choose a multiple of {world.size}")


def refuse_dataset(dataset: FaceDataset) -> None:
    """A dataset without two labelled training faces has nothing to train on."""
    rows = dataset.indices("train")
    if (dataset.labels[rows] >= 0).sum() < 2:
        raise FerError(f"dataset {dataset.name} has no labelled training faces to train on")


def load_init(config: TrainConfig, task: Task | None = None,
              model: nn.Module | None = None) -> None:
    """Load --init's weights into `model`, built for `task` (when None, into a model built here
    with the configured options, which only checks them): the checkpoint must hold the
    configured architecture, for `task` (the data's; None: its own, when no data is at hand),
    and its weights fit (CheckpointError or FerError)."""
    source = resolve_checkpoint_path(config.init)
    payload = read_payload(source)
    if payload["arch"] != config.arch:
        raise FerError(f"--init {config.init}: it holds a {payload['arch']}, not a "
                       f"{config.arch}")
    trained_for = Task.from_meta(payload)
    refuse_other_task(f"--init {config.init}", trained_for, task or trained_for)
    if model is None:
        model = build_model(config.arch, trained_for,
                            **arch_options(config.arch, **config.arch_options))
    load_weights(model, payload["model"], source, payload["arch"])


def refuse_other_task(what: str, trained_for: Task, data: Task,
                      error: type[FerError] = FerError) -> None:
    """`error` when `what` (a checkpoint) was trained for another task than the data's: its
    weights would not fit, or its outputs would mean other classes."""
    if trained_for != data:
        raise error(f"{what} was trained for {trained_for.named()}; the data is "
                    f"{data.named()}")
