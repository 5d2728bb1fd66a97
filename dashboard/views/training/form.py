"""The new-run form: one widget per training setting (fer_core.training.config.settings(), the
same settings the CLI's train flags come from), in WIDGETS' order, four to a row, the rarely
changed ones folded into "More settings". Submitting launches `python -m fer_core train`, under
torchrun when the machine has several GPUs and the form's "GPUs" asks for more than one.

The recipe is chosen above the form (a widget inside a form cannot act until it is submitted):
choosing one fills the form with the recipe's settings, which can then be changed."""

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from dashboard.common import state
from dashboard.common.paths import checkpoints_root
from dashboard.common.runs import RunInfo, all_runs
from dashboard.views.training.launcher import start_run
from fer_core.device import available_devices, gpu_count
from fer_core.errors import FerError
from fer_core.training.config import (
    ARCHS,
    RECIPES,
    TORCHVISION,
    TORCHVISION_PICKS,
    Setting,
    TrainConfig,
    settings,
)

KEEP = {"persist_state": "session"}  # the form keeps its values when the user visits another page


@dataclass(frozen=True)
class Widget:
    """How the form shows one setting: a select box when it has choices, a toggle for a bool, a
    text box for other text, else a number box (low, high, step, format)."""

    label: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    format: str | None = None
    more: bool = False  # under "More settings"
    help: str | None = None  # instead of the setting's own (its flag's) help
    inverted: bool = False  # the toggle shows the opposite of the setting
    choices: Callable[[], list[str]] | None = None  # instead of the setting's


WIDGETS = {
    "recipe": Widget("Recipe", help="fill the form with a named recipe's settings (the same as "
                                    "the train command's --recipe)"),
    "data": Widget("Dataset"),
    "device": Widget("Device", choices=available_devices, help="where the trainer runs"),
    "log_every": Widget("Loss point every N steps", 1, 10_000),
    "arch": Widget("Architecture", choices=lambda: [
        *ARCHS, *(TORCHVISION + name for name in TORCHVISION_PICKS)],
        help="cnn3, resnet18, or a torchvision classifier trained from scratch (the train "
             "command's --arch takes any: torchvision:NAME)"),
    "init": Widget("Start from checkpoint", more=True,
                   help="fine-tune: a run folder or .pt file whose weights the run starts from "
                        "(same architecture and options); empty: random weights"),
    "dropout": Widget("Dropout (cnn3)", 0.0, 0.9, 0.05),
    "epochs": Widget("Epochs", 1, 1000),
    "batch_size": Widget("Batch size", 2, 4096),
    "optimizer": Widget("Optimizer"),
    "lr": Widget("Learning rate", 1e-6, 10.0, 1e-4, "%.5f"),
    "schedule": Widget("LR schedule"),
    "weight_decay": Widget("Weight decay", 0.0, 1.0, 1e-4, "%.5f"),
    "shift": Widget("Shift (px)", 0, 12),
    "rotate": Widget("Rotation (degrees)", 0.0, 45.0, 1.0),
    "flip": Widget("Horizontal flip", help="flip each face horizontally with probability 1/2"),
    "small_input": Widget("ImageNet stem", inverted=True),
    "momentum": Widget("Momentum (SGD)", 0.0, 0.999, 0.01, "%.3f", more=True),
    "nesterov": Widget("Nesterov momentum", more=True),
    "labels": Widget("Labels", help="what the loss learns from; the vote modes need crowd "
                                    "votes (FER+ folders)"),
    "holdout": Widget("Validate on held-out training share", 0.0, 0.5, 0.05, more=True),
    "label_smoothing": Widget("Label smoothing", 0.0, 0.9, 0.05, more=True),
    "erase": Widget("Random erasing", 0.0, 1.0, 0.05, more=True),
    "mixup": Widget("Mixup alpha", 0.0, 10.0, 0.1, more=True),
    "cutmix": Widget("CutMix alpha", 0.0, 10.0, 0.1, more=True),
    "ema": Widget("Weight average decay", 0.0, 0.9999, 0.0001, "%.4f", more=True),
    "head": Widget("Head (cnn3)", more=True),
    "class_weights": Widget("Class weights", more=True),
    "precision": Widget("Precision", more=True),
    "compile": Widget("torch.compile", more=True),
    "sync_bn": Widget("SyncBatchNorm", more=True),
    "snapshots": Widget("Snapshots of the weights", 0, 1000, more=True),
    "probes": Widget("Probe faces", 0, 64, more=True),
    "seed": Widget("Seed", 0, 2**31 - 1, more=True),
    "classes": Widget("Class names (class-folder tree)", more=True),
    "size": Widget("Image size (0: the data's own)", 0, 1024, more=True),
    "channels": Widget("Channels (0: the data's own)", more=True),
}


def key(name: str) -> str:
    return f"train_{name}"


