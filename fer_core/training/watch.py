"""What a run keeps of how its model learned: the probe faces' maps at the end of every epoch
(probes.py) and half-precision snapshots at the epochs its plan names (snapshots.py). Rank 0 alone
keeps either; neither draws a random number, so a watched run trains exactly as one unwatched."""

from pathlib import Path

import torch
from torch import nn

from ..data.dataset import FaceDataset
from ..models.architectures import last_conv_stage
from .config import TrainConfig
from .probes import choose_probes, drop_epochs_after, probe_maps, write_epoch, write_faces
from .snapshots import SNAPSHOTS, prune_snapshots, snapshot_epochs, snapshot_path


class Watch:
    """The probes and snapshots of one run, in its folder `run`."""

    def __init__(self, config: TrainConfig, dataset: FaceDataset, run: Path, main: bool,
                 model: nn.Module, device: torch.device):
        """Chooses the probe faces, puts them on `device` and finds their Grad-CAM layer with
        `model` in eval mode: no batch-norm statistic moves, no random draw."""
        self.run, self.main = run, main
        self.snapshots = config.snapshots
        self.plan = snapshot_epochs(config.epochs, config.snapshots)
        chosen = (choose_probes(dataset, config.probes, config.seed)
                  if config.probes and main else None)
        self.probes = chosen if chosen is not None and len(chosen.rows) else None
        if self.probes is None:
            return
        self.faces = torch.from_numpy(self.probes.images).to(device).float().div_(255)
        model.eval()
        self.layer = last_conv_stage(model, dataset.task.shape)
        model.train()

    def start(self) -> None:
        """The snapshots' folder and the probe faces, before the first epoch."""
        if self.snapshots:
            (self.run / SNAPSHOTS).mkdir(exist_ok=True)
        if self.probes is not None:
            write_faces(self.run, self.probes, self.layer)

    def snapshot_due(self, epoch: int) -> Path | None:
        """Where the snapshot of `epoch` goes, or None when the plan takes none then."""
        return snapshot_path(self.run, epoch) if self.main and epoch in self.plan else None

    def probe(self, epoch: int, shipped: nn.Module, model: nn.Module) -> None:
        """The probe maps of `epoch` by the weights `shipped`; `model` is left training."""
        if self.probes is None:
            return
        write_epoch(self.run, epoch, probe_maps(shipped, self.faces, self.layer))
        model.train()

    def forget_after(self, done: int) -> None:
        """A resumed run: the probe maps after epoch `done` go (they are computed again), and
        the snapshots its plan no longer takes (it may plan another number of epochs)."""
        drop_epochs_after(self.run, done)
        prune_snapshots(self.run, self.plan)
