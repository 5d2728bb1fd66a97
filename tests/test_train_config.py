"""TrainConfig is the one source of a run's settings: every field (and every architecture option)
set away from its default survives the trip config -> launcher arguments -> CLI parser -> config,
and the Training page's form offers each of them and launches the same command.

The settings are read from TrainConfig's fields and the architectures' options, so a field added
later fails here until the CLI, the launcher and the form carry it."""

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.common import runs
from dashboard.views.training import launcher
from dashboard.views.training.form import WIDGETS
from dashboard.views.training.launcher import train_args
from fer_core.cli.main import build_parser
from fer_core.cli.train import train_config_from_args
from fer_core.errors import FerError
from fer_core.models import architectures, imported
from fer_core.training import config
from fer_core.training.config import TrainConfig

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
NOT_SETTINGS = {"arch_options", "precision_used"}  # set through the options; by the trainer
# A value away from the default for every setting; the arch goes in each test case.
AWAY = {"data": "builtin:300", "epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.05,
        "momentum": 0.8, "nesterov": True, "weight_decay": 0.0, "schedule": "plateau",
        "label_smoothing": 0.1, "shift": 0, "flip": False, "rotate": 5.0, "seed": 7,
        "recipe": "fer2013-resnet18", "erase": 0.5, "mixup": 0.4, "cutmix": 1.0, "ema": 0.9,
        "compile": True, "sync_bn": True, "snapshots": 2, "probes": 3,
        "init": str(Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"),
        "device": "cpu", "precision": "bf16", "class_weights": "balanced", "log_every": 1,
        "dropout": 0.5, "head": "flat", "small_input": False, "classes": "calm,cross",
        "size": 64, "channels": 3, "labels": "crossentropy", "holdout": 0.1}


def option_names(arch: str) -> set[str]:
    """The options of `arch` a person chooses (mean and std are the data's, not a choice)."""
    return set(architectures.DEFAULT_OPTIONS[arch]) - set(architectures.NORMALIZATION)


def away_from_defaults(arch: str) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_SETTINGS - {"arch"}
    options = {name: AWAY[name] for name in option_names(arch)}
    return TrainConfig(arch=arch, arch_options=options, **{name: AWAY[name] for name in fields})


def test_every_setting_is_set_away_from_its_default():
    defaults = TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_SETTINGS - {"arch"}
    options = set().union(*map(option_names, architectures.ARCHITECTURES))
    assert set(AWAY) == fields | options
    assert all(AWAY[name] != getattr(defaults, name) for name in fields)
    for arch, options in architectures.DEFAULT_OPTIONS.items():
        assert all(AWAY[name] != options[name] for name in option_names(arch))


def test_the_settings_spell_the_architectures_as_they_are():
    assert config.ARCHS == tuple(architectures.ARCHITECTURES)
    assert (config.TORCHVISION, config.IMPORTED) == (imported.TORCHVISION, imported.IMPORTED)
    assert config.CNN3_HEADS == architectures.CNN3_HEADS
    for option in config.ARCH_OPTIONS:
        assert architectures.DEFAULT_OPTIONS[option.arch][option.name] == option.default
    assert {(o.arch, o.name) for o in config.ARCH_OPTIONS} == {
        (arch, name) for arch in architectures.ARCHITECTURES for name in option_names(arch)}


@pytest.mark.parametrize("arch", list(architectures.ARCHITECTURES))
def test_every_setting_survives_the_trip_through_the_launcher_and_the_cli(arch):
    wanted = away_from_defaults(arch)
    args = build_parser().parse_args(["train", *train_args(wanted), "--out", "x"])
    assert train_config_from_args(args) == wanted


def test_an_arch_option_without_a_flag_is_refused_not_dropped():
    with pytest.raises(FerError, match="mean"):
        train_args(TrainConfig(arch_options={"mean": 0.5}))


def test_the_form_has_a_widget_for_every_setting():
    assert set(WIDGETS) == {s.name for s in config.settings()}


def form_widget(at: AppTest, key: str):
    found = [w for kind in ("text_input", "number_input", "selectbox", "toggle")
             for w in at.get(kind) if w.key == key]
    assert found, f"the form has no widget {key}"
    return found[0]


@pytest.mark.parametrize("arch", list(architectures.ARCHITECTURES))
def test_the_form_launches_every_setting_it_was_given(arch, run_root, monkeypatch):
    launched = []
    monkeypatch.setattr(launcher.subprocess, "Popen", lambda command, **_: launched.append(
        command) or SimpleNamespace(pid=os.getpid(), poll=lambda: None))
    # AWAY's --init holds a cnn3 of other options: loading it is checked in test_dashboard_training
    monkeypatch.setattr(launcher, "load_init", lambda config: None)
    wanted = away_from_defaults(arch)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    form_widget(at, "train_recipe").set_value(AWAY["recipe"]).run()  # above the form: acts at once
    form_widget(at, "train_name").set_value(f"every-{arch}")
    values = {**AWAY, "arch": arch}
    for name, widget in WIDGETS.items():
        value = values[name]
        form_widget(at, f"train_{name}").set_value(not value if widget.inverted else value)
    next(b for b in at.button if b.label == "Start training").click().run()
    runs.CHILDREN.pop(os.getpid(), None)
    assert not at.exception and len(launched) == 1, [e.value for e in at.error]
    command = launched[0]  # (the page then reports this stand-in trainer as failed)
    assert command[1:4] == ["-m", "fer_core", "train"]
    args = build_parser().parse_args(command[3:])
    assert args.out == str(run_root / f"every-{arch}")
    assert train_config_from_args(args) == wanted


def test_choosing_a_recipe_fills_the_form_with_its_settings(run_root):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    recipe = config.RECIPES["fer2013-resnet18"]
    form_widget(at, "train_recipe").set_value("fer2013-resnet18").run()
    assert not at.exception
    assert {name: form_widget(at, f"train_{name}").value for name in recipe} == recipe
    assert form_widget(at, "train_data").value == "builtin:100"  # the recipe leaves it alone
    form_widget(at, "train_recipe").set_value("none").run()
    assert all(form_widget(at, f"train_{name}").value == getattr(TrainConfig(), name)
               for name in recipe)


def test_with_several_gpus_the_form_launches_torchrun_and_refuses_a_batch_that_does_not_divide(
        run_root, monkeypatch):
    from dashboard.views.training import form

    launched = []
    monkeypatch.setattr(launcher.subprocess, "Popen", lambda command, **_: launched.append(
        command) or SimpleNamespace(pid=os.getpid(), poll=lambda: None))
    monkeypatch.setattr(form, "gpu_count", lambda: 4)
    monkeypatch.setitem(WIDGETS, "device", dataclasses.replace(WIDGETS["device"],
                                                               choices=lambda: ["cpu", "cuda"]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    form_widget(at, "train_device").set_value("cuda")
    form_widget(at, "train_gpus").set_value(4)
    form_widget(at, "train_batch_size").set_value(30)
    start = next(b for b in at.button if b.label == "Start training")
    start.click().run()
    assert not launched and "does not divide among 4 GPUs" in at.error[0].value
    form_widget(at, "train_batch_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    runs.CHILDREN.pop(os.getpid(), None)
    assert not at.exception and len(launched) == 1, [e.value for e in at.error]
    command = launched[0]
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=4", "-m"]
    args = build_parser().parse_args(command[7:])
    assert args.batch_size == 64 and args.device == "cuda"


def test_with_one_gpu_or_none_the_form_offers_no_gpu_count(run_root):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["data"] = "builtin:100"
    at.run()
    at.switch_page("views/training/page.py").run()
    assert not at.exception
    assert not [w for w in at.number_input if w.key == "train_gpus"]