def new_run_form(data: str, runs: list[RunInfo]) -> None:
    """The run name and every setting's widget, starting at the defaults (the sidebar's dataset
    and device)."""
    by_name = {s.name: s for s in settings()}
    recipe = _recipe_picker(by_name["recipe"])
    initial = {**RECIPES[recipe], "data": data, "device": state.device().type}
    in_form = {name: widget for name, widget in WIDGETS.items() if name != "recipe"}
    main = [name for name, widget in in_form.items() if not widget.more]
    more = [name for name, widget in in_form.items() if widget.more]
    gpus = gpu_count()
    extra = ["gpus"] if gpus > 1 else []
    with st.form("new_run"):
        cells = dict(zip(["name", *main, *extra], _cells(len(main) + 1 + len(extra))))
        with st.expander("More settings"):
            cells.update(zip(more, _cells(len(more))))
        if "train_name" not in st.session_state:
            st.session_state["train_name"] = free_name(runs)
        cells["name"].text_input("Run name", key="train_name", **KEEP,
                                 help="A folder under the checkpoints root: letters, digits, . _ -")
        for name, widget in in_form.items():
            _widget(cells[name], by_name[name], widget, initial.get(name, by_name[name].default))
        if extra:
            st.session_state.setdefault("train_gpus", 1)
            cells["gpus"].number_input("GPUs", 1, gpus, key="train_gpus", **KEEP,
                                       help="more than one trains under torchrun, the batch size "
                                            "split among them (it must divide evenly)")
        st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                              on_click=_submit)
    if message := st.session_state.pop("form_error", None):
        st.error(message, icon=":material/error:")
    if started := st.session_state.pop("form_started", None):
        st.toast(f"Started run {started}", icon=":material/play_arrow:")


def _recipe_picker(setting: Setting) -> str:
    widget = WIDGETS["recipe"]
    return st.selectbox(widget.label, setting.choices, key=key("recipe"), help=widget.help,
                        on_change=_apply_recipe, **KEEP)


def _apply_recipe() -> None:
    """The recipe box's callback: every setting a recipe sets takes the chosen recipe's value
    (the default, where it sets none)."""
    chosen = RECIPES[st.session_state[key("recipe")]]
    defaults = {s.name: s.default for s in settings()}
    for name in set().union(*RECIPES.values()):
        st.session_state[key(name)] = _shown(name, chosen.get(name, defaults[name]))


def _cells(count: int) -> list:
    """`count` cells in rows of four (toggles level with the boxes' middle)."""
    return [cell for _ in range(0, count, 4)
            for cell in st.columns(4, vertical_alignment="center")][:count]


def _widget(box, setting: Setting, widget: Widget, initial) -> None:
    """The setting's widget in `box`, keyed train_NAME. Its value lives in session state (set
    there first, the widget given no value of its own), so that the recipe box can change it:
    a value written to session state by a callback is what the browser then shows."""
    name = key(setting.name)
    st.session_state.setdefault(name, _shown(setting.name, initial))
    common = {"key": name, "help": widget.help or setting.help, **KEEP}
    choices = widget.choices() if widget.choices else setting.choices
    if choices:
        box.selectbox(widget.label, choices, **common)
    elif isinstance(setting.default, bool):
        box.toggle(widget.label, **common)
    elif isinstance(setting.default, str):
        box.text_input(widget.label, **common)
    else:
        box.number_input(widget.label, widget.low, widget.high, step=widget.step,
                         format=widget.format, **common)


def _shown(name: str, value):
    """A setting's value as its widget shows it (an inverted toggle shows the opposite)."""
    return value != WIDGETS[name].inverted if isinstance(value, bool) else value


def form_config() -> TrainConfig:
    """The TrainConfig the form's widgets describe. An arch option is set only for the chosen
    architecture, and only away from its default (as the CLI leaves an unused flag unset)."""
    s = st.session_state
    values = {}
    for setting in settings():
        value = s[key(setting.name)]
        if WIDGETS[setting.name].inverted:
            value = not value
        if setting.arch and (setting.arch != s[key("arch")] or value == setting.default):
            value = None
        values[setting.name] = value
    values["data"] = values["data"].strip()
    return TrainConfig.from_settings(values)


def free_name(runs: list[RunInfo]) -> str:
    taken = {r.name for r in runs}
    return next(f"run-{i}" for i in range(1, len(taken) + 2) if f"run-{i}" not in taken)


def _submit() -> None:
    """Form callback (it runs before the page, so the new run is listed and followed at once):
    check the dataset loads, then launch; a refusal is shown under the form."""
    s = st.session_state
    config = form_config()
    _, error = state.load_faces(config.data)
    try:
        if error:
            raise FerError(error)
        folder = start_run(checkpoints_root(), s.train_name, config,
                           gpus=s.get("train_gpus", 1) if gpu_count() > 1 else 1)
    except FerError as e:
        s["form_error"] = str(e)
        return
    s["follow"] = s["form_started"] = folder.name
    s["train_name"] = free_name(all_runs())
