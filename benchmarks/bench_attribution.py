"""Saliency speed, each figure beside its baseline in the same run.

- every method through `attribution.explain` beside Captum-direct: the Captum class called
  directly on the model with the same faces (--faces val faces, default 200), the same targets
  (the predicted classes, found beforehand and not timed) and the same parameters (the method's
  defaults, as many images in one forward pass as `explain`'s default batch). GradientShap has
  no batch argument, so Captum-direct calls it on as many faces at a time as that batch holds.
  SmoothGrad and GradientSHAP draw their own noise, so their maps differ from Captum's draws;
  every other map is compared with Captum's (max |difference|, 0 when identical);
- vanilla gradient of one face through `explain` vs a bare `backward()` (the input gradient of
  one logit, nothing else);
- up to 64 faces in one batched `explain` call vs one call per face (time per face);
- Integrated Gradients, 32 steps, one face.

Issue 31 asks for every method within 1.1x of Captum-direct; earlier issues for vanilla <= 50
ms, batched no slower per face than single calls, and IG (32 steps) <= 1 s. Runs alternate (the
side that goes first alternates too) so machine noise hits both sides alike; medians are
reported.

    python benchmarks/bench_attribution.py [--data FER2013_CSV or builtin:2000]
        [--checkpoint checkpoints/fer2013-cnn3 with FER2013, else builtin-cnn3] [--faces 200]
        [--methods vanilla,ig,...] [--device auto] [--repeats 3]

Results are printed and saved to benchmarks/results/attribution_<device>.json.
"""

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import save_results, seconds
from fer_core.data.matching import for_model
from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.explain.attribution import (
    GREY_BASELINES,
    METHODS,
    OCCLUDER,
    Target,
    baseline_images,
    explain,
)
from fer_core.explain.tensors import default_batch
from fer_core.models.architectures import last_conv_stage
from fer_core.models.checkpoint import load_checkpoint

BATCHED = 64  # faces of the batched-vs-single-calls figure (at most)
BUILTIN_DATA = "builtin:2000"  # 200 val faces


def bare_backward(model, face: torch.Tensor) -> torch.Tensor:
    """The floor: one forward, `backward()` of the top logit into the input, nothing else."""
    x = face.clone().requires_grad_(True)
    logits = model(x)
    logits[0, logits[0].argmax()].backward()
    return x.grad


