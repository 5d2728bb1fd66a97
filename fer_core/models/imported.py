"""Models trained elsewhere, imported as runs (`python -m fer_core import-model`).

Four formats, each rebuilt by `rebuild` when the run's checkpoint loads:
- torchvision: any classification builder of `torchvision.models`, built with the class count
  (so a state dict whose one `Linear` classifier was replaced after building loads as it is),
  its first convolution made to take the declared channels, then the state dict;
- factory: `MODULE:CALLABLE` returning the `nn.Module`, imported from the run folder's `code/`
  (copied there from `--code` at import), then the state dict;
- torchscript: a `torch.jit.save` file, kept in the run folder as `model.ts`;
- program: a `torch.export.save` file, kept as `model.pt2`.

State dicts are read with `torch.load(weights_only=True)`: a file saved with `torch.save(model)`
(a pickled module) is refused without running any of its code.

The pixels' normalization (`--mean`/`--std`, applied to pixels in [0, 1]) runs before the
model: first in the forward of torchvision and factory models (`_normalizing`), so their modules
keep their own names (`layer4.1.conv2`) and state-dict keys, or as the first module of a
wrapper for TorchScript and exported programs. Every attribution therefore stays in pixel space, as for our own models. ReLUs are
made out of place and torchvision's ResNet blocks are rewritten as ours are
(`hook_safe_basic_block`), since an in-place ReLU, or one module called twice, breaks hooks and
some Captum methods; state-dict keys are unchanged.
"""

import functools
import importlib
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import FerError
from .resnet_blocks import hook_safe_basic_block, torchvision_resnet

IMPORTED = "imported"  # the architecture name of a model trained elsewhere
TORCHVISION = "torchvision:"  # `--arch torchvision:NAME`: a torchvision classifier trained here

KINDS = ("torchvision", "factory", "torchscript", "program")
TRAINABLE_KINDS = ("torchvision", "factory")  # rebuilt as modules: `train --init` fine-tunes them
FILES = {"torchscript": "model.ts", "program": "model.pt2"}
CODE = "code"
MARK = "fer_imported"  # the attribute `normalized` sets on an imported model


class ChannelNormalize(nn.Module):
    """(x - mean) / std per channel, for pixels in [0, 1]."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        if not all(s > 0 for s in std):
            raise FerError(f"--std must be above 0, got {','.join(map(str, std))}")
        self.mean, self.std = list(mean), list(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std


def build_source(options: dict, classes: int, channels: int, folder: Path) -> nn.Module:
    """The bare model (no normalization, no weights) an import's `options` describe."""
    kind, name = options["kind"], options["name"]
    if kind == "torchvision":
        return fit_first_conv(torchvision_model(name, classes), channels)
    if kind == "factory":
        return factory_model(name, folder / CODE)
    if kind == "torchscript":
        return load_torchscript(folder / FILES[kind])
    if kind == "program":
        return load_program(folder / FILES[kind])
    raise FerError(f"unknown import kind {kind!r}: one of {', '.join(KINDS)}")


def build_imported(task, kind: str, name: str, mean: list[float], std: list[float],
          folder: str) -> nn.Module:
    """The imported model of run folder `folder` for `task` (its classes, channels), with the
    normalization in front and hook-safe ReLUs: untrained for torchvision and factory models
    (their state dict loads into it: `rebuild`), as saved for the files. `build_model` calls
    it for the architecture "imported", whose options these are."""
    options = {"kind": kind, "name": name}
    model = build_source(options, task.num_classes, task.channels, Path(folder))
    return normalized(hook_safe(model), mean, std, kind)


def rebuild(options: dict, task, state: dict, folder: Path) -> nn.Module:
    """The imported model of a run folder, weights loaded."""
    model = build_imported(task, **{**options, "folder": str(folder)})
    if options["kind"] in ("torchvision", "factory"):
        load_strict(model, state, folder / "best.pt")
    return model


def torchvision_model(name: str, classes: int, flag: str = "--torchvision ") -> nn.Module:
    """torchvision's classifier `name`, untrained, with `classes` outputs (`flag` starts the
    error's line: the option that named it)."""
    check_torchvision_name(name, flag)
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=classes)


def check_torchvision_name(name: str, flag: str = "--torchvision ") -> None:
    """FerError unless torchvision has a classifier `name`."""
    torchvision_resnet()  # a broken torchvision: one FerError line
    import torchvision

    if name not in torchvision.models.list_models(torchvision.models):
        raise FerError(f"{flag}{name}: not a classification model of torchvision "
                       f"{torchvision.__version__} (e.g. resnet18, efficientnet_b0, vit_b_16)")


def build_torchvision(task, name: str, mean: float, std: float) -> nn.Module:
    """`--arch torchvision:NAME`: torchvision's classifier NAME trained here for `task` (its
    classes and channels), untrained, hook-safe, the pixels normalized by `mean` and `std` (one
    value for every channel) first, as an imported torchvision model is."""
    model = fit_first_conv(torchvision_model(name, task.num_classes, "--arch " + TORCHVISION),
                           task.channels)
    return normalized(hook_safe(model), [mean] * task.channels, [std] * task.channels,
                      "torchvision")


