"""Every explanation setting, declared once, as `TrainConfig` declares training's: the saliency
methods (keys and titles), each method parameter (its type, bounds, slider, help, and the methods
that take it with their defaults and the trust probes' values), the baselines and the
projections of a split. It imports no torch.

The command line (`--param [METHOD.]NAME=VALUE` of explain, timeline, export and trust), the
Saliency page's widgets and its URL, the trust probes and the checks of `attribution.explain`
derive from here. A parameter's default is declared here only: the method's code takes it as a
keyword argument without a default.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import FerError

METHOD_TITLES = {
    "vanilla": "Vanilla gradient", "smoothgrad": "SmoothGrad", "ig": "Integrated Gradients",
    "gradcam": "Grad-CAM", "guided": "Guided Backprop", "occlusion": "Occlusion",
    "inputxgrad": "Input x Gradient", "deeplift": "DeepLift", "gradshap": "GradientSHAP",
    "guidedgradcam": "Guided Grad-CAM",
}
METHOD_KEYS = tuple(METHOD_TITLES)
BASELINES = ("black", "blurred")
PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}  # a split's embedding in 2-D
PARAMETERIZATIONS = ("pixels", "fourier")  # of an image in activation maximization

Bound = int | float | Callable[[int], int]  # a number, or one computed from the image size


@dataclass(frozen=True)
class Param:
    """One parameter of some saliency methods.

    `defaults`: the methods that take it, each with its default (None: chosen from the model,
    as Grad-CAM's layer). `probe`: the value the trust checks use instead, sized for a CPU.
    Numbers are accepted within `low`..`high` and offered on a slider `slider` = (low, high,
    step), within those; text takes one of `choices` (None: any, checked against the model).
    """

    name: str
    kind: type
    help: str
    defaults: dict
    probe: dict = field(default_factory=dict)
    low: Bound | None = None
    high: Bound | None = None
    slider: tuple[Bound, Bound, int | float] | None = None
    choices: tuple[str, ...] | None = None

    def bounds(self, size: int) -> tuple | None:
        """(low, high) for faces of `size` pixels (the model's task's), or None for text."""
        return None if self.low is None else (_at(self.low, size), _at(self.high, size))

    def slider_range(self, size: int) -> tuple | None:
        """(low, high, step) of the page's slider for faces of `size` pixels, or None."""
        if self.slider is None:
            return None
        low, high, step = self.slider
        return _at(low, size), _at(high, size), step

    def parse(self, value, size: int, bounds: tuple | None = None):
        """`value` (text from a flag or a URL, or a value) as this parameter's type, checked
        against `bounds` (default: `self.bounds(size)`) or `choices`; FerError says why not."""
        try:
            parsed = self.kind(value)
        except (TypeError, ValueError):
            raise FerError(f"{self.name}: {value!r} is not a valid {self.kind.__name__}") from None
        bounds = bounds or self.bounds(size)
        if bounds and not bounds[0] <= parsed <= bounds[1]:
            raise FerError(f"{self.name} must lie in [{bounds[0]}, {bounds[1]}], got {parsed}")
        if self.choices and parsed not in self.choices:
            raise FerError(f"{self.name} {parsed!r}: choose one of {', '.join(self.choices)}")
        return parsed

    def describe(self) -> str:
        """'steps (ig: default 32; 1 to 512): Points on the path...' for help texts."""
        by_default = {}
        for method, default in self.defaults.items():
            by_default.setdefault("from the model" if default is None else default, []).append(
                method)
        takers = "; ".join(f"{', '.join(methods)}: default {default}"
                           for default, methods in by_default.items())
        allowed = (", ".join(self.choices) if self.choices else
                   f"{_text(self.low)} to {_text(self.high)}" if self.low is not None else "")
        return f"{self.name} ({takers}{'; ' + allowed if allowed else ''}): {self.help}"


def _at(bound: Bound, size: int):
    return bound(size) if callable(bound) else bound


def _text(bound: Bound) -> str:
    return "the image size" if callable(bound) else str(bound)


PARAMS = {p.name: p for p in (
    Param("samples", int, "Noisy copies (SmoothGrad) or baselines (GradientSHAP) averaged",
          defaults={"smoothgrad": 25, "gradshap": 16}, probe={"smoothgrad": 8, "gradshap": 8},
          low=1, high=256, slider=(1, 100, 1)),
    Param("noise", float, "Standard deviation of the Gaussian noise, in pixel units (pixels lie "
                          "in [0, 1])",
          defaults={"smoothgrad": 0.15}, low=0.0, high=1.0, slider=(0.01, 0.5, 0.01)),
    Param("steps", int, "Points on the path from the baseline to the face",
          defaults={"ig": 32}, probe={"ig": 16}, low=1, high=512, slider=(4, 256, 4)),
    Param("window", int, "Side of the grey square slid over the face, in pixels (stride half "
                         "of it)",
          defaults={"occlusion": 8}, low=1, high=lambda size: size,
          slider=(2, lambda size: size // 2, 1)),
    Param("baseline", str, "The reference face: black, or the face blurred (keeps its layout, "
                           "not its features)",
          defaults={"ig": "black", "deeplift": "black"}, choices=BASELINES),
    Param("layer", str, "The layer whose activations and gradients make the map (default: the "
                        "last convolutional stage; later layers are coarser and more "
                        "class-specific)",
          defaults={"gradcam": None, "guidedgradcam": None}),
)}


def method_defaults(method: str) -> dict:
    """The parameters `method` takes, with their defaults, in declaration order."""
    return {p.name: p.defaults[method] for p in PARAMS.values() if method in p.defaults}


def probe_params(method: str) -> dict:
    """The parameters the trust checks give `method` (its defaults, with the probes' values)."""
    return {name: PARAMS[name].probe.get(method, default)
            for name, default in method_defaults(method).items()}


def method_params(method: str, given: dict, size: int, defaults: dict | None = None) -> dict:
    """`method`'s parameters: `defaults` (default: `method_defaults`) overridden by `given`
    (values or text), each parsed and checked for faces of `size` pixels."""
    defaults = method_defaults(method) if defaults is None else defaults
    unknown = set(given) - set(defaults)
    if unknown:
        raise FerError(f"{method} takes no parameter {', '.join(sorted(unknown))} "
                       f"(parameters: {', '.join(defaults) or 'none'})")
    parsed = {name: None if value is None else PARAMS[name].parse(value, size)
              for name, value in given.items()}
    return {**defaults, **parsed}


# ---- the command line ------------------------------------------------------------------------

PARAM_FLAG = "--param"
PARAM_METAVAR = "[METHOD.]NAME=VALUE"


def param_help() -> str:
    """The help of --param: the form, then every parameter with its methods and bounds."""
    return ("a method's parameter; NAME=VALUE sets it for every chosen method that takes it, "
            "METHOD.NAME=VALUE for one (repeat for more). Parameters: "
            + "; ".join(p.describe() for p in PARAMS.values()))


def add_param_argument(parser) -> None:
    """--param, repeatable, as every command that explains takes it."""
    parser.add_argument(PARAM_FLAG, action="append", default=[], metavar=PARAM_METAVAR,
                        help=param_help())


def given_params(texts: Iterable[str], methods: Iterable[str]) -> dict[str, dict]:
    """--param values as {method: {name: value text}} for the chosen `methods`: NAME=VALUE
    goes to each of them that takes NAME, METHOD.NAME=VALUE to that one (which must be chosen
    and take it). The values are checked by `method_params`."""
    given = {m: {} for m in methods}
    for text in texts:
        target, equals, value = text.partition("=")
        method, _, name = target.strip().rpartition(".")
        if not (equals and name and value.strip()):
            raise FerError(f"{PARAM_FLAG} {text!r}: expected {PARAM_METAVAR}, e.g. steps=16 or "
                           f"ig.steps=16")
        if method and method not in given:
            raise FerError(f"{PARAM_FLAG} {text!r}: {method} is not a chosen method "
                           f"({', '.join(given)})")
        takers = [m for m in ([method] if method else given) if name in method_defaults(m)]
        if not takers:
            raise FerError(f"{PARAM_FLAG} {text!r}: no chosen method takes {name} "
                           f"({', '.join(f'{m}: {_names(m)}' for m in given)})")
        for m in takers:
            given[m][name] = value.strip()
    return given


def _names(method: str) -> str:
    return ", ".join(method_defaults(method)) or "no parameters"