def captum_direct(key: str, model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor,
                  params: dict, batch: int) -> torch.Tensor:
    """Method `key` as one would call Captum on the model itself: N x C x H x W maps (Occlusion's
    window covers every channel, as `explain`'s does: N x 1 x H x W)."""
    from captum import attr

    n = len(x)
    if key == "vanilla":
        return attr.Saliency(model).attribute(x, target=targets, abs=True)
    if key == "smoothgrad":
        return attr.NoiseTunnel(attr.Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=params["samples"], stdevs=params["noise"],
            nt_samples_batch_size=max(1, batch // n), target=targets, abs=True)
    if key == "ig":
        return attr.IntegratedGradients(model).attribute(
            x, baselines=baseline_images(x, params["baseline"]), target=targets,
            n_steps=params["steps"], internal_batch_size=max(n, batch))
    if key == "gradcam":
        cam = attr.LayerGradCam(model, model.get_submodule(params["layer"])).attribute(
            x, target=targets, relu_attributions=True)
        return attr.LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")
    if key == "guided":
        return attr.GuidedBackprop(model).attribute(x, target=targets)
    if key == "occlusion":
        window, channels = params["window"], x.shape[1]
        stride = max(1, window // 2)
        return attr.Occlusion(model).attribute(
            x, sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride), baselines=OCCLUDER, target=targets,
            perturbations_per_eval=max(1, batch // n))[:, :1]
    if key == "inputxgrad":
        return attr.InputXGradient(model).attribute(x, target=targets)
    if key == "deeplift":
        return attr.DeepLift(model).attribute(
            x, baselines=baseline_images(x, params["baseline"]), target=targets)
    if key == "gradshap":
        greys = torch.linspace(0, 1, GREY_BASELINES, device=x.device).view(-1, 1, 1, 1)
        shap, step = attr.GradientShap(model), max(1, batch // params["samples"])
        return torch.cat([shap.attribute(x[i:i + step], baselines=greys.expand(-1, *x.shape[1:]),
                                         n_samples=params["samples"], stdevs=0.0,
                                         target=targets[i:i + step])
                          for i in range(0, n, step)])
    if key == "guidedgradcam":
        return attr.GuidedGradCam(model, model.get_submodule(params["layer"])).attribute(
            x, target=targets, interpolate_mode="bilinear")
    raise ValueError(f"no Captum-direct baseline for {key!r}")


def medians(cases: dict[str, Callable[[], object]], repeats: int, device: torch.device,
            warm_up: bool = True) -> dict[str, float]:
    """Median seconds per case, the cases alternating within each repeat and their order
    reversed every other repeat (after one warm-up run each unless told otherwise)."""
    for work in cases.values() if warm_up else ():
        work()
    times = {name: [] for name in cases}
    order = list(cases)
    for _ in range(repeats):
        for name in order:
            times[name].append(seconds(cases[name], device))
        order.reverse()
    return {name: statistics.median(t) for name, t in times.items()}


def ours(key: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return explain(model, x, key, Target("predicted")).maps


def captum(key: str, model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor,
           params: dict, batch: int) -> torch.Tensor:
    return captum_direct(key, model, x, targets, params, batch).sum(1)  # as `explain` adds up


def kept(results: dict, name: str, work: Callable[..., torch.Tensor], *args) -> None:
    """`work(*args)`, its result kept in `results[name]` (the maps of the last timed run)."""
    results[name] = work(*args)


def method_figures(model, x: torch.Tensor, methods: list[str], repeats: int,
                   device: torch.device) -> dict:
    """explain() beside Captum-direct for each method on the faces x, printed as it goes.
    Both sides are warmed up on one face; Captum-direct is given Grad-CAM's layer by name."""
    with torch.no_grad():
        targets = model(x).argmax(1)
    inputs = x.clone().requires_grad_(True)  # as Captum wants them (else it warns)
    batch, figures = default_batch(device), {}
    print(f"{'method':<22}{'ours s':>9}{'captum s':>10}{'ratio':>7}{'max |diff|':>12}", flush=True)
    for key in methods:
        spec = METHODS[key]
        params = spec.defaults()
        given = dict(params)
        if "layer" in given:
            given["layer"] = given["layer"] or last_conv_stage(model, tuple(x.shape[1:]))
        maps = {}
        cases = {"ours": partial(kept, maps, "ours", ours, key, model, x),
                 "captum": partial(kept, maps, "captum", captum, key, model, inputs, targets,
                                   given, batch)}
        ours(key, model, x[:1])
        captum(key, model, inputs[:1], targets[:1], given, batch)
        t = medians(cases, repeats, device, warm_up=False)
        diff = (maps["ours"] - maps["captum"]).abs().max().item()
        figures[key] = {"title": spec.title, "params": params, "ours_s": t["ours"],
                        "captum_s": t["captum"], "ratio": t["ours"] / t["captum"],
                        "max_abs_diff": diff}
        print(f"{spec.title:<22}{t['ours']:9.3f}{t['captum']:10.3f}"
              f"{t['ours'] / t['captum']:7.2f}{diff:12.2g}", flush=True)
    return figures


def single_face_figures(model, x: torch.Tensor, repeats: int, device: torch.device) -> dict:
    """The one-face figures of earlier issues: vanilla and IG against a bare backward(), and a
    batched call against one call per face."""
    one, batched = x[:1], x[:BATCHED]
    target = Target("predicted")
    cases = {
        "bare_backward_1": lambda: bare_backward(model, one),
        "vanilla_1": lambda: explain(model, one, "vanilla", target),
        "vanilla_batched": lambda: explain(model, batched, "vanilla", target),
        "vanilla_single_calls": lambda: [explain(model, batched[i:i + 1], "vanilla", target)
                                         for i in range(len(batched))],
        "ig32_1": lambda: explain(model, one, "ig", target, steps=32),
    }
    t = medians(cases, repeats, device)
    return {"bare_backward_ms": 1e3 * t["bare_backward_1"],
            "vanilla_one_face_ms": 1e3 * t["vanilla_1"],
            "batched_faces": len(batched),
            "batched_ms_per_face": 1e3 * t["vanilla_batched"] / len(batched),
            "single_calls_ms_per_face": 1e3 * t["vanilla_single_calls"] / len(batched),
            "batched_speedup": t["vanilla_single_calls"] / t["vanilla_batched"],
            "ig32_one_face_ms": 1e3 * t["ig32_1"]}


def main() -> None:
    fer2013 = os.environ.get("FER2013_CSV")
    run = "fer2013-cnn3" if fer2013 else "builtin-cnn3"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=fer2013 or BUILTIN_DATA)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / run))
    parser.add_argument("--faces", type=int, default=200, help="val faces explained per call")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {', '.join(sorted(unknown))}: choose among "
                     f"{', '.join(METHODS)}")
    device = choose_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    model = checkpoint.model.requires_grad_(False)
    dataset = for_model(load_dataset(args.data), checkpoint.task)  # as the model takes faces
    rows = dataset.indices("val")[:args.faces]
    x = torch.from_numpy(dataset.images[rows]).to(device).float().div(255)
    print(f"{describe_device(device)}, {torch.get_num_threads()} torch threads; {len(x)} val "
          f"faces of {Path(args.data).name}, {Path(args.checkpoint).name}; medians of "
          f"{args.repeats}", flush=True)
    figures = {
        "device": describe_device(device),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "data": args.data, "checkpoint": args.checkpoint, "faces": len(x),
        "repeats": args.repeats,
        "methods": method_figures(model, x, methods, args.repeats, device),
        **single_face_figures(model, x, args.repeats, device),
    }
    print(f"vanilla gradient, one face:  {figures['vanilla_one_face_ms']:.1f} ms "
          f"(bare backward(): {figures['bare_backward_ms']:.1f} ms; asked: <= 50 ms)")
    print(f"{figures['batched_faces']} faces, one batched call:  "
          f"{figures['batched_ms_per_face']:.2f} ms/face vs single calls "
          f"{figures['single_calls_ms_per_face']:.2f} ms/face "
          f"(speed-up {figures['batched_speedup']:.1f}x)")
    print(f"Integrated Gradients, 32 steps, one face: {figures['ig32_one_face_ms']:.0f} ms "
          f"(asked: <= 1000 ms)")
    save_results(f"attribution_{device.type}.json", figures)


if __name__ == "__main__":
    main()
