"""The one declaration of the explanation settings (fer_core/explain/settings.py): every method's
code takes exactly its declared parameters; a value goes from the declaration through the
command line, the Saliency page's widget and its URL and back unchanged; and a parameter added
to the declaration (with a method that uses it) reaches the command line, the page and the URL
with no other edit."""

import json
import subprocess
import sys

import apptest_helpers
import pytest
import torch

from dashboard.views.saliency.controls import param_key
from fer_core.cli.main import build_parser, main
from fer_core.data.task import FER2013, Task
from fer_core.errors import FerError
from fer_core.explain import attribution, settings
from fer_core.explain.settings import PARAMS, Param, given_params, method_defaults

PAGE = "views/saliency/page.py"
DATA = "builtin:300"
LAYER = "block2.relu"  # a Grad-CAM layer of cnn3 that is not its default


def keyword_parameters(method: attribution.Method) -> set[str]:
    code = method.compute.__code__
    names = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    return set(names) - {"batch", "seed"}


@pytest.mark.parametrize("key", settings.METHOD_KEYS)
def test_each_method_s_code_takes_exactly_its_declared_parameters(key):
    method = attribution.METHODS[key]
    assert keyword_parameters(method) == set(method_defaults(key))
    assert method.title == settings.METHOD_TITLES[key]
    assert not method.compute.__kwdefaults__  # the defaults are the declaration's only


def test_every_declared_method_is_implemented():
    assert list(attribution.METHODS) == list(settings.METHOD_KEYS)


def away_value(method: str, name: str):
    """A value of the parameter other than the method's default, that its widget can show."""
    param = PARAMS[name]
    if param.choices:
        return next(c for c in param.choices if c != param.defaults[method])
    if param.kind is str:
        return LAYER
    low, high, _ = param.slider_range(FER2013.size)
    return high if param.defaults[method] != high else low


CASES = [(m, n) for n, p in PARAMS.items() for m in p.defaults]


@pytest.mark.parametrize("method,name", CASES)
def test_a_value_goes_from_the_flag_to_the_widget_the_url_and_back(dashboard_root, method, name):
    value = away_value(method, name)
    args = build_parser().parse_args(["explain", "--checkpoint", "x", "--data", DATA, "--index",
                                      "0", "--method", method, "--param", f"{name}={value}",
                                      "--out", "x.png"])
    from fer_core.cli.explain import method_arguments

    _, parsed = method_arguments(args, FER2013)
    assert parsed == {**method_defaults(method), name: value}
    at = apptest_helpers.open_page(PAGE, data=DATA, run="tiny-a", method=method,
                                   **{n: str(v) for n, v in parsed.items() if v is not None})
    assert at.session_state[param_key(method, name)] == value
    assert PARAMS[name].parse(at.query_params[name], FER2013.size) == value


def test_name_value_goes_to_every_chosen_method_that_takes_it():
    given = given_params(["samples=4", "smoothgrad.noise=0.3"], ["smoothgrad", "gradshap", "ig"])
    assert given == {"smoothgrad": {"samples": "4", "noise": "0.3"}, "gradshap": {"samples": "4"},
                     "ig": {}}
    with pytest.raises(FerError, match="no chosen method takes window"):
        given_params(["window=4"], ["ig"])
    with pytest.raises(FerError, match="occlusion is not a chosen method"):
        given_params(["occlusion.window=4"], ["ig"])


def test_a_bound_that_depends_on_the_image_size_follows_it():
    assert PARAMS["window"].bounds(48) == (1, 48)
    assert PARAMS["window"].bounds(100) == (1, 100)
    assert PARAMS["window"].slider_range(100) == (2, 50, 1)
    with pytest.raises(FerError, match=r"window must lie in \[1, 48\], got 60"):
        settings.method_params("occlusion", {"window": "60"}, 48)
    assert settings.method_params("occlusion", {"window": "60"}, size=100) == {"window": 60}


def test_explain_checks_a_bound_against_the_faces_size():
    from fer_core.models.architectures import build_model

    task = Task(("a", "b", "c"), 64, 3)
    model = build_model("cnn3", task).eval()
    faces = torch.rand(1, *task.shape)
    assert attribution.explain(model, faces, "occlusion", window=60).params == {"window": 60}
    with pytest.raises(FerError, match=r"window must lie in \[1, 64\], got 65"):
        attribution.explain(model, faces, "occlusion", window=65)


def test_the_settings_need_no_torch():
    code = "import sys, fer_core.explain.settings; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def brightness_gradient(scores, x, target, *, batch, seed, gain):
    """A stand-in method with one new parameter: the vanilla gradient times `gain`."""
    return attribution.vanilla_gradient(scores, x, target, batch=batch, seed=seed) * gain


@pytest.fixture
def new_parameter(monkeypatch):
    """A parameter `gain` declared for vanilla, and vanilla's code taking it: the two edits."""
    monkeypatch.setitem(PARAMS, "gain", Param("gain", float, "How much the map is scaled",
                                              defaults={"vanilla": 1.0}, low=0.0, high=10.0,
                                              slider=(0.5, 5.0, 0.5)))
    vanilla = attribution.METHODS["vanilla"]
    monkeypatch.setitem(attribution.METHODS, "vanilla", attribution.Method(
        "vanilla", vanilla.title, vanilla.signed, vanilla.hooks, brightness_gradient))


def test_a_new_parameter_reaches_the_command_line(new_parameter, tmp_path, capsys):
    report = tmp_path / "map.json"
    shipped = apptest_helpers.APP.replace("dashboard/app.py", "checkpoints/builtin-cnn3")
    assert main(["explain", "--checkpoint", shipped, "--data", DATA, "--index", "0",
                 "--param", "gain=2.5", "--out", str(tmp_path / "map.png"), "--json",
                 str(report)]) == 0
    assert json.loads(report.read_text())["params"] == {"gain": 2.5}
    assert main(["explain", "--checkpoint", shipped, "--data", DATA, "--index", "0",
                 "--param", "gain=20", "--out", str(tmp_path / "map.png")]) == 2
    assert "gain must lie in [0.0, 10.0], got 20.0" in capsys.readouterr().err
    assert "gain (vanilla: default 1.0" in settings.param_help()


def test_a_new_parameter_reaches_the_page_and_its_url(new_parameter, dashboard_root):
    at = apptest_helpers.open_page(PAGE, data=DATA, run="tiny-a", method="vanilla", gain="2.5")
    slider = at.slider(key=param_key("vanilla", "gain"))
    assert (slider.value, slider.min, slider.max) == (2.5, 0.5, 5.0)
    assert at.query_params["gain"] == "2.5"
    slider.set_value(4.0).run()
    assert at.query_params["gain"] == "4.0"
    at = apptest_helpers.open_page(PAGE, data=DATA, run="tiny-a", method="vanilla", gain="9")
    assert "`gain`" in " ".join(w.value for w in at.warning)  # beyond what the slider shows


def test_the_maps_scale_with_the_new_parameter(new_parameter):
    from fer_core.data.readers import load_dataset
    from fer_core.models.checkpoint import load_checkpoint

    shipped = apptest_helpers.APP.replace("dashboard/app.py", "checkpoints/builtin-cnn3")
    model = load_checkpoint(shipped).model
    faces = torch.from_numpy(load_dataset(DATA).images[:2])
    once = attribution.explain(model, faces, "vanilla").maps
    twice = attribution.explain(model, faces, "vanilla", gain="2").maps
    torch.testing.assert_close(twice, 2 * once)
