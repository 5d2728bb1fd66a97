"""Saliency maps: which pixels of a face make the model say what it says.

`explain(model, faces, method, target)` explains a whole batch in one call on the faces' device
and returns maps N x H x W at the faces' size, summed over the colour channels of a colour model
(`explain` says how each method's channels add up). Ten methods, most of them Captum's (the
field's standard library), each a small function below that says what it computes and cites its
paper. Targets (`Target`): the predicted class, the true class, any class, or a contrast
"logit A minus logit B" (why A rather than B). A target holds class numbers; their names are the
model's task's (`checkpoint.task.classes`), passed where a target is read or named.

Every method scores the model through `Scores`, a wrapper that indexes the K logits and all K^2
pairwise logit differences (a target is one index per face) and outputs, for every image
Captum feeds it, the one score its face explains. It also predicts: the first batch most methods
feed the model holds the faces themselves, and their logits are the prediction, so no separate
forward pass is made for it (that pass had cost a third of a vanilla gradient's time).

The model is shared (the dashboard caches one per checkpoint for every tab), so it is treated as
read-only. Gradients are taken with respect to the input only (Captum uses
`torch.autograd.grad`), so nothing accumulates in the weights' `.grad`, and methods work when the
parameters have `requires_grad=False`. Methods that attach hooks (Grad-CAM, Guided Backprop,
DeepLift) run on a per-call copy of the model's modules that shares its weights (`hook_model`:
no weight is copied), so no hook is ever seen by another tab and two calls never interleave on
one model; hook-free methods read the shared model directly (one in train mode, through such a
copy in eval mode). Random methods (SmoothGrad, GradientSHAP) draw their noise, baselines and
path points from a generator of each call's own (Captum's NoiseTunnel and GradientShap draw from
the global generators, which every thread shares), so no call waits for another.
"""

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data.task import Task
from ..errors import FerError
from ..models.architectures import SPATIAL, LayerInfo, last_conv_stage, layer_registry
from ..models.imported import foreign_arch
from ..models.reuse import refuse_reused
from . import settings
from .settings import BASELINES, METHOD_TITLES, method_defaults
from .tensors import as_input, default_batch, device_of, gaussian_blur, hook_model

BLUR_SIGMA = 4.0        # pixels: the blurred baseline keeps the face's layout, not its features
OCCLUDER = 0.5          # grey value that fills an occluded window
GREY_BASELINES = 5  # GradientSHAP's flat grey baselines, black to white
# Captum announces every hook it sets and removes; here that is routine, not news.
warnings.filterwarnings("ignore", message="Setting (forward, )?backward hooks", module="captum")

