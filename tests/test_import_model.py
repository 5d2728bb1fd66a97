"""`import-model`: a model trained in plain PyTorch (no project code but the faces) imported in
each format scores the faces as plain PyTorch does (`evaluate` gives the same accuracy), and each
bad input is one line, exit 2, nothing written."""

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_core.cli.main import main
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.classes import CLASSES
from fer_core.explain.attribution import cam_layers, default_cam_name
from fer_core.models.architectures import build_model, last_conv_stage
from fer_core.models.checkpoint import load_checkpoint, read_payload

# another class order than FER2013's, and another input size (32) than the data's (48)
ORDER = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Angry")
SIZE, MEAN, STD = 32, 0.5, 0.25
TINY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True),
                             nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 7))
""")


@pytest.fixture(scope="module")
def faces():
    return make_builtin_faces(n=300, seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, faces):
    """The tiny module trained for 30 steps in plain PyTorch on 32-pixel faces, in ORDER's
    classes: its code folder, state dict, TorchScript and exported-program files."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "code").mkdir()
    (folder / "code" / "tinynet.py").write_text(TINY)
    scope = {}
    exec(TINY, scope)
    model = scope["build"]()
    x = prepared(faces.images[faces.indices("train")])
    y = torch.tensor([ORDER.index(CLASSES[k]) for k in faces.labels[faces.indices("train")]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    torch.save(model.state_dict(), folder / "tiny.pt")
    torch.jit.save(torch.jit.script(model), folder / "tiny.ts")
    batch = {0: torch.export.Dim("batch")}
    torch.export.save(torch.export.export(model, (x[:2],), dynamic_shapes=(batch,)),
                      folder / "tiny.pt2")
    torch.export.save(torch.export.export(model, (x[:2],)), folder / "fixed.pt2")
    torch.save(model, folder / "pickled.pt")
    return folder, model


def prepared(images: np.ndarray) -> torch.Tensor:
    """Faces as the tiny model takes them: 32 pixels (antialiased), normalized."""
    x = torch.from_numpy(images).float()
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return (x.round().clamp(0, 255) / 255 - MEAN) / STD


def plain_accuracy(model: nn.Module, faces) -> float:
    rows = faces.indices("val")
    with torch.no_grad():
        predicted = model(prepared(faces.images[rows])).argmax(1).numpy()
    return float(np.mean([ORDER[p] == CLASSES[k] for p, k in zip(predicted, faces.labels[rows])]))


def evaluated(run, tmp_path) -> float:
    report = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", "builtin:300", "--json",
                 str(report)]) == 0
    return json.loads(report.read_text())["accuracy"]


def import_args(out, *source) -> list[str]:
    return ["import-model", "--out", str(out), "--classes", ",".join(ORDER), "--size", str(SIZE),
            "--mean", str(MEAN), "--std", str(STD), *source]


@pytest.mark.parametrize("kind", ["factory", "torchscript", "program"])
def test_each_format_scores_the_faces_as_plain_pytorch_does(tiny, faces, tmp_path, kind):
    folder, model = tiny
    source = {"factory": ["--factory", "tinynet:build", "--code", str(folder / "code"),
                          "--weights", str(folder / "tiny.pt")],
              "torchscript": ["--torchscript", str(folder / "tiny.ts")],
              "program": ["--program", str(folder / "tiny.pt2")]}[kind]
    run = tmp_path / "run"
    assert main(import_args(run, *source)) == 0
    ckpt = load_checkpoint(run)
    assert ckpt.task.classes == ORDER and ckpt.task.shape == (1, SIZE, SIZE)
    accuracy = evaluated(run, tmp_path)
    assert accuracy == pytest.approx(plain_accuracy(model, faces)) and accuracy > 1 / 7


