"""Probe faces: a fixed set of validation faces (about one per class, chosen by the run's seed)
whose gradient map and Grad-CAM the trainer computes at the end of every epoch, so that a page
can show how the model learned to look.

    <run folder>/probes/faces.json        the probes: split positions, dataset rows, labels, the
                                           Grad-CAM layer
    <run folder>/probes/faces.npy         their pixels (N x C x H x W uint8, as the data's task
                                           holds faces; a run written before tasks holds
                                           N x 48 x 48), so a page draws them without loading
                                           the run's data
    <run folder>/probes/epoch-0001.npz    per epoch: probs (N x classes float32), gradient and
                                           gradcam (N x H x W float16), both of each face's
                                           predicted class

Plain autograd, no Captum (the trainer runs where Captum is absent): the gradient map is
|d logit / d pixel| (summed over the colour channels of a colour face, as `explain` sums every
method's map) and Grad-CAM the ReLU of the layer's channels weighted by their mean
gradients, upsampled bilinearly, as `explain`'s vanilla and gradcam compute them. The maps draw
no random numbers and the probes are chosen by a generator of their own, so a run with probes
trains exactly as one without.
"""

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_file, write_json
from ..data.dataset import FaceDataset

PROBES = "probes"
FACES = "faces.json"
PIXELS = "faces.npy"
_EPOCH = re.compile(r"epoch-(\d{4})\.npz")
MAPS = ("gradient", "gradcam")


@dataclass(frozen=True)
class Probes:
    """The probe faces: positions within the val split, dataset rows, labels and pixels."""

    positions: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    images: np.ndarray  # uint8 N x C x H x W


def choose_probes(dataset: FaceDataset, count: int, seed: int) -> Probes:
    """`count` labelled val faces: one of each class in turn (classes without val faces
    skipped), drawn by a generator seeded from `seed` alone."""
    rows = dataset.indices("val")
    labels = dataset.labels[rows]
    rng = np.random.default_rng([seed, 0x9E0B])
    pools = [list(rng.permutation(np.flatnonzero(labels == k)))
             for k in range(dataset.task.num_classes)]
    chosen = []
    while len(chosen) < count and any(pools):
        chosen += [pool.pop() for pool in pools if pool][:count - len(chosen)]
    positions = np.asarray(chosen, dtype=np.int64)
    return Probes(positions=positions, rows=rows[positions], labels=labels[positions],
                  images=dataset.images[rows[positions]])


def probe_maps(model: nn.Module, faces: torch.Tensor, layer: str) -> dict[str, np.ndarray]:
    """The probes' probabilities and both maps of each face's predicted class, from one forward
    and one backward pass of `model` in eval mode (the caller restores its mode)."""
    model.eval()
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: captured.append(out))
    x = faces.detach().float().requires_grad_(True)
    try:
        with torch.autocast(x.device.type, enabled=False):
            logits = model(x)
            predicted = logits.argmax(1)
            score = logits.gather(1, predicted[:, None]).sum()
            pixels, activation = torch.autograd.grad(score, [x, captured[0]])
    finally:
        handle.remove()
    weights = activation.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * captured[0]).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear")
    return {"probs": logits.softmax(1).detach().float().cpu().numpy(),
            "gradient": pixels.abs().sum(1).detach().cpu().numpy().astype(np.float16),
            "gradcam": cam.squeeze(1).detach().cpu().numpy().astype(np.float16)}


def write_faces(run: str | os.PathLike, probes: Probes, layer: str) -> None:
    folder = Path(run) / PROBES
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / PIXELS, "wb") as f:
        np.save(f, probes.images)
    write_json(folder / FACES, {"split": "val", "positions": probes.positions.tolist(),
                                "rows": probes.rows.tolist(), "labels": probes.labels.tolist(),
                                "layer": layer})


def write_epoch(run: str | os.PathLike, epoch: int, maps: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **maps)
    with atomic_file(Path(run) / PROBES / f"epoch-{epoch:04d}.npz", "wb") as f:
        f.write(buffer.getvalue())


def drop_epochs_after(run: str | os.PathLike, done: int) -> None:
    """Remove the probe maps of epochs after `done` (a resumed run computes them again)."""
    for epoch, path in _epoch_files(Path(run)):
        if epoch > done:
            path.unlink(missing_ok=True)


def _epoch_files(run: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), p) for p in (run / PROBES).glob("epoch-*.npz")
                  if (m := _EPOCH.fullmatch(p.name)))


@dataclass(frozen=True)
class Timeline:
    """A run's probe maps over its epochs: `probs` E x N x classes, `gradient` and `gradcam`
    E x N x H x W (float32), for `epochs` (E) and the probe faces (`images` N x C x H x W)."""

    epochs: list[int]
    positions: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    images: np.ndarray | None  # the probes' pixels (None when their file cannot be read)
    layer: str
    probs: np.ndarray
    gradient: np.ndarray
    gradcam: np.ndarray


def _read_pixels(path: Path) -> np.ndarray | None:
    """The probes' pixels N x C x H x W (a run written before tasks saved grey N x H x W), or
    None when the file cannot be read."""
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return images[:, None] if images.ndim == 3 else images


def read_timeline(run: str | os.PathLike) -> Timeline | None:
    """The probe maps written so far (epochs whose file cannot be read are skipped: one being
    written by a live run is complete or absent, never half there), or None for a run without
    probes."""
    run = Path(run)
    try:
        faces = json.loads((run / PROBES / FACES).read_text())
    except (OSError, ValueError):
        return None
    images = _read_pixels(run / PROBES / PIXELS)
    epochs, arrays = [], []
    for epoch, path in _epoch_files(run):
        try:
            with np.load(path) as data:
                arrays.append({name: data[name] for name in ("probs", *MAPS)})
        except (OSError, ValueError, KeyError):
            continue
        epochs.append(epoch)
    if not epochs:
        return None
    stacked = {name: np.stack([a[name] for a in arrays]).astype(np.float32)
               for name in ("probs", *MAPS)}
    return Timeline(epochs=epochs, positions=np.asarray(faces["positions"]),
                    rows=np.asarray(faces["rows"]), labels=np.asarray(faces["labels"]),
                    images=images, layer=faces["layer"], **stacked)