# ---- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What to explain: kind "predicted", "true", "class" (class a) or "contrast" (a minus b)."""

    kind: str = "predicted"
    a: int | None = None
    b: int | None = None

    @staticmethod
    def parse(text: str, classes: tuple[str, ...]) -> "Target":
        """'pred', 'true', a class of `classes` by name or index ('Happy', '3'), or 'A-B' for a
        contrast."""
        text = text.strip()
        if text.lower() in ("pred", "predicted"):
            return Target("predicted")
        if text.lower() == "true":
            return Target("true")
        if "-" in text:
            a, b = (class_index(part, classes) for part in text.split("-", 1))
            if a == b:
                raise FerError(f"contrast target {text!r}: the two classes must differ")
            return Target("contrast", a, b)
        return Target("class", class_index(text, classes))

    def text(self, classes: tuple[str, ...]) -> str:
        """The text form `parse` reads back (a URL's ?target=, a command's --target)."""
        if self.kind == "class":
            return classes[self.a]
        if self.kind == "contrast":
            return f"{classes[self.a]}-{classes[self.b]}"
        return "pred" if self.kind == "predicted" else "true"

    def describe(self, classes: tuple[str, ...]) -> str:
        if self.kind == "class":
            return classes[self.a]
        if self.kind == "contrast":
            return f"{classes[self.a]} - {classes[self.b]}"
        return f"{self.kind} class"

    def output_indices(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """One `Scores` output index per face (int64, on the logits' device)."""
        (n, k), device = logits.shape, logits.device
        if self.kind == "predicted":
            return logits.argmax(1)
        if self.kind == "true":
            if labels is None or len(labels) != n or bool((labels < 0).any()):
                raise FerError("target 'true': the true class of some face is unknown")
            return labels.to(device=device, dtype=torch.int64)
        highest = max(c for c in (self.a, self.b, -1) if c is not None)
        if highest >= k:
            raise FerError(f"target class {highest}: the model has classes 0-{k - 1}")
        if self.kind == "class":
            return torch.full((n,), self.a, dtype=torch.int64, device=device)
        return torch.full((n,), k + self.a * k + self.b, dtype=torch.int64, device=device)


def class_index(text: str, classes: tuple[str, ...]) -> int:
    """A class of `classes` by name (any case) or by index."""
    names = [c.lower() for c in classes]
    text = text.strip()
    if text.lower() in names:
        return names.index(text.lower())
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise FerError(f"unknown class {text!r}: use a name ({', '.join(classes)}) or "
                   f"0-{len(classes) - 1}")


def output_classes(index: int, num_classes: int) -> tuple[int, int | None]:
    """The classes of a `Scores` output of a model with `num_classes` logits: (a, None) for
    logit a, (a, b) for logit a minus logit b. Class a is the one whose score the output
    explains."""
    if index < num_classes:
        return index, None
    a, b = divmod(index - num_classes, num_classes)
    return a, b


def describe_output(index: int, classes: tuple[str, ...]) -> str:
    """The name of a `Scores` output: a class of `classes`, or 'A - B'."""
    a, b = output_classes(index, len(classes))
    return classes[a] if b is None else f"{classes[a]} - {classes[b]}"


class Scores(nn.Module):
    """The score a target explains, one output per image (Captum's target 0), for copies of n
    faces: of the model's K logits followed by all K^2 differences (output K + K a + b is logit
    a minus logit b), row r gives output `outputs[r % n]`, since Captum stacks the copies of IG's
    steps, of the samples, of Occlusion's perturbations and of DeepLift's baselines in blocks of
    n, as it expands a per-face target.

    The first call resolves the target. When its first n rows are the faces themselves (vanilla,
    Input x Gradient, Guided Backprop, Grad-CAM, Occlusion, DeepLift), their logits are the
    prediction; otherwise (IG's path, SmoothGrad's and GradientSHAP's random points) the faces
    are scored once without gradients first, as they are after a method that never calls it.
    """

    def __init__(self, model: nn.Module, faces: torch.Tensor, target: Target,
                 labels: torch.Tensor | None):
        super().__init__()
        self.model, self.faces, self.target, self.labels = model, faces, target, labels
        self.logits: torch.Tensor | None = None
        self.outputs: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.outputs is None:
            n = len(self.faces)
            faces = len(x) >= n and torch.equal(x[:n], self.faces)
            self.predict(logits[:n].detach() if faces else None)
        scores = torch.cat([logits, (logits[:, :, None] - logits[:, None, :]).flatten(1)], 1)
        return scores.gather(1, self.outputs.repeat(len(x) // len(self.faces))[:, None])

    def predict(self, logits: torch.Tensor | None = None) -> None:
        """Keep `logits` as the faces' (None: score the faces without gradients) and the output
        each face explains."""
        if logits is None:
            with torch.no_grad():
                logits = self.model(self.faces)
        self.logits, self.outputs = logits, self.target.output_indices(logits, self.labels)


# ---- methods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One attribution method: its key, title, whether its maps are signed (positive: for the
    target, negative: against) and whether it attaches hooks (then it runs on a copy)."""

    key: str
    title: str
    signed: bool
    hooks: bool
    compute: Callable[..., torch.Tensor]

    def defaults(self) -> dict:
        """The method's parameters and their defaults, as `settings` declares them."""
        return method_defaults(self.key)


METHODS: dict[str, Method] = {}


def method(key: str, *, signed: bool, hooks: bool = False):
    """Register a compute function `f(scores, x, target, *, batch, seed, **params)` -> maps,
    the method `key` of `settings` (its title and its parameters' defaults are declared there)."""

    def register(compute):
        METHODS[key] = Method(key, METHOD_TITLES[key], signed, hooks, compute)
        return compute

    return register


@method("vanilla", signed=False)
def vanilla_gradient(scores, x, target, *, batch, seed):
    """|d score / d pixel|: how much a small change of each pixel moves the target score.

    Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", 2013, https://arxiv.org/abs/1312.6034
    """
    from captum.attr import Saliency

    return Saliency(scores).attribute(x, target=target, abs=True)


@method("smoothgrad", signed=False)
def smoothgrad(scores, x, target, *, batch, seed, samples, noise):
    """The vanilla gradient averaged over `samples` copies of the face with Gaussian noise of std
    `noise` (in pixel units: 0.15 is 15% of the [0, 1] range, inside the paper's 10-20%).

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
    https://arxiv.org/abs/1706.03825
    """
    from captum.attr import Saliency

    saliency, draws = Saliency(scores), generator(seed, x.device)

    def at_samples(faces: torch.Tensor) -> torch.Tensor:
        noisy = faces + noise * torch.randn(faces.shape, generator=draws, device=x.device)
        return saliency.attribute(noisy.requires_grad_(True), target=target, abs=True)

    return sample_mean(at_samples, x, samples, batch)


@method("ig", signed=True)
def integrated_gradients(scores, x, target, *, batch, seed, steps, baseline):
    """The gradient integrated along the straight path from a baseline (black, or the face
    blurred) to the face, times (face - baseline): the attributions sum to score(face) -
    score(baseline) (completeness).

    Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", 2017,
    https://arxiv.org/abs/1703.01365; blurred baseline: Sturmfels, Lundberg and Lee,
    "Visualizing the Impact of Feature Attribution Baselines", Distill 2020.
    """
    from captum.attr import IntegratedGradients

    return IntegratedGradients(scores).attribute(
        x, baselines=baseline_images(x, baseline), target=target, n_steps=steps,
        internal_batch_size=max(len(x), batch))


@method("gradcam", signed=False, hooks=True)
def gradcam(scores, x, target, *, batch, seed, layer):
    """ReLU of the layer's channels weighted by their spatially averaged gradients, upsampled
    (bilinear) from the layer's size to the face's. Default layer: the last conv stage.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", 2017, https://arxiv.org/abs/1610.02391
    """
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(scores, cam_module(scores, layer)).attribute(
        x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")


@method("guided", signed=True, hooks=True)
def guided_backprop(scores, x, target, *, batch, seed):
    """The input gradient with every ReLU passing back only positive gradients (and only where
    its input was positive).

    Springenberg et al., "Striving for Simplicity: The All Convolutional Net", 2015,
    https://arxiv.org/abs/1412.6806
    """
    from captum.attr import GuidedBackprop

    return GuidedBackprop(scores).attribute(x, target=target)


@method("occlusion", signed=True)
def occlusion(scores, x, target, *, batch, seed, window):
    """How much the target score drops when a `window` x `window` square (stride half the
    window) is filled with grey, averaged over the windows covering each pixel. The square
    covers every colour channel at once, so each channel holds the same drop: one is kept.

    Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", 2014,
    https://arxiv.org/abs/1311.2901
    """
    from captum.attr import Occlusion

    stride, channels = max(1, window // 2), x.shape[1]
    return Occlusion(scores).attribute(
        x, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
        baselines=OCCLUDER, target=target,
        perturbations_per_eval=max(1, batch // len(x)))[:, :1]


@method("inputxgrad", signed=True)
def input_x_gradient(scores, x, target, *, batch, seed):
    """The face times its gradient: a first-order estimate of each pixel's contribution against
    a black face.

    Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
    Activation Differences", 2016, https://arxiv.org/abs/1605.01713
    """
    from captum.attr import InputXGradient

    return InputXGradient(scores).attribute(x, target=target)


@method("deeplift", signed=True, hooks=True)
def deeplift(scores, x, target, *, batch, seed, baseline):
    """Each pixel's contribution to score(face) - score(baseline), propagated back with the
    Rescale rule (nonlinearities pass on difference ratios instead of gradients); the
    attributions sum to that difference.

    Shrikumar, Greenside and Kundaje, "Learning Important Features Through Propagating
    Activation Differences", 2017, https://arxiv.org/abs/1704.02685

    The sum is exact on resnet18, not on cnn3: Captum 0.9 takes a stale gradient when a ReLU
    feeds a max-pool and the reference's activations are not zero (captum issue #1104, fixed
    upstream by PR #1843 after 0.9.0); on builtin-cnn3 the sum missed the difference by a median
    10% of it (16 faces).
    """
    from captum.attr import DeepLift

    return DeepLift(scores).attribute(x, baselines=baseline_images(x, baseline), target=target)


@method("gradshap", signed=True)
def gradient_shap(scores, x, target, *, batch, seed, samples):
    """Expected gradients: (face - baseline) times the gradient at a random point between them,
    averaged over `samples` draws of a baseline among flat grey images (black to white); an
    approximation of SHAP values. Computed as Captum's GradientShap computes it (stdevs 0), with
    the draws taken from a generator of the call's own.

    Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions", 2017,
    https://arxiv.org/abs/1705.07874; Erion et al., "Improving performance of deep learning
    models with axiomatic attribution priors and expected gradients", 2021.
    """
    from captum.attr import Saliency

    saliency, draws = Saliency(scores), generator(seed, x.device)
    greys = torch.linspace(0, 1, GREY_BASELINES, device=x.device)

    def at_samples(faces: torch.Tensor) -> torch.Tensor:
        n, shape = len(faces), (len(faces), 1, 1, 1)
        pick = torch.randint(GREY_BASELINES, (n,), generator=draws, device=x.device)
        baselines = greys[pick].view(shape)
        alphas = torch.rand(shape, generator=draws, device=x.device)
        points = (baselines + alphas * (faces - baselines)).requires_grad_(True)
        return saliency.attribute(points, target=target, abs=False) * (faces - baselines)

    return sample_mean(at_samples, x, samples, batch)


@method("guidedgradcam", signed=True, hooks=True)
def guided_gradcam(scores, x, target, *, batch, seed, layer):
    """Guided Backprop times the Grad-CAM map (upsampled bilinearly): fine detail where the
    class evidence is.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", 2017, https://arxiv.org/abs/1610.02391
    """
    from captum.attr import GuidedGradCam

    return GuidedGradCam(scores, cam_module(scores, layer)).attribute(
        x, target=target, interpolate_mode="bilinear")


# ---- baselines, layers, randomness -----------------------------------------------------------

def baseline_images(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference faces of IG and DeepLift: black, or each face blurred (Gaussian,
    BLUR_SIGMA pixels, borders reflected)."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blurred":
        return gaussian_blur(x, BLUR_SIGMA)
    raise FerError(f"unknown baseline {kind!r}: choose one of {', '.join(BASELINES)}")


def cam_layers(arch: str, task: Task, **options) -> list[LayerInfo]:
    """The layers Grad-CAM can use (conv, BN and ReLU outputs with a spatial map) of `arch`
    built for `task`, in forward order (`default_cam_name` picks the default)."""
    return [layer for layer in layer_registry(arch, task, **options) if layer.size is not None]


def default_cam_name(arch: str, layers: list[LayerInfo]) -> str:
    """Grad-CAM's default among `layers` (from `cam_layers`), as `last_conv_stage` finds it on a
    model: the last one, or for a model of other code than ours the last convolution."""
    kinds = ("conv",) if foreign_arch(arch) else ("conv", "bn", "relu")
    return [layer.name for layer in layers if layer.kind in kinds][-1]


def cam_module(scores: Scores, layer: str | None) -> nn.Module:
    """The module of `layer` (a name from `cam_layers`) in the scored model, or the last conv
    stage when None."""
    name = layer or last_conv_stage(scores.model, tuple(scores.faces.shape[1:]))
    try:
        module = scores.model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, SPATIAL):
        raise FerError(f"layer {name!r}: not a conv, batch-norm or ReLU layer of this model")
    return module


_CAM_LAYERS: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def default_cam_layer(model: nn.Module, working: nn.Module, shape: tuple[int, int, int]) -> str:
    """The last conv stage of `model`, found once per model on its working copy with a face of
    `shape` (C, H, W), the faces' (finding it runs a face through the model, as long as a
    one-face Grad-CAM takes)."""
    name = _CAM_LAYERS.get(model)
    if name is None:
        name = _CAM_LAYERS[model] = last_conv_stage(working, shape)
    return name


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator of one call's own on `device`: the global generators are shared by every
    thread (a page's map and a trust report running beside it), so a draw from them would
    depend on what else runs, and guarding them would make every random map wait for the
    others."""
    return torch.Generator(device=device).manual_seed(seed)


def sample_mean(at_samples: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                samples: int, batch: int) -> torch.Tensor:
    """The mean over `samples` random draws of `at_samples(faces)`, which explains copies of
    the faces stacked in blocks of N (see `Scores`); as many copies go in one call as `batch`
    images allow."""
    copies = max(1, batch // len(x))
    total = torch.zeros_like(x)
    for start in range(0, samples, copies):
        k = min(copies, samples - start)
        faces = x.detach().repeat(k, 1, 1, 1)
        total += at_samples(faces).view(k, *x.shape).sum(0)
    return total / samples


# ---- the entry point -------------------------------------------------------------------------

@dataclass(frozen=True)
class Explanation:
    """Maps for a batch of faces, and what a page needs to show them.

    maps: float N x H x W (the faces' size) on the faces' device; signed maps are positive where
    a pixel speaks for the target and negative where it speaks against it (show them on a
    diverging colour map centred at 0); unsigned maps are >= 0. `outputs` are the explained
    `Scores` indices (one per face; `target_names` names them with the model's classes).
    `params` are the method's parameters as used, Grad-CAM's layer included.
    """

    maps: torch.Tensor
    method: str
    title: str
    signed: bool
    params: dict
    target: Target
    outputs: torch.Tensor
    logits: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(1)

    def target_names(self, classes: tuple[str, ...]) -> list[str]:
        """What each face's map explains, named with the model's `classes`."""
        return [describe_output(i, classes) for i in self.outputs.tolist()]


def explain(model: nn.Module, faces: torch.Tensor, method: str = "vanilla",
            target: Target = Target(), labels: torch.Tensor | None = None, *, seed: int = 0,
            batch: int | None = None, **params) -> Explanation:
    """Explain a batch of faces (float N x C x H x W in [0, 1] as the model takes them; uint8,
    or N x H x W grey, is converted) on the model's device with one method for one target.

    A colour face's map is the sum of its channels' attributions: the signed methods are
    additive (Integrated Gradients' and DeepLift's maps still sum to the score difference),
    vanilla gradients and SmoothGrad add up |gradient| over channels, Grad-CAM's map has one
    channel already and Occlusion's square covers every channel. With one channel the map is
    that channel's.

    params: the method's own (declared in `settings`), checked there. `batch` bounds
    how many images one forward pass holds (default 128 on the CPU, 1024 on a GPU): more faces
    than that are explained in chunks of `batch`. The model is never modified (see the module
    docstring).
    """
    spec = METHODS.get(method)
    if spec is None:
        raise FerError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    x = as_input(faces).to(device_of(model))
    params = method_params(spec, params, x.shape[-1])
    batch = batch or default_batch(x.device)
    working = hook_model(model) if spec.hooks or model.training else model
    if spec.compute in (gradcam, guided_gradcam):
        params["layer"] = params["layer"] or default_cam_layer(model, working,
                                                               tuple(x.shape[1:]))
    if spec.hooks:
        refuse_reused(model, working, tuple(x.shape[1:]), spec.title,
                      params.get("layer") if spec.compute is gradcam else None)
    maps, scored = [], []
    with torch.autocast(x.device.type, enabled=False):
        for start in range(0, len(x), batch):
            part = x[start:start + batch].clone().requires_grad_(True)
            part_labels = (labels[start:start + batch]
                           if labels is not None and len(labels) == len(x) else None)
            scores = Scores(working, part, target, part_labels)
            maps.append(spec.compute(scores, part, 0, batch=batch, seed=seed, **params))
            if scores.outputs is None:
                scores.predict()
            scored.append(scores)
    return Explanation(maps=torch.cat(maps).detach().float().sum(1), method=spec.key,
                       title=spec.title, signed=spec.signed, params=params, target=target,
                       outputs=torch.cat([s.outputs for s in scored]),
                       logits=torch.cat([s.logits for s in scored]))


def method_params(spec: Method, given: dict, size: int, defaults: dict | None = None) -> dict:
    """The method's parameters: `defaults` (default: its own) overridden by `given` (values or
    text), each checked (`settings.method_params`) for faces of `size` pixels."""
    return settings.method_params(spec.key, given, size,
                                  defaults=spec.defaults() if defaults is None else defaults)
