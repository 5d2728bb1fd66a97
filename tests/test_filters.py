"""Activation maximization (fer_core.explain.filters): seeded and deterministic, the model
untouched, a batch equal to one-filter runs, each regularizer doing what it says, class logits as
targets, and on the shipped checkpoint every sampled filter of every conv block driven at least
as high as the best real face of the val split drives it."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.cli.main import main
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013, Task
from fer_core.errors import FerError
from fer_core.explain.filter_stats import filter_stats, outputs_of
from fer_core.explain.filters import (
    Settings,
    climbs_pre_activation,
    maximize,
    module_input,
    parse_filters,
    total_variation,
    visualize,
)
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"
QUICK = Settings(steps=24, jitter=1, scale=0.05)


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED)


def run(ckpt, layer="block3.relu", filters=(0, 1, 2), settings=QUICK):
    return visualize(ckpt.model, ckpt.arch, ckpt.arch_options, layer, list(filters),
                     settings, task=ckpt.task)


def test_a_seed_gives_the_same_images(shipped):
    first, again = run(shipped), run(shipped)
    assert np.array_equal(first.images, again.images)
    other = run(shipped, settings=Settings(steps=24, jitter=1, scale=0.05, seed=1))
    assert not np.array_equal(first.images, other.images)


def test_the_model_is_left_untouched(shipped):
    before = {k: v.clone() for k, v in shipped.model.state_dict().items()}
    run(shipped)
    after = shipped.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in shipped.model.parameters())
    assert not shipped.model.training
    assert all(not m._forward_hooks for m in shipped.model.modules())


def test_a_batch_gives_each_filter_the_image_it_gets_alone(shipped):
    together = run(shipped, filters=(4, 9, 30))
    for i, f in enumerate((4, 9, 30)):
        alone = run(shipped, filters=(f,))
        # fp32 kernels block a batch differently: a grey level or two after 24 steps
        assert np.abs(alone.images[0].astype(int) - together.images[i].astype(int)).max() <= 3
        assert alone.activations[0] == pytest.approx(together.activations[i], rel=1e-3)


@pytest.mark.parametrize("name, value", [("tv", 1.0), ("l2", 1.0), ("blur_every", 4)])
def test_each_regularizer_does_what_it_says(shipped, name, value):
    plain = run(shipped, filters=range(4))
    regular = run(shipped, filters=range(4), settings=Settings(steps=24, jitter=1, scale=0.05,
                                                                **{name: value}))
    x, y = (torch.from_numpy(s.images).float() / 255 for s in (plain, regular))
    if name == "l2":
        assert ((y - 0.5) ** 2).mean() < ((x - 0.5) ** 2).mean()
    else:
        assert total_variation(y).mean() < total_variation(x).mean()


def test_the_fourier_parameterization_climbs_too(shipped):
    start = run(shipped, settings=Settings(steps=1, param="fourier"))
    end = run(shipped, settings=Settings(steps=48, param="fourier"))
    assert (end.activations > start.activations).all()


def test_a_class_logit_is_a_target(shipped):
    result = run(shipped, layer="head.fc" if "head" in dict(shipped.model.named_modules())
                 else "fc", filters=(3,), settings=Settings(steps=32))
    with torch.no_grad():
        logits = shipped.model(torch.from_numpy(result.images).float() / 255)
    assert int(logits.argmax(1)) == 3  # the model's idea of Happy is, to it, Happy


@pytest.mark.parametrize("arch, layer", [("cnn3", "block2.relu"),
                                         ("resnet18", "resnet.layer1.0.relu_out")])
def test_a_relu_layer_is_climbed_at_its_own_input(arch, layer):
    """The climbed pre-activation is what the ReLU itself receives: for ResNet's relu_out the
    residual sum, not bn2 alone."""
    assert climbs_pre_activation(arch, {}, FER2013, layer)
    assert not climbs_pre_activation(arch, {}, FER2013, layer.replace("relu_out", "conv2")
                                     .replace("relu", "conv"))
    net = build_model(arch).eval()
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    seen = []
    net.get_submodule(layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        pre = module_input(net, layer, x)
        net(x)
    torch.testing.assert_close(torch.relu(pre), seen[-1])


def test_a_conv_layer_is_climbed_at_its_own_output(shipped):
    """Folding BN into the convs must not make a conv target report its BN's output."""
    result = run(shipped, layer="block1.conv", filters=(0, 5), settings=Settings(steps=8))
    with torch.no_grad():
        x = torch.from_numpy(result.images).float() / 255
        out = outputs_of(shipped.model, ("block1.conv",), x)["block1.conv"]
    expected = out[[0, 1], [0, 5]].flatten(1).mean(1).numpy()
    np.testing.assert_allclose(result.activations, expected, rtol=1e-3, atol=1e-4)


def test_a_grey_model_s_images_are_grey_at_its_size(shipped):
    assert run(shipped, filters=(0, 1), settings=Settings(steps=2)).images.shape == (2, 1, 48, 48)


@pytest.mark.parametrize("arch, param, init", [("cnn3", "pixels", "grey"),
                                               ("cnn3", "fourier", "noise"),
                                               ("resnet18", "pixels", "face")])
