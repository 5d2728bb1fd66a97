"""Checkpoints: weights plus the metadata that makes them self-describing, saved atomically and
loaded with `torch.load(weights_only=True)` only.
"""

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_file
from ..data.readers import is_builtin_spec
from ..data.task import Task
from ..errors import CheckpointError, FerError
from . import imported
from .architectures import build_model

FORMAT = "fer_core.checkpoint"  # the tag every saved checkpoint carries: never renamed
VERSION = 1
REQUIRED_KEYS = ("format", "version", "arch", "arch_options", "classes", "input_size", "model")
# The input normalization of every checkpoint saved before arch_options recorded it: such a
# checkpoint keeps these values whatever models.DEFAULT_OPTIONS says later.
UNRECORDED_NORMALIZATION = {"mean": 0.508, "std": 0.255}
# The type each metadata field must have where present (pages read them, so a checkpoint
# with other types is refused when it loads).
FIELD_TYPES = {"version": int, "arch": str, "arch_options": dict, "classes": list,
               "input_size": int, "channels": int, "model": dict, "dataset": dict, "epoch": int, "metrics": dict,
               "config": dict}


@dataclass
class Checkpoint:
    """A loaded model (in eval mode, on the requested device) and its metadata."""

    model: nn.Module
    meta: dict
    path: Path

    @property
    def arch(self) -> str:
        return self.meta["arch"]

    @property
    def arch_options(self) -> dict:
        """The options the architecture was built with (dropout, head, normalization...)."""
        return self.meta.get("arch_options", {})

    @property
    def task(self) -> Task:
        """The classes it outputs, in order, and the image size and channels it takes."""
        return Task.from_meta(self.meta)

    @property
    def trained_on_builtin(self) -> bool:
        """Whether the model learned from the built-in synthetic faces (its training data spec
        says builtin), so that a real photo is far from anything it has seen."""
        data = self.meta.get("config", {}).get("data") or self.meta.get("dataset", {}).get("name")
        return is_builtin_spec(str(data or "builtin"))


def make_payload(model: nn.Module, *, arch: str, arch_options: dict, task: Task, dataset: dict,
                 epoch: int, metrics: dict, config: dict,
                 training_state: dict | None = None) -> dict:
    """The dict saved to a .pt file; `training_state` (optimizer, RNG...) only in last.pt."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "arch_options": dict(arch_options),
        **task.to_meta(),
        "dataset": dict(dataset),
        "epoch": epoch,
        "metrics": dict(metrics),
        "config": dict(config),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return payload


def save_atomic(payload: dict, path: str | os.PathLike) -> None:
    """torch.save, atomically (see `fer_core.atomic`)."""
    with atomic_file(path, "wb") as f:
        torch.save(payload, f)


def save_half(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """The weights of checkpoint `source` in half precision, without its training state, saved
    to `target`: how a shipped run's best.pt is kept small (a ResNet18: 22.3 MB, not 44.7).
    Loading casts them back to fp32, so predictions differ from the source's by fp16 rounding."""
    save_atomic(half_payload(read_payload(source)), target)


def half_payload(payload: dict) -> dict:
    """A checkpoint payload with its floating weights in half precision and no training state."""
    halved = {k: v for k, v in payload.items() if k != "training_state"}
    halved["model"] = {k: v.half() if v.is_floating_point() else v
                       for k, v in payload["model"].items()}
    return halved


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A run folder means its best.pt (or last.pt when no best exists); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: run folder has no best.pt or last.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    return path


def read_payload(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, loaded safely; any failure is a CheckpointError saying why."""
    path = resolve_checkpoint_path(path)
    if not looks_whole(path):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (truncated, or another kind of file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it holds pickled code or objects that a weights-only load "
            f"does not allow ({_first_line(e)})") from None
    # A damaged pickle or zip surfaces in many ways (KeyError, IndexError, struct.error,
    # UnicodeDecodeError... from the weights-only unpickler): each only means unreadable.
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fer_core checkpoint (no '{FORMAT}' format tag)")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    wrong = [k for k, kind in FIELD_TYPES.items()
             if k in payload and not (isinstance(payload[k], kind)
                                      and not isinstance(payload[k], bool))]
    if wrong:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({', '.join(wrong)} of the "
                              f"wrong type)")
    if payload["version"] > VERSION:
        raise CheckpointError(f"{path}: checkpoint format v{payload['version']} is newer than this "
                              f"fer_core (v{VERSION}); upgrade fer_core")
    return payload


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild the named architecture and load the weights into it, in eval mode on `device`."""
    resolved = resolve_checkpoint_path(path)
    payload = read_payload(resolved)
    if payload["arch"] == imported.IMPORTED:
        return _load_imported(payload, resolved, device)
    options = {**UNRECORDED_NORMALIZATION, **payload["arch_options"]}
    try:
        model = build_model(payload["arch"], Task.from_meta(payload), **options)
    except FerError as e:
        raise CheckpointError(f"{resolved}: {e}") from None
    except (TypeError, ValueError) as e:  # an option of the wrong type or range
        raise CheckpointError(f"{resolved}: arch_options do not fit {payload['arch']!r} "
                              f"({_first_line(e)})") from None
    load_weights(model, payload["model"], resolved, payload["arch"])
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in ("model", "training_state")}
    return Checkpoint(model=model, meta=meta, path=resolved)


def _load_imported(payload: dict, path: Path, device) -> Checkpoint:
    """A model imported by `import-model` (see `imported`), rebuilt from its run folder."""
    task = Task.from_meta(payload)
    try:
        model = imported.rebuild(payload["arch_options"], task, payload["model"], path.parent)
    except FerError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k != "model"}
    # where its files are, so that build_model("imported", **arch_options) rebuilds it
    # (mean and std as tuples: options are hashed by the layer registry's and pages' caches)
    meta["arch_options"] = {**meta["arch_options"], "folder": str(path.parent),
                            **{k: tuple(meta["arch_options"][k]) for k in ("mean", "std")}}
    return Checkpoint(model=model, meta=meta, path=path)


def load_weights(model: nn.Module, state: dict, path: Path, arch: str) -> None:
    """load_state_dict(strict=True), with mismatches reported as one readable line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise CheckpointError(
            f"{path}: weights do not fit architecture {arch!r}: {detail}") from None


def looks_whole(path: str | os.PathLike) -> bool:
    """Whether a checkpoint file has the zip container every PyTorch checkpoint has: a cheap
    test (it reads the file's end) that a truncated file fails; it does not load anything.
    zipfile.is_zipfile raises BadZipFile itself on some damaged directories."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return False


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def snapshot_lr(meta: dict) -> float:
    """The learning rate of a checkpoint's epoch, from its metadata (`metrics.lr`, which
    snapshots record; else its config's): the weight of a snapshot in TracIn."""
    lr = meta.get("metrics", {}).get("lr")
    return float(lr if lr is not None else meta.get("config", {}).get("lr", 1.0))