def fit_first_conv(model: nn.Module, channels: int) -> nn.Module:
    """The model with its first Conv2d taking `channels` input channels (same shape
    otherwise): torchvision builds every model for 3."""
    name, conv = first_conv(model)
    if conv is None or conv.in_channels == channels:
        return model
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None, conv.padding_mode))
    return model


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d | None]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return "", None


def factory_model(spec: str, code: Path | None) -> nn.Module:
    """`MODULE:CALLABLE`() imported with `code` first on the path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise FerError(f"--factory {spec}: expected MODULE:CALLABLE, e.g. mynet:build")
    added = code is not None and code.is_dir() and str(code) not in sys.path
    if added:
        sys.path.insert(0, str(code))
        cached = sys.modules.get(module_name)
        if cached is not None and not str(getattr(cached, "__file__", "")).startswith(str(code)):
            del sys.modules[module_name]  # another run's module of the same name
    try:
        module = importlib.import_module(module_name)
        built = getattr(module, attribute)()
    except Exception as e:  # noqa: BLE001  (a user's code can raise anything)
        raise FerError(f"--factory {spec}: {type(e).__name__}: {first_line(e)}") from None
    finally:
        if added:
            sys.path.remove(str(code))
    if not isinstance(built, nn.Module):
        raise FerError(f"--factory {spec}: returned a {type(built).__name__}, not an nn.Module")
    return built


def load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise FerError(f"{path}: not a TorchScript file (saved with torch.jit.save): "
                       f"{first_line(e)}") from None


class Exported(nn.Module):
    """An exported program's module. It runs as it was exported (in eval mode) and refuses
    train() and eval() ("not supported yet"), which every scoring path calls: here they set
    this wrapper's flag only."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "Exported":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def load_program(path: Path) -> nn.Module:
    try:
        return Exported(torch.export.load(str(path)).module())
    except Exception as e:  # noqa: BLE001
        raise FerError(f"{path}: not an exported program (saved with torch.export.save): "
                       f"{first_line(e)}") from None


def read_state_dict(path: Path) -> dict:
    """A state dict read with weights_only=True; a pickled module is refused unrun."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FerError(f"{path}: no such file") from None
    except pickle.UnpicklingError:
        raise FerError(f"{path}: a pickled module or object (torch.save(model)), refused without "
                       f"running it: save model.state_dict() or a TorchScript file "
                       f"(torch.jit.save) instead") from None
    except Exception as e:  # noqa: BLE001
        raise FerError(f"{path}: not a PyTorch state dict ({first_line(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FerError(f"{path}: not a state dict (a dict of tensors)")
    return state


def load_strict(model: nn.Module, state: dict, where: Path) -> None:
    """load_state_dict(strict): missing and unexpected keys listed, or a shape that differs."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise FerError(f"{where}: the weights do not fit the model: "
                       f"{' '.join(str(e).split())[:300]}") from None
    if missing or unexpected:
        parts = [f"{label} {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise FerError(f"{where}: the weights do not fit the model: {'; '.join(parts)}")


def hook_safe(model: nn.Module) -> nn.Module:
    """ReLUs out of place, torchvision BasicBlocks as ours (one ReLU module per use)."""
    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        block_class = hook_safe_basic_block()
    except FerError:
        block_class = None
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
        if block_class is not None and type(module) is block_class.__base__:
            module.__class__ = block_class
            module.relu_out = nn.ReLU()
    return model


def normalized(model: nn.Module, mean: list[float], std: list[float], kind: str) -> nn.Module:
    """`model` with the normalization run first (see the module docstring), marked imported."""
    normalize = ChannelNormalize(mean, std)
    if kind in ("torchvision", "factory"):
        model.__class__ = _normalizing(type(model))
        object.__setattr__(model, "pixel_normalize", normalize)  # not a submodule: no key
    else:
        model = nn.Sequential(normalize, model)
    setattr(model, MARK, True)
    return model


@functools.cache
def _normalizing(cls: type) -> type:
    """`cls` whose forward normalizes its input first. Inside forward, not a forward pre-hook:
    the forward pre-hooks attribution libraries put on a model (Captum's DeepLift joins the
    faces and their baselines in one) then run before the normalization, as on any model."""

    def forward(self, x, *args, **kwargs):
        return cls.forward(self, self.pixel_normalize(x), *args, **kwargs)

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__})


def foreign_arch(arch: str) -> bool:
    """Whether `arch` names a model built by code other than ours: imported, or a torchvision
    classifier trained here (both marked by `normalized`)."""
    return arch == IMPORTED or arch.startswith(TORCHVISION)


def is_imported(model: nn.Module) -> bool:
    """Whether `model` is built by code other than ours (`foreign_arch`)."""
    return getattr(model, MARK, False)


def layers_problem(model: nn.Module) -> str | None:
    """Why the layers of `model` cannot be watched by hooks (which the layer table, Grad-CAM,
    filters, embeddings and the pages' predictions use), or None: a TorchScript module allows
    no hooks, and an exported program does not keep its modules as they were."""
    for module in model.modules():
        if isinstance(module, torch.jit.ScriptModule):
            return ("a TorchScript model's layers cannot be watched (PyTorch allows no hooks on "
                    "them)")
        if isinstance(module, Exported):
            return "an exported program's layers cannot be watched (it keeps no modules to hook)"
    return None


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
