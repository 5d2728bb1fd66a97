"""Activation maximization: the image that drives a filter (or a class logit) hardest, found by
gradient ascent on the input, natively at the model's task's size and channels (a grey image for
a grey model, a colour one for a colour model).

Many filters run at once: each filter's image is one item of a batch, optimized together in one
forward and backward pass per step that stops at the target layer. Everything random (the
starting noise, each step's jitter and scaling) is drawn per image from a generator seeded by
(seed, filter), so a filter's image is the same whether it ran alone or in a batch; Adam's
updates are per element and the model is in eval mode, so batch items never mix.

A ReLU output that is zero at the start has zero gradient, so it never moves: plain Adam ascent
of the shipped builtin-cnn3's block3.relu left 3 of 8 filters at 0 from grey and 2 of 8 from
noise, where each filter's best real face reaches 0.6-1.1. So for a ReLU layer the ascent climbs
the softplus of its pre-activation (the ReLU's input, as Lucid climbs "pre_relu" layers; for
ResNet's relu_out that includes the shortcut): close to the ReLU, with a gradient everywhere.
Climbing the bare pre-activation instead left 2 of 8 sampled block1 filters of the shipped
builtin-cnn3 below the best real face (its mean counts the positions the ReLU would clip); the
reported activation is the ReLU's own. Pixels stay valid face inputs in [0, 1]: the image is a
sigmoid (stretched a little and clipped, so pure black and white are reachable) of the
parameters (plain pixels) or of an inverse FFT of 1/f-scaled frequencies (the Fourier
parameterization of Lucid and Lucent).

The model is never modified: the work runs on a frozen eval-mode copy (channels-last, each
BatchNorm folded into its conv), and gradients are taken with respect to the image parameters
only. Where the device computes bfloat16 natively (this project's CPU, A100/H100 GPUs) the
ascent runs under bf16 autocast, about 3x faster on the CPU (benchmarks/bench_filters.py); the
reported activations are fp32.
"""

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..choices import FILTER_PRECISIONS
from ..data.task import Task
from ..device import native_bf16
from ..errors import FerError
from ..models.architectures import layer_registry
from .filter_stats import outputs_of
from .settings import PARAMETERIZATIONS
from .tensors import device_of, gaussian_blur

OPTIMIZERS = ("adam", "sgd")
INITS = ("noise", "grey", "face")
BLUR_SIGMA = 0.5
MARGIN = 0.05  # the sigmoid is stretched by this much beyond [0, 1] on each side, then clipped
MAX_FILTERS = 256
EPS = 1e-4


@dataclass(frozen=True)
class Settings:
    """One run's choices. Regularizer weights are per pixel (`l2` on the distance from grey,
    `tv` on the total variation); `blur_every` N > 0 blurs the image every N steps; `jitter`
    shifts the image by up to that many of its pixels (whatever its size) and `scale` zooms it
    by up to that fraction, drawn anew each step."""

    steps: int = 128
    lr: float = 0.05
    optimizer: str = "adam"
    init: str = "noise"
    param: str = "pixels"
    l2: float = 0.0
    tv: float = 0.0
    blur_every: int = 0
    jitter: int = 1
    scale: float = 0.0
    seed: int = 0
    precision: str = "auto"

    def check(self) -> None:
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS),
                                     ("init", self.init, INITS),
                                     ("param", self.param, PARAMETERIZATIONS),
                                     ("precision", self.precision, FILTER_PRECISIONS)):
            if value not in allowed:
                raise FerError(f"{name} {value!r}: choose one of {', '.join(allowed)}")
        bounds = {"steps": (1, 4096), "lr": (1e-5, 10.0), "l2": (0.0, 100.0), "tv": (0.0, 100.0),
                  "blur_every": (0, 4096), "jitter": (0, 8), "scale": (0.0, 0.5)}
        for name, (low, high) in bounds.items():
            if not low <= getattr(self, name) <= high:
                raise FerError(f"{name} must lie in [{low}, {high}], got {getattr(self, name)}")