def test_a_colour_model_s_images_are_colour_at_its_size(arch, param, init):
    """A colour 64-pixel model (5 classes) gets 3-channel 64 x 64 images that climb, from every
    start (its own colour face too) and in both parameterizations."""
    task = Task(("a", "b", "c", "d", "e"), 64, 3)
    torch.manual_seed(0)
    model = build_model(arch, task).eval()
    layer = "block2.relu" if arch == "cnn3" else "resnet.layer1.0.relu_out"
    face = torch.randint(0, 256, task.shape, dtype=torch.uint8, generator=torch.Generator()
                         .manual_seed(0))
    snaps = list(maximize(model, arch, {}, layer, [0, 3], Settings(steps=8, param=param,
                                                                   init=init),
                          face if init == "face" else None, every=4, task=task))
    first, last = snaps[0], snaps[-1]
    assert last.images.shape == (2, 3, 64, 64) and last.images.dtype == np.uint8
    assert not np.array_equal(last.images[:, 0], last.images[:, 1])  # the channels differ
    assert (last.activations > first.activations).all()
    assert visualize(model, arch, {}, "head.fc" if arch == "cnn3" else "resnet.fc", [4],
                     Settings(steps=2), task=task).images.shape == (1, 3, 64, 64)


def test_a_face_of_another_shape_is_refused_as_a_start(shipped):
    with pytest.raises(FerError, match="48x48 grey"):
        visualize(shipped.model, shipped.arch, shipped.arch_options, "block1.relu", [0],
                  Settings(steps=2, init="face"), torch.zeros(3, 64, 64, dtype=torch.uint8),
                  task=shipped.task)


@pytest.mark.parametrize("text, expected", [("0-3", [0, 1, 2, 3]), ("7, 3,9", [7, 3, 9]),
                                            ("0-2,1,5", [0, 1, 2, 5])])
def test_filters_are_parsed(text, expected):
    assert parse_filters(text, 16) == expected


@pytest.mark.parametrize("text", ["", "a-b", "3-1", "16", "0-99", "-1"])
def test_bad_filters_are_refused(text):
    with pytest.raises(FerError):
        parse_filters(text, 16)


def test_bad_choices_are_refused(shipped):
    with pytest.raises(FerError, match="no layer"):
        run(shipped, layer="block9.relu")
    with pytest.raises(FerError, match="no filter 600"):
        run(shipped, filters=(600,))
    with pytest.raises(FerError, match="steps"):
        run(shipped, settings=Settings(steps=0))


def beats_every_real_face(ckpt, dataset, layer: str) -> None:
    """8 random filters of `layer`: each optimized image at least as strong as the val face
    that drives its filter hardest (a real face can be the optimum itself: FER2013's val split
    holds all-black images, which one block1 filter of fer2013-cnn3 likes best, hence the
    rounding margin)."""
    stats = filter_stats(ckpt.model, ckpt.path, dataset, "val", layer)
    filters = list(np.random.default_rng(0).choice(len(stats.max_activation), 8, replace=False))
    result = run(ckpt, layer=layer, filters=filters, settings=Settings())
    best_real = stats.max_activation[filters]
    assert (result.activations >= best_real * (1 - 1e-4)).all(), \
        (result.activations / best_real).round(3)


@pytest.mark.parametrize("layer", ["block1.relu", "block2.relu", "block3.relu"])
def test_each_optimized_image_beats_every_real_face(shipped, layer, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    beats_every_real_face(shipped, load_dataset("builtin"), layer)


@pytest.mark.skipif(not os.environ.get("FER2013_CSV"), reason="FER2013_CSV is not set")
@pytest.mark.parametrize("layer", ["block1.relu", "block2.relu", "block3.relu"])
def test_the_fer2013_model_s_images_beat_every_real_fer2013_face(layer, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    beats_every_real_face(load_checkpoint(SHIPPED.parent / "fer2013-cnn3"),
                          load_dataset(os.environ["FER2013_CSV"]), layer)


def test_the_visualize_command_writes_the_grid_and_the_activations(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    out, report = tmp_path / "grid.png", tmp_path / "filters.json"
    code = main(["visualize", "--checkpoint", str(SHIPPED), "--layer", "block2.relu",
                 "--filters", "5,1", "--steps", "16", "--data", "builtin:300", "--out", str(out),
                 "--json", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["layer"] == "block2.relu" and [f["filter"] for f in data["filters"]] == [5, 1]
    ckpt = load_checkpoint(SHIPPED)
    again = run(ckpt, layer="block2.relu", filters=(5, 1), settings=Settings(steps=16))
    assert [f["activation"] for f in data["filters"]] == pytest.approx(again.activations.tolist(),
                                                                       rel=1e-5)
    stats = filter_stats(ckpt.model, ckpt.path, load_dataset("builtin:300"), "val", "block2.relu",
                         k=1)
    assert data["filters"][0]["max_real_activation"] == pytest.approx(stats.max_activation[5])
    assert Image.open(out).size == (2 * (96 + 4), 96 + 46)
    assert "filter    5" in capsys.readouterr().out


@pytest.mark.parametrize("layer, filters, message", [("block9.relu", "0", "choose one of"),
                                                     ("block1.relu", "64", "filters 0-63")])
def test_bad_visualize_input_exits_2_with_one_line_and_no_file(tmp_path, capsys, layer, filters,
                                                               message):
    out = tmp_path / "grid.png"
    code = main(["visualize", "--checkpoint", str(SHIPPED), "--layer", layer, "--filters",
                 filters, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()
