"""Which saliency maps to trust: three checks of every attribution method on a probe batch.

- Sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
  https://arxiv.org/abs/1810.03292): the layers with weights are re-initialized one after the
  other, from the linear head down to the first conv (cascading randomization), and each
  method's absolute maps of the randomized model are compared with the trained model's by
  Spearman rank correlation. A method whose maps still correlate >= FLAG_AT with every layer
  randomized does not reflect what the model learned (Guided Backprop is the textbook case).
- Faithfulness, by deletion (Petsiuk et al. 2018, RISE; Samek et al. 2017): the pixels a map
  ranks highest are replaced first by a blurred copy of the face, in DELETION_STEPS steps, and the
  probability of the predicted class is followed; the area under that curve (over the removed
  fraction, 0 to 1) is lower for a map that finds the evidence. A random order is the floor.
- Localization, on the built-in faces only: the share of each map's absolute attribution that
  falls on the brows, eyes and mouth the generator drew, against the share of the image they
  cover (what an evenly spread map would get).

Each check has a baseline, one per report: FLAG_AT, the random order's deletion area, the
parts' share of the image. A method fails a check when it does no better than the baseline
(`TrustReport.failed_checks`), and is flagged when it fails any.

All maps are computed batched on the model's device by `attribution.explain`, with parameters
sized for a CPU (`settings.probe_params`, which --param overrides). The randomized models are deep copies: the model passed in is
never modified. Every target is the trained model's predicted class of each face, passed as its
"label" so the randomized models explain the same outputs.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import cache
from ..data.dataset import FaceDataset
from ..data.task import Task
from ..errors import FerError
from ..models.architectures import arch_options, build_model, layer_registry
from .attribution import METHODS, Target, explain, method_params
from .settings import probe_params
from .tensors import as_input, device_of, gaussian_blur, require_task, working_model

FLAG_AT = 0.5
PROBE_FACES = 16
MAX_PROBE_FACES = 256
CACHE_VERSION = 3  # 2: a hidden linear layer of the head is its own cascade step; 3: the
# baselines are the report's, once
DELETION_STEPS = 20
BLUR_SIGMA = 4.0
INIT_SEED = 0

# What failing each check means, in the order the checks are reported.
FAILURES = {"sanity": "fails the sanity check",
            "deletion": "deletion worse than random",
            "localization": "localization no better than an even spread"}

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class MethodTrust:
    """One method's results on the probe batch (means over its faces)."""

    method: str
    title: str
    randomization_spearman: list[float]  # 1.0 with no layer randomized, then one per layer
    deletion_auc: float
    parts_share: float | None


@dataclass(frozen=True)
class TrustReport:
    """Every method's results, the randomized layers in cascade order, the probe size, and the
    baselines: a random order's deletion area and the share of the image the parts cover (None
    without parts)."""

    methods: list[MethodTrust]
    layers: list[str]
    faces: int
    random_deletion_auc: float
    parts_area_share: float | None

    def failed_checks(self, m: MethodTrust) -> list[str]:
        """The checks (keys of FAILURES, in its order) on which `m` does no better than their
        baseline: sanity, when its maps still correlate FLAG_AT or more with every layer
        randomized; deletion, when its area is not below the random order's (lower is more
        faithful); localization, when it puts no more of its attribution on the parts than an
        evenly spread map does."""
        failed = {"sanity": m.randomization_spearman[-1] >= FLAG_AT,
                  "deletion": m.deletion_auc >= self.random_deletion_auc,
                  "localization": (m.parts_share is not None
                                   and m.parts_share <= self.parts_area_share)}
        return [check for check in FAILURES if failed[check]]

    def as_dict(self) -> dict:
        """The JSON form, each method with its failed checks for readers of the file (derived
        from the numbers, so `from_dict` leaves them out)."""
        methods = [asdict(m) | {"failed": self.failed_checks(m)} for m in self.methods]
        return {"methods": methods, "layers": self.layers, "faces": self.faces,
                "random_deletion_auc": self.random_deletion_auc,
                "parts_area_share": self.parts_area_share, "flag_at": FLAG_AT}

    @staticmethod
    def from_dict(data: dict) -> "TrustReport":
        names = {f.name for f in fields(MethodTrust)}
        methods = [MethodTrust(**{k: v for k, v in m.items() if k in names})
                   for m in data["methods"]]
        return TrustReport(methods, list(data["layers"]), int(data["faces"]),
                           data["random_deletion_auc"], data["parts_area_share"])

    def by_method(self) -> dict[str, MethodTrust]:
        return {m.method: m for m in self.methods}


# ---- cascading randomization --------------------------------------------------------------