@dataclass(frozen=True)
class Snapshot:
    """The images after `step` steps (uint8 F x C x H x W, one per filter, at the model's size
    and channels; `data.pictures.pictures` makes them drawable) and each filter's mean activation
    on its own image (at the chosen layer, untransformed)."""

    step: int
    images: np.ndarray
    activations: np.ndarray


# ---- the target -----------------------------------------------------------------------------


def climbs_pre_activation(arch: str, options: dict, task: Task, layer: str) -> bool:
    """Whether the ascent climbs the layer's input rather than its output: for a ReLU, whose
    input is its pre-activation (a residual sum included: ResNet's relu_out adds the shortcut).
    FerError when there is no such layer."""
    registry = {entry.name: entry.kind for entry in layer_registry(arch, task, **options)}
    if layer not in registry:
        raise FerError(f"no layer {layer!r} in {arch}: choose one of {', '.join(registry)}")
    return registry[layer] == "relu"


class _Reached(Exception):
    """Ends a forward pass at the module whose input was wanted."""


def module_input(net: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """The input of module `name` of the private copy `net`, the forward pass stopping there."""
    seen = []

    def keep(_module, inputs):
        seen.append(inputs[0])
        raise _Reached

    handle = net.get_submodule(name).register_forward_pre_hook(keep)
    try:
        net(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    return seen[0]


def channel_count(arch: str, options: dict, task: Task, layer: str) -> int:
    """The layer's channels (outputs, for the linear layer: the task's classes); FerError when
    there is no such layer."""
    climbs_pre_activation(arch, options, task, layer)
    return next(e.channels for e in layer_registry(arch, task, **options) if e.name == layer)


def check_filters(arch: str, options: dict, task: Task, layer: str, filters: list[int]) -> None:
    count = channel_count(arch, options, task, layer)
    bad = [f for f in filters if not 0 <= f < count]
    if not filters or bad:
        raise FerError(f"layer {layer} has filters 0-{count - 1}; "
                       f"{'none chosen' if not filters else f'no filter {bad[0]}'}")


def rectify(pre: torch.Tensor) -> torch.Tensor:
    """softplus: close to the ReLU the activation is reported after, with a gradient at every
    value (a ReLU's is zero where it is off)."""
    return F.softplus(pre)


def own_channel(output: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Item i's channel filters[i] of the layer's output, as fp32 (N x 1 [x H x W])."""
    index = filters.view(-1, *[1] * (output.dim() - 1)).expand(-1, 1, *output.shape[2:])
    return output.gather(1, index).float()


def channel_means(output: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Item i's mean activation of channel filters[i] (spatial outputs averaged over H, W)."""
    return own_channel(output, filters).flatten(1).mean(1)


def parse_filters(text: str, count: int) -> list[int]:
    """'0-15', '3, 7, 9' or '0-3, 8' -> filter numbers (each in [0, count)), in the order given,
    without repeats."""
    chosen: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        low, _, high = part.partition("-")
        if not (low.strip().isdigit() and (not high or high.strip().isdigit())):
            raise FerError(f"filters {text!r}: use numbers and ranges such as 0-15 or 3,7,9")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last < count:
            raise FerError(f"filters {part!r}: this layer has filters 0-{count - 1}")
        chosen += [f for f in range(first, last + 1) if f not in chosen]
    if not chosen:
        raise FerError("no filter chosen: use numbers and ranges such as 0-15 or 3,7,9")
    if len(chosen) > MAX_FILTERS:
        raise FerError(f"{len(chosen)} filters chosen: at most {MAX_FILTERS} at a time")
    return chosen


# ---- the image ------------------------------------------------------------------------------


def generators(seed: int, filters: list[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by (seed, filter)."""
    return [torch.Generator().manual_seed(seed * 1_000_003 + f) for f in filters]


def start_images(settings: Settings, gens: list[torch.Generator], face: torch.Tensor | None,
                 shape: tuple[int, int, int]) -> torch.Tensor:
    """F images of `shape` (C, H, W) in (0, 1): grey with a little noise, plain grey, or the
    given face (uint8, of that shape; a grey one may be H x W)."""
    n = len(gens)
    if settings.init == "face":
        return (face.float().reshape(1, *shape) / 255).expand(n, -1, -1, -1)
    grey = torch.full((n, *shape), 0.5)
    if settings.init == "grey":
        return grey
    noise = torch.stack([torch.randn(*shape, generator=g) for g in gens])
    return (grey + 0.1 * noise).clamp(0.05, 0.95)


def frequency_scale(size: int, device: torch.device) -> torch.Tensor:
    """1/f for a size x size rfft2 spectrum (the lowest frequency counted as 1/size)."""
    fy = torch.fft.fftfreq(size, device=device)[:, None]
    fx = torch.fft.rfftfreq(size, device=device)[None, :]
    return 1.0 / torch.sqrt(fx ** 2 + fy ** 2).clamp_min(1.0 / size) / size


class Image:
    """The optimized parameters and how they become pixels in [0, 1]."""

    def __init__(self, start: torch.Tensor, param: str):
        self.param, self.size = param, start.shape[-1]
        self.scale = frequency_scale(self.size, start.device) if param == "fourier" else None
        self.values = nn.Parameter(self.encode(start))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = torch.logit(((pixels + MARGIN) / (1 + 2 * MARGIN)).clamp(EPS, 1 - EPS))
        if self.param == "pixels":
            return logits
        spectrum = torch.fft.rfft2(logits) / self.scale
        return torch.view_as_real(spectrum)

    def pixels(self) -> torch.Tensor:
        if self.param == "pixels":
            logits = self.values
        else:
            spectrum = torch.view_as_complex(self.values) * self.scale
            logits = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        return squash(logits)

    @torch.no_grad()
    def blur(self) -> None:
        self.values.copy_(self.encode(gaussian_blur(self.pixels(), BLUR_SIGMA)))


def squash(logits: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] from unbounded values: a sigmoid stretched by MARGIN and clipped, so
    that pure black and white are reached (a plain sigmoid only approaches them; FER2013's val
    split holds all-black images, and one block1 filter of fer2013-cnn3 likes black best)."""
    return ((1 + 2 * MARGIN) * torch.sigmoid(logits) - MARGIN).clamp(0, 1)


def transformed(x: torch.Tensor, settings: Settings, gens: list[torch.Generator]) -> torch.Tensor:
    """Each image shifted by up to `jitter` of its pixels and zoomed by up to `scale`, its own
    draw."""
    if not settings.jitter and not settings.scale:
        return x
    draws = torch.stack([torch.rand(3, generator=g) for g in gens]).to(x.device)
    zoom = 1 + settings.scale * (2 * draws[:, 0] - 1)
    shift = settings.jitter * (2 * draws[:, 1:] - 1) * 2 / x.shape[-1]  # 2 / W: one pixel
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean absolute difference between neighbouring pixels."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


# ---- the ascent -----------------------------------------------------------------------------


def maximize(model: nn.Module, arch: str, options: dict, layer: str, filters: list[int],
             settings: Settings = Settings(), face: torch.Tensor | None = None,
             every: int = 8, stop=None, *, task: Task) -> Iterator[Snapshot]:
    """Climb the mean activation of each of `filters` of `layer` (a registry name; for the final
    linear layer the filters are the classes), yielding a Snapshot of the start, one every
    `every` steps and one after the last step, with images of the model's `task` (its
    checkpoint's: size and channels). `stop` (an Event) ends the run early. Bad choices raise
    FerError here, before the first step."""
    settings.check()
    filters = [int(f) for f in filters]
    check_filters(arch, options, task, layer, filters)
    if settings.init == "face" and face is None:
        raise FerError("init 'face' needs a face")
    if face is not None and face.numel() != task.channels * task.size ** 2:
        raise FerError(f"init 'face': the face is {'x'.join(map(str, face.shape))}, the model "
                       f"takes {task.describe()} faces")
    return _climb(model, arch, options, task, layer,
                  climbs_pre_activation(arch, options, task, layer), filters, settings, face,
                  every, stop)


def ascent_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast for the ascent where the device computes it natively ('auto'), or when
    asked; None: fp32. Reported activations are always computed in fp32."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def folded(model: nn.Module, arch: str, options: dict, task: Task, target: str) -> nn.Module:
    """A frozen eval-mode copy with each BatchNorm folded into the conv before it (the BN module
    becomes an identity, so a hook on it still sees its output): in eval mode a BN is an affine
    map per channel, and folding it saves its forward and backward passes at every step. The
    `target` conv keeps its own output (folded, it would give its BN's)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(model).eval()
    registry = layer_registry(arch, task, **options)
    for conv, bn in pairwise(registry):
        if conv.kind == "conv" and bn.kind == "bn" and conv.name != target:
            net.set_submodule(conv.name, fuse_conv_bn_eval(net.get_submodule(conv.name),
                                                           net.get_submodule(bn.name)))
            net.set_submodule(bn.name, nn.Identity())
    return net.requires_grad_(False).to(memory_format=torch.channels_last)


def _climb(model, arch, options, task, layer, pre, filters, settings, face, every,
           stop) -> Iterator[Snapshot]:
    device = device_of(model)
    net = folded(model, arch, options, task, layer)
    dtype = ascent_dtype(settings.precision, device)
    gens = generators(settings.seed, filters)
    image = Image(start_images(settings, gens, face, task.shape).to(device), settings.param)
    chosen = torch.tensor(filters, device=device)
    optimizer = (torch.optim.Adam if settings.optimizer == "adam" else torch.optim.SGD)(
        [image.values], lr=settings.lr)
    with torch.autocast(device.type, enabled=False):
        if every < settings.steps:
            yield snapshot(net, layer, image, chosen, 0)
        for step in range(1, settings.steps + 1):
            if stop is not None and stop.is_set():
                return
            optimizer.zero_grad(set_to_none=True)
            pixels = image.pixels()
            seen = transformed(pixels, settings, gens).contiguous(
                memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                output = module_input(net, layer, seen) if pre else \
                    outputs_of(net, (layer,), seen)[layer]
            picked = own_channel(output, chosen)  # one channel per item, before anything else
            score = (rectify(picked) if pre else picked).flatten(1).mean(1)
            penalty = settings.l2 * ((pixels - 0.5) ** 2).flatten(1).mean(1) \
                + settings.tv * total_variation(pixels)
            (penalty - score).sum().backward()
            optimizer.step()
            if settings.blur_every and step % settings.blur_every == 0:
                image.blur()
            if step % every == 0 or step == settings.steps:
                yield snapshot(net, layer, image, chosen, step)


@torch.no_grad()
def snapshot(net: nn.Module, layer: str, image: Image, chosen: torch.Tensor,
             step: int) -> Snapshot:
    pixels = image.pixels()
    activations = channel_means(outputs_of(net, (layer,), pixels)[layer], chosen)
    images = (pixels * 255).round().to(torch.uint8)
    return Snapshot(step=step, images=images.cpu().numpy(), activations=activations.cpu().numpy())


def visualize(model: nn.Module, arch: str, options: dict, layer: str, filters: list[int],
              settings: Settings = Settings(), face: torch.Tensor | None = None, *,
              task: Task) -> Snapshot:
    """The final images and activations of `maximize`."""
    last = None
    for last in maximize(model, arch, options, layer, filters, settings, face,
                         every=settings.steps, task=task):
        pass
    return last
