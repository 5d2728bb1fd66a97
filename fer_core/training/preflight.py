"""What a training can be refused for before its run folder is touched.

`fer train` and the Training form call `check_before_folder` first, so a setting, a dataset or an
--init checkpoint that cannot train leaves no folder behind (no run.lock, no failed status.json)
and is said as one line. A failure after that is a failed run, recorded in the folder. The
Trainer makes the same checks itself, for callers that build it directly.
"""

import shutil
from pathlib import Path

from torch import nn

from .. import distributed
from ..data.dataset import FaceDataset
from ..data.matching import for_model
from ..data.task import Task
from ..device import choose_device
from ..errors import FerError
from ..models.architectures import arch_options, build_model
from ..models.checkpoint import load_weights, read_payload, resolve_checkpoint_path
from ..models.imported import (
    CODE,
    IMPORTED,
    TORCHVISION,
    TRAINABLE_KINDS,
    check_torchvision_name,
)
from .config import TrainConfig
from .targets import refuse_labels


def check_before_folder(config: TrainConfig, dataset: FaceDataset, resume: bool = False) -> None:
    """Raise FerError for the settings, the device, the dataset or the --init checkpoint (unless
    resuming: a resume takes last.pt's weights) that this training cannot start with."""
    adopt_imported_init(config)
    config.validate()
    if config.arch.startswith(TORCHVISION):
        check_torchvision_name(config.arch.removeprefix(TORCHVISION), "--arch " + TORCHVISION)
    refuse_setup(config, distributed.launched_world(), choose_device(config.device))
    refuse_dataset(dataset, config)
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


def refuse_dataset(dataset: FaceDataset, config: TrainConfig) -> None:
    """A dataset without two labelled training faces has nothing to train on; a vote mode
    needs votes (`targets.refuse_labels`)."""
    rows = dataset.indices("train")
    if (dataset.labels[rows] >= 0).sum() < 2:
        raise FerError(f"dataset {dataset.name} has no labelled training faces to train on")
    refuse_labels(config, dataset)


def adopt_imported_init(config: TrainConfig) -> None:
    """An --init run that `import-model` made from a torchvision or factory model is fine-tuned
    as it is: the config takes its architecture ("imported") and options (where the model came
    from, its normalization). Other --init checkpoints leave the config alone."""
    if not config.init or (config.arch == IMPORTED and "kind" in config.arch_options):
        return  # nothing to adopt, or adopted already (the CLI, preflight and Trainer each ask)
    payload = read_payload(resolve_checkpoint_path(config.init))
    if payload["arch"] != IMPORTED:
        return
    options = payload["arch_options"]
    if options["kind"] not in TRAINABLE_KINDS:
        raise FerError(f"--init {config.init}: a {options['kind']} model cannot be trained here "
                       f"(its file keeps no modules to train): import its state dict with "
                       f"--torchvision or --factory instead")
    if config.arch not in (IMPORTED, TrainConfig.arch):
        raise FerError(f"--init {config.init} holds an imported {options['kind']} model, not a "
                       f"{config.arch}: leave --arch out to fine-tune it")
    config.arch = IMPORTED
    config.arch_options = {k: options[k] for k in ("kind", "name", "mean", "std")}


def as_init_sees_it(config: TrainConfig, dataset: FaceDataset) -> FaceDataset:
    """The data as an imported --init model takes it (`matching.for_model`: its classes matched
    by name, faces at its size and channels, said in the notes); as it is otherwise."""
    if config.arch != IMPORTED:
        return dataset
    return for_model(dataset, Task.from_meta(read_payload(resolve_checkpoint_path(config.init))))


def init_folder(config: TrainConfig) -> Path:
    """The run folder of the --init checkpoint (an imported model's code is there)."""
    return resolve_checkpoint_path(config.init).parent


def keep_imported_code(config: TrainConfig, run: Path) -> None:
    """A fine-tune of a factory run keeps the code it was built from in its own folder, so it
    loads on its own (copied from the --init run, never named by the user)."""
    if config.arch != IMPORTED or config.arch_options["kind"] != "factory":
        return
    source = init_folder(config) / CODE
    if source.is_dir() and not (run / CODE).is_dir():
        shutil.copytree(source, run / CODE)


def built_from(config: TrainConfig, run: Path) -> Path | None:
    """Where an imported model's files are read from while it trains: the --init run's folder
    (every rank reads it there while rank 0 copies the code), else this run's."""
    if config.arch != IMPORTED:
        return None
    source = init_folder(config)
    return source if (source / CODE).is_dir() else run


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
        where = {"folder": str(init_folder(config))} if config.arch == IMPORTED else {}
        model = build_model(config.arch, trained_for,
                            **arch_options(config.arch, **config.arch_options), **where)
    load_weights(model, payload["model"], source, payload["arch"])


def refuse_other_task(what: str, trained_for: Task, data: Task,
                      error: type[FerError] = FerError) -> None:
    """`error` when `what` (a checkpoint) was trained for another task than the data's: its
    weights would not fit, or its outputs would mean other classes."""
    if trained_for != data:
        raise error(f"{what} was trained for {trained_for.named()}; the data is "
                    f"{data.named()}")