def cascade_groups(model: nn.Module, arch: str, options: dict, task: Task) -> list[list[str]]:
    """The modules with weights in randomization order, top (the head) first: one group per conv
    layer of the registry and per linear layer (a hidden one of the head too), holding that
    layer and the parameterized modules that follow it before the next one (its BatchNorm; a
    residual shortcut)."""
    starts = {layer.name for layer in layer_registry(arch, task, **options)
              if layer.kind == "conv"}
    starts |= {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    groups: list[list[str]] = []
    for name, module in model.named_modules():
        if not list(module.parameters(recurse=False)):
            continue
        if name in starts or not groups:
            groups.append([name])
        else:
            groups[-1].append(name)
    return groups[::-1]


def fresh_weights(arch: str, options: dict, task: Task, seed: int = INIT_SEED) -> nn.Module:
    """A model as constructed for `task` (seeded): the values a randomized layer takes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, task, **arch_options(arch, **options))


def randomize(model: nn.Module, group: list[str], fresh: nn.Module) -> None:
    """Re-initialize the parameters of the modules in `group` (BatchNorm running statistics are
    kept: they are not learned by gradient)."""
    for name in group:
        target = model.get_submodule(name)
        for key, value in fresh.get_submodule(name).named_parameters(recurse=False):
            getattr(target, key).data.copy_(value)


def rank_rows(values: np.ndarray) -> np.ndarray:
    """Average ranks along each row (ties share their mean rank), as Spearman's rho needs."""
    from scipy.stats import rankdata

    return rankdata(values, axis=1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of `a` with the same row of `b`; a constant row
    (no ranking at all) correlates 0."""
    ra, rb = rank_rows(a), rank_rows(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    norm = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(norm > 0, (ra * rb).sum(1) / np.maximum(norm, 1e-12), 0.0)


# ---- deletion -------------------------------------------------------------------------------


def deletion_curves(model: nn.Module, faces: torch.Tensor, maps: torch.Tensor,
                    classes: torch.Tensor, steps: int = DELETION_STEPS) -> torch.Tensor:
    """(N, steps + 1) probability of `classes` as the pixels ranked highest by `maps` (N x H x W)
    are replaced by the blurred face (every channel of a pixel at once), a fraction k / steps at
    step k; one batched forward pass."""
    x = as_input(faces).to(maps.device)
    blurred = gaussian_blur(x, BLUR_SIGMA)
    n, pixels = len(x), maps[0].numel()
    order = torch.argsort(maps.reshape(n, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=order.device).expand(n, -1))
    removed = torch.linspace(0, pixels, steps + 1, device=x.device).round()
    masks = (rank[:, None, :] < removed[None, :, None]).reshape(n, steps + 1, 1, *x.shape[2:])
    mixed = torch.where(masks, blurred[:, None], x[:, None]).reshape(-1, *x.shape[1:])
    with torch.no_grad():
        probs = model(mixed).float().softmax(1).reshape(n, steps + 1, -1)
    return probs.gather(2, classes.view(n, 1, 1).expand(n, steps + 1, 1)).squeeze(2)


def curve_area(curves: torch.Tensor) -> torch.Tensor:
    """Area under each curve over the removed fraction 0..1 (trapezoids)."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


def random_maps(shape: tuple, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator).to(device)


def face_deletion(model: nn.Module, face: np.ndarray, values: np.ndarray,
                  target_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The deletion curve of one face (uint8 C x H x W as the model takes it, or H x W grey) for
    its map (H x W), following the probability of `target_class`, and the curve of a random
    order (seed 0) to compare with."""
    device = device_of(model)
    order = torch.tensor(values, dtype=torch.float32, device=device)[None]
    label = torch.tensor([target_class], device=device)
    curve, floor = (deletion_curves(model, torch.tensor(face)[None], maps, label)[0].cpu().numpy()
                    for maps in (order, random_maps(order.shape, 0, device)))
    return curve, floor


# ---- localization ---------------------------------------------------------------------------


def parts_share(maps: torch.Tensor, parts: torch.Tensor) -> float:
    """Mean share of |map| on the part pixels."""
    inside = (parts > 0).to(maps.device, torch.float32).reshape(len(maps), -1)
    weight = maps.abs().reshape(len(maps), -1)
    total = weight.sum(1).clamp_min(1e-12)
    return float(((weight * inside).sum(1) / total).mean())


def parts_area(parts: torch.Tensor) -> float:
    """Mean share of the image the parts cover: what an evenly spread map puts on them, the
    baseline of localization."""
    return float((parts > 0).float().mean())


# ---- the report -----------------------------------------------------------------------------


def trust_report(model: nn.Module, arch: str, options: dict, faces: torch.Tensor,
                 parts: torch.Tensor | None = None, methods: list[str] | None = None,
                 progress: Progress | None = None, seed: int = 0,
                 params: dict[str, dict] | None = None, *, task: Task) -> TrustReport:
    """Every check for every method (or `methods`) on the probe `faces` (uint8 N x C x H x W of
    the model's `task`, its checkpoint's), with `parts` (N x H x W bit masks) for localization
    where the faces have them (the built-in faces), each method with the probes' parameters
    overridden by `params` ({method: {name: value}}). `progress` gets (fraction done, what is
    running)."""
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise FerError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    used = probe_settings(task.size, params, methods)
    say = progress or (lambda *_: None)
    device = device_of(model)
    x = as_input(faces).to(device)
    working = working_model(model, hooks=True)  # its layers get randomized: never the shared one
    with torch.no_grad():
        classes = working(x).argmax(1)
    groups = cascade_groups(working, arch, options, task)
    total = len(methods) * (len(groups) + 1)

    def maps_of(key: str, step: int, level: int) -> torch.Tensor:
        say(step / total, f"{METHODS[key].title}, {level} of {len(groups)} layers randomized")
        return explain(working, x, key, Target("true"), labels=classes, seed=seed,
                       **used[key]).maps

    base = {key: maps_of(key, i, 0) for i, key in enumerate(methods)}
    deletion = {key: float(curve_area(deletion_curves(working, x, base[key], classes)).mean())
                for key in methods}
    random_area = float(curve_area(deletion_curves(
        working, x, random_maps((len(x), *x.shape[2:]), seed, device), classes)).mean())
    trained_ranks = {key: base[key].abs().reshape(len(x), -1).cpu().numpy() for key in methods}
    correlations = {key: [1.0] for key in methods}
    fresh = fresh_weights(arch, options, task).to(device)
    for level, group in enumerate(groups, 1):
        randomize(working, group, fresh)
        for i, key in enumerate(methods):
            other = maps_of(key, level * len(methods) + i, level).abs().reshape(len(x), -1)
            rho = spearman_rows(trained_ranks[key], other.cpu().numpy())
            correlations[key].append(float(rho.mean()))
    say(1.0, "done")
    results = [MethodTrust(method=key, title=METHODS[key].title,
                           randomization_spearman=correlations[key], deletion_auc=deletion[key],
                           parts_share=None if parts is None else parts_share(base[key], parts))
               for key in methods]
    return TrustReport(methods=results, layers=[group[0] for group in groups], faces=len(x),
                       random_deletion_auc=random_area,
                       parts_area_share=None if parts is None else parts_area(parts))


# ---- a checkpoint's report, cached on disk --------------------------------------------------


def probe_faces(dataset: FaceDataset, split: str, n: int) -> tuple[torch.Tensor,
                                                                  torch.Tensor | None]:
    """The first `n` faces of `split` (uint8) and their part masks (built-in faces only)."""
    if not 1 <= n <= MAX_PROBE_FACES:
        raise FerError(f"the probe takes 1 to {MAX_PROBE_FACES} faces, not {n}")
    if split not in dataset.present_splits():
        raise FerError(f"{dataset.name} has no {split} split (it has "
                       f"{', '.join(dataset.present_splits())})")
    rows = dataset.indices(split)[:n]
    parts = None if dataset.parts is None else torch.from_numpy(dataset.parts[rows])
    return torch.from_numpy(dataset.images[rows]), parts


def probe_settings(size: int, params: dict[str, dict] | None = None,
                   methods: list[str] | None = None) -> dict[str, dict]:
    """Each method's parameters in the checks: the probes' (`settings.probe_params`) overridden
    by `params`, checked for faces of `size` pixels."""
    params = params or {}
    return {key: method_params(METHODS[key], params.get(key, {}), size,
                               defaults=probe_params(key)) for key in methods or METHODS}


def report_key(checkpoint_path: str | Path, dataset: FaceDataset, split: str, n: int,
               params: dict[str, dict] | None = None) -> str:
    """The cache key: checkpoint content hash, dataset fingerprint, split, probe size and every
    method's parameters as the checks use them."""
    used = json.dumps(probe_settings(dataset.task.size, params), sort_keys=True)
    return cache.entry_key("trust", CACHE_VERSION, checkpoint_path, dataset.fingerprint, split, n,
                           used)


def stored_report(key: str) -> TrustReport | None:
    stored = cache.load_arrays(key, ("report",))
    return None if stored is None else _decoded(stored)


def cached_trust_report(model: nn.Module, checkpoint_path: str | Path, arch: str, options: dict,
                        dataset: FaceDataset, split: str, n: int = PROBE_FACES,
                        progress: Progress | None = None,
                        params: dict[str, dict] | None = None, *, task: Task) -> TrustReport:
    """`trust_report` on the first `n` faces of `split`: from the disk cache when this
    checkpoint file (by content), dataset, split and probe size were checked before. The
    dataset must be of the model's `task` (its checkpoint's)."""
    require_task(task, dataset)

    def compute() -> dict[str, np.ndarray]:
        faces, parts = probe_faces(dataset, split, n)
        report = trust_report(model, arch, options, faces, parts, progress=progress,
                              params=params, task=task)
        text = json.dumps(report.as_dict()).encode()
        return {"report": np.frombuffer(text, dtype=np.uint8)}

    key = report_key(checkpoint_path, dataset, split, n, params)
    return _decoded(cache.load_or_compute(key, ("report",), compute))


def _decoded(arrays: dict[str, np.ndarray]) -> TrustReport:
    """The report an entry holds: its JSON text as uint8 bytes."""
    return TrustReport.from_dict(json.loads(arrays["report"].tobytes()))
