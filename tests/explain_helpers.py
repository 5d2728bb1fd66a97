"""Models of other tasks for the explanation tests: untrained ones (the trainer is not needed to
explain a model of any task), saved as checkpoint files where a command or a cache wants one."""

from pathlib import Path

import torch

from fer_core.data.task import Task
from fer_core.models.architectures import arch_options, build_model
from fer_core.models.checkpoint import make_payload, save_atomic


def untrained_checkpoint(folder: Path, task: Task, arch: str = "cnn3", seed: int = 0,
                         data: str = "builtin") -> Path:
    """A run folder under `folder` holding best.pt: an untrained `arch` (seeded) for `task`,
    recorded as trained on `data`. Returns the run folder."""
    torch.manual_seed(seed)
    model = build_model(arch, task)
    run = folder / f"untrained-{arch}-{task.size}-{task.channels}-{task.num_classes}"
    run.mkdir(parents=True, exist_ok=True)
    save_atomic(make_payload(model, arch=arch, arch_options=arch_options(arch), task=task,
                             dataset={"name": data}, epoch=0, metrics={},
                             config={"data": data}), run / "best.pt")
    return run
