"""Modules called more than once in one forward pass.

A model trained elsewhere may call one module at two places (one `nn.ReLU()` after every
convolution, as torchvision's BasicBlock does). A hook on such a module sees two activations per
face, and Captum's DeepLift and Guided Backprop, which hook every nonlinearity, fail or
mis-attribute on it. Our own models and imported torchvision ResNets use one module per call
(`hook_safe_basic_block`); for any other model this finds the reused ones, so that what needs
a module once can say so in one line.
"""

import weakref
from collections import Counter

import torch
from torch import nn

from ..errors import FerError

_FOUND: "weakref.WeakKeyDictionary[nn.Module, dict[str, int]]" = weakref.WeakKeyDictionary()


def reused_modules(model: nn.Module, shape: tuple[int, int, int],
                   working: nn.Module | None = None) -> dict[str, int]:
    """{name: calls} of the leaf modules of `model` called more than once in one forward of a
    face of `shape` (C, H, W); found once per model (a face's forward), in eval mode, on
    `working` when given: a copy that shares its weights (`hook_model`), so that no hook lands
    on a model other threads run."""
    found = _FOUND.get(model)
    if found is None:
        found = _FOUND[model] = _count_calls(model if working is None else working, shape)
    return found


def _count_calls(model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
    calls, hooks = Counter(), []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, _o, name=name: calls.update((name,))))
    if not hooks:  # TorchScript or an exported program: no modules to hook
        return {}
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: n for name, n in calls.items() if n > 1}


def refuse_reused(model: nn.Module, working: nn.Module, shape: tuple[int, int, int], what: str,
                  layer: str | None = None) -> None:
    """FerError saying that `what` (a method, or a layer's hook) cannot run because `layer`
    (None: any module) is called more than once in one forward (found on `working`)."""
    reused = reused_modules(model, shape, working)
    names = [layer] if layer in reused else [] if layer is not None else sorted(reused)
    if names:
        instead = ("choose another layer" if layer is not None
                   else "the gradient methods, Occlusion and Grad-CAM still work")
        raise FerError(f"{what} cannot run on this model: its module {names[0]!r} is called "
                       f"{reused[names[0]]} times in one forward, and a hook on it would see "
                       f"every call; {instead}")