def test_the_reports_torchvision_resnet18_state_dict_imports_and_scores_as_plain_pytorch(
        faces, tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)  # the ImageNet stem, 3 channels
    net.fc = nn.Linear(512, 7)  # replaced after building, as the report's was
    net.eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    run = tmp_path / "report-resnet18"
    assert main(["import-model", "--out", str(run), "--classes", ",".join(CLASSES),
                 "--torchvision", "resnet18", "--weights", str(tmp_path / "model.pt"),
                 "--size", "48", "--mean", "0.485,0.456,0.406",
                 "--std", "0.229,0.224,0.225"]) == 0
    ckpt = load_checkpoint(run)
    assert ckpt.task.shape == (3, 48, 48)
    assert "layer4.1.conv2" in dict(ckpt.model.named_modules())  # its own names
    layers = cam_layers(ckpt.arch, ckpt.task, **ckpt.arch_options)
    assert default_cam_name(ckpt.arch, layers) == "layer4.1.conv2"  # Grad-CAM's default
    assert last_conv_stage(ckpt.model.eval(), ckpt.task.shape) == "layer4.1.conv2"
    own = build_model("resnet18", ckpt.task)
    assert last_conv_stage(own.eval(), ckpt.task.shape) == "resnet.layer4.1.relu_out" == \
        default_cam_name("resnet18", cam_layers("resnet18", ckpt.task))  # ours keep theirs
    rows = faces.indices("val")
    x = torch.from_numpy(faces.images[rows]).float().div(255).expand(-1, 3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        predicted = net((x - mean) / std).argmax(1).numpy()
        ours = ckpt.model(x).argmax(1).numpy()
    np.testing.assert_array_equal(ours, predicted)
    expected = float(np.mean(predicted == faces.labels[rows]))
    assert evaluated(run, tmp_path) == pytest.approx(expected)


@pytest.mark.parametrize("make_args, message", [
    (lambda f, t: ["--factory", "tinynet:build", "--code", str(f / "code"),
                   "--weights", str(f / "pickled.pt")], "a pickled module or object"),
    (lambda f, t: ["--torchscript", str(f / "pickled.pt")], "not a TorchScript file"),
    (lambda f, t: ["--torchscript", str(t / "missing.ts")], "no such file"),
    (lambda f, t: ["--factory", "nosuchmodule:build"], "ModuleNotFoundError"),
    (lambda f, t: ["--factory", "tinynet:TINY_MISSING", "--code", str(f / "code")],
     "AttributeError"),
    (lambda f, t: ["--factory", "torch:zeros", "--channels", "1"], "TypeError"),
    (lambda f, t: ["--factory", "math:pi", "--channels", "1"], "TypeError"),
    (lambda f, t: ["--torchvision", "resnet18", "--weights", str(f / "tiny.pt")],
     "the weights do not fit the model: missing conv1.weight"),
    (lambda f, t: ["--torchvision", "not_a_model"], "not a classification model"),
    (lambda f, t: ["--program", str(f / "fixed.pt2")], "export it with a dynamic batch"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tiny, tmp_path, capsys, make_args,
                                                          message):
    folder, _ = tiny
    run = tmp_path / "new" / "folders" / "run"
    assert main(import_args(run, *make_args(folder, tmp_path))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "new").exists()  # not even the folders above --out


def test_a_model_with_another_class_count_or_nan_outputs_is_refused(tiny, tmp_path, capsys):
    folder, model = tiny
    args = import_args(tmp_path / "run", "--torchscript", str(folder / "tiny.ts"))
    args[args.index("--classes") + 1] = "a,b,c"
    assert main(args) == 2
    assert "not one logit for each of its 3 classes" in capsys.readouterr().err
    broken = torch.jit.script(nn.Sequential(model, nn.Threshold(1e9, float("nan"))))
    torch.jit.save(broken, tmp_path / "nan.ts")
    assert main(import_args(tmp_path / "run", "--torchscript", str(tmp_path / "nan.ts"))) == 2
    assert "not finite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


PAGES = ("views/home.py", "views/model.py", "views/training/page.py", "views/confusions/page.py",
         "views/saliency/page.py", "views/filters/page.py", "views/embeddings/page.py")


@pytest.fixture(scope="module")
def imported_root(tiny, tmp_path_factory):
    """A checkpoints root holding the tiny model imported in each of the three formats, and an
    untrained torchvision resnet18 with its ImageNet stem (the report's model)."""
    folder, _ = tiny
    root = tmp_path_factory.mktemp("imported")
    sources = {"tiny-factory": ["--factory", "tinynet:build", "--code", str(folder / "code"),
                                "--weights", str(folder / "tiny.pt")],
               "tiny-torchscript": ["--torchscript", str(folder / "tiny.ts")],
               "tiny-program": ["--program", str(folder / "tiny.pt2")]}
    for name, source in sources.items():
        assert main(import_args(root / name, *source, "--data", "builtin:300")) == 0
    assert main(["import-model", "--out", str(root / "report-resnet18"), "--classes",
                 ",".join(CLASSES), "--torchvision", "resnet18", "--size", "48",
                 "--data", "builtin:300"]) == 0
    return root


@pytest.mark.parametrize("run", ["tiny-factory", "tiny-torchscript", "tiny-program",
                                 "report-resnet18"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_an_imported_model(imported_root, monkeypatch, page, run):
    import apptest_helpers

    apptest_helpers.serve(monkeypatch, imported_root)
    at = apptest_helpers.open_page(page, data="builtin:300", run=run)
    assert at.session_state["selection"].run == run
    errors = [e.value for e in at.main.error]
    hookable = run in ("tiny-factory", "report-resnet18") or page in (
        "views/home.py", "views/training/page.py", "views/model.py")
    assert errors == ([] if hookable else [errors[0]]), errors
    if not hookable:
        assert "layers cannot be watched" in errors[0] and "fer_core evaluate" in errors[0]


def test_the_model_page_lists_an_imported_resnet18_by_its_own_layer_names(imported_root,
                                                                           monkeypatch):
    import apptest_helpers

    apptest_helpers.serve(monkeypatch, imported_root)
    at = apptest_helpers.open_page("views/model.py", data="builtin:300", run="report-resnet18")
    layers = at.dataframe[0].value
    assert "layer4.1.conv2" in set(layers.iloc[:, 0]) or "layer4.1.conv2" in layers.to_string()
    assert layers["params"].iloc[-1] > 11_000_000  # resnet18 with a 7-way head


def test_a_torchvision_classifier_trains_from_scratch_for_the_datas_task(faces, tmp_path):
    """The report's model trained here: torchvision's resnet18 with its ImageNet stem, the
    built-in grey faces repeated into 3 channels; evaluate agrees with plain PyTorch."""
    run = tmp_path / "tv-resnet18"
    assert main(["train", "--data", "builtin:300", "--arch", "torchvision:resnet18",
                 "--channels", "3", "--epochs", "1", "--batch-size", "32", "--snapshots", "0",
                 "--out", str(run)]) == 0
    ckpt = load_checkpoint(run)
    assert ckpt.arch == "torchvision:resnet18" and ckpt.task.shape == (3, 48, 48)
    assert ckpt.model.conv1.weight.shape[1] == 3  # torchvision's own names, its stem
    layers = cam_layers(ckpt.arch, ckpt.task, **ckpt.arch_options)
    assert default_cam_name(ckpt.arch, layers) == "layer4.1.conv2"
    rows = faces.indices("val")
    x = torch.from_numpy(faces.images[rows]).float().div(255).expand(-1, 3, -1, -1)
    import torchvision

    plain = torchvision.models.resnet18(num_classes=7)  # its keys are the run's weights' keys
    plain.load_state_dict(read_payload(run / "best.pt")["model"])
    mean, std = ckpt.arch_options["mean"], ckpt.arch_options["std"]
    with torch.no_grad():
        expected = plain.eval()((x - mean) / std).argmax(1).numpy()
    assert evaluated(run, tmp_path) == pytest.approx(float(np.mean(
        expected == faces.labels[rows])))


def test_an_unknown_torchvision_architecture_is_one_line_and_no_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "builtin:300", "--arch", "torchvision:no_such_net",
                 "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--arch torchvision:no_such_net: not a classification" in err
    assert not run.exists()


@pytest.mark.parametrize("name", ["tiny-factory", "report-resnet18"])
def test_train_init_fine_tunes_an_imported_run_on_the_data_as_it_sees_it(imported_root,
                                                                         tmp_path, name):
    """--init of an imported run trains that model (another class order, size and channels
    than the data's: the data is matched to it); a factory run's code is copied along."""
    out = tmp_path / f"tuned-{name}"
    assert main(["train", "--data", "builtin:300", "--init", str(imported_root / name),
                 "--epochs", "1", "--batch-size", "32", "--snapshots", "0",
                 "--out", str(out)]) == 0
    source, tuned = load_checkpoint(imported_root / name), load_checkpoint(out)
    assert tuned.arch == "imported" and tuned.task == source.task
    assert tuned.arch_options["kind"] == source.arch_options["kind"]
    before, after = source.model.state_dict(), tuned.model.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    if name == "tiny-factory":
        assert (out / "code" / "tinynet.py").read_text() == TINY
    assert evaluated(out, tmp_path) > 0


def test_train_init_of_a_torchscript_run_or_with_another_arch_is_refused(imported_root, tmp_path,
                                                                        capsys):
    out = tmp_path / "tuned"
    assert main(["train", "--data", "builtin:300", "--init",
                 str(imported_root / "tiny-torchscript"), "--out", str(out)]) == 2
    assert "a torchscript model cannot be trained here" in capsys.readouterr().err
    assert main(["train", "--data", "builtin:300", "--init", str(imported_root / "tiny-factory"),
                 "--arch", "resnet18", "--out", str(out)]) == 2
    assert "leave --arch out to fine-tune it" in capsys.readouterr().err
    assert not out.exists()


TWICE = textwrap.dedent("""
    import torch
    from torch import nn

    class Twice(nn.Module):
        '''One ReLU module after both convolutions: called twice in each forward.'''

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))

        def forward(self, x):
            return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))

    def build():
        torch.manual_seed(0)
        return Twice()
""")


def test_a_module_called_twice_is_named_by_the_methods_that_hook_it(tmp_path, capsys):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "twice.py").write_text(TWICE)
    run = tmp_path / "twice"
    assert main(["import-model", "--out", str(run), "--classes", ",".join(CLASSES),
                 "--factory", "twice:build", "--code", str(tmp_path / "code"), "--channels", "1",
                 "--size", "48"]) == 0

    def explain(method, *more):
        return main(["explain", "--checkpoint", str(run), "--data", "builtin:300", "--split",
                     "val", "--index", "0", "--method", method, *more, "--out",
                     str(tmp_path / f"{method}.png")])

    for method in ("deeplift", "guided", "guidedgradcam"):
        assert explain(method) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "its module 'relu' is called 2 times" in err, err
    assert explain("gradcam", "--param", "layer=relu") == 2
    assert "choose another layer" in capsys.readouterr().err
    for method in ("gradcam", "vanilla", "ig", "occlusion"):  # Grad-CAM on conv2, its default
        assert explain(method) == 0, capsys.readouterr().err
