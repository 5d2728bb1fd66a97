"""Per-filter statistics: layer outputs that stop early, batched mean activations, the ReLU a
layer's dead filters are read after, top-k faces with ties, dead filters, the disk cache, and the
shared-model rules."""

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_helpers import in_other_task
from explain_helpers import untrained_checkpoint

from fer_core.data.dataset import SPLITS, FaceDataset
from fer_core.data.readers import load_dataset
from fer_core.errors import FerError
from fer_core.explain import filter_stats as fs
from fer_core.explain.filter_stats import (
    feature_maps,
    filter_stats,
    layer_kinds,
    layer_output,
    mean_activations,
)
from fer_core.models.architectures import build_model, layer_registry
from fer_core.models.checkpoint import load_checkpoint

CHECKPOINT = Path(__file__).parent.parent / "checkpoints" / "builtin-cnn3"


def model(arch: str = "cnn3", seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, **options).eval()


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 48, 48, generator=torch.Generator().manual_seed(seed))


def uint8_faces(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def full_forward_output(net: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = net.get_submodule(layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        net(x)
    finally:
        handle.remove()
    return seen[0]


def hooks_left(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def refuse(*_args, **_kwargs):
    raise AssertionError("this must not run")


@pytest.fixture(scope="module")
def trained():
    return load_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def faces300():
    return load_dataset("builtin:300")


# ---- layers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, options", [("cnn3", {}), ("cnn3", {"head": "flat"}),
                                           ("resnet18", {}), ("resnet18", {"small_input": False})])
def test_layer_kinds_read_from_a_model_are_its_registry(arch, options):
    expected = [(info.name, info.kind) for info in layer_registry(arch, **options)]
    assert list(layer_kinds(build_model(arch, **options)).items()) == expected


@pytest.mark.parametrize("arch, layer, relu", [
    ("cnn3", "block1.conv", "block1.relu"),
    ("cnn3", "block3.bn", "block3.relu"),
    ("cnn3", "block2.relu", "block2.relu"),
    ("cnn3", "head.fc", None),
    ("resnet18", "resnet.conv1", "resnet.relu"),
    ("resnet18", "resnet.layer1.0.conv1", "resnet.layer1.0.relu"),
    ("resnet18", "resnet.layer1.0.bn1", "resnet.layer1.0.relu"),
    ("resnet18", "resnet.layer1.0.conv2", "resnet.layer1.0.relu_out"),
    ("resnet18", "resnet.layer3.0.bn2", "resnet.layer3.0.relu_out"),
    ("resnet18", "resnet.fc", None),
])
def test_a_filter_is_dead_by_the_relu_of_its_layers_block(arch, layer, relu):
    """Silencing one channel of the expected ReLU makes that filter, and only it, dead; the
    final linear layer has no ReLU, so none of its filters is ever dead."""
    net, images = model(arch), uint8_faces(4).numpy()
    plain = filter_stats(net, CHECKPOINT / "best.pt", dataset_of(images), "val", layer, k=2)
    if relu is None:
        assert not plain.dead.any()
        return
    channel = int(np.flatnonzero(~plain.dead)[0])
    silenced = torch.tensor([channel])
    net.get_submodule(relu).register_forward_hook(
        lambda _m, _i, output: output.index_fill(1, silenced, 0.0))
    other = dataclasses.replace(dataset_of(images), fingerprint="silenced")  # not the cached one
    hooked = filter_stats(net, CHECKPOINT / "best.pt", other, "val", layer, k=2)
    assert np.flatnonzero(hooked.dead != plain.dead).tolist() == [channel]


@pytest.mark.parametrize("arch, layer, later", [
    ("cnn3", "block2.bn", "block2.relu"),
    ("cnn3", "head.fc", None),
    ("resnet18", "resnet.layer1.0.bn2", "resnet.layer1.0.relu_out"),
    ("resnet18", "resnet.layer2.1.relu_out", "resnet.layer3"),
])
def test_layer_output_is_what_a_full_forward_shows_and_nothing_after_it_runs(
        arch, layer, later, monkeypatch):
    net, x = model(arch), pixels(3)
    expected = full_forward_output(net, layer, x)
    if later is not None:
        monkeypatch.setattr(net.get_submodule(later), "forward", refuse)
    assert torch.equal(layer_output(net, layer, x), expected)
    assert hooks_left(net) == 0


def test_an_unknown_layer_is_refused_with_the_layers_there_are():
    with pytest.raises(FerError, match=r"'block9.conv'.*block1\.conv, block1\.bn.*head\.fc"):
        layer_output(model(), "block9.conv", pixels(1))
    with pytest.raises(FerError, match="resnet.layer1.0.relu_out"):
        filter_stats(model("resnet18"), CHECKPOINT / "best.pt", dataset_of(uint8_faces(1).numpy()),
                     "val", "resnet.layer1.0.relu2")


def test_a_failing_forward_leaves_no_hook(monkeypatch):
    net = model()
    monkeypatch.setattr(net.block1.conv, "forward", lambda _x: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        layer_output(net, "block2.relu", pixels(1))
    assert hooks_left(net) == 0


def test_another_threads_forward_through_the_same_model_is_not_stopped(monkeypatch):
    net, x = model(), pixels(2)
    expected = net(x)
    conv, seen = net.block1.conv, []

    def forward_then_run_another_thread(inputs):
        if not seen:
            seen.append(None)
            other = threading.Thread(target=lambda: seen.append(net(x)))
            other.start()
            other.join()
        return type(conv).forward(conv, inputs)

    monkeypatch.setattr(conv, "forward", forward_then_run_another_thread)
    layer_output(net, "block2.relu", x)
    assert torch.equal(seen[1], expected)


# ---- mean activations --------------------------------------------------------------------------

def test_mean_activations_do_not_depend_on_the_batch_size():
    net, faces = model("resnet18"), uint8_faces(7)
    once = mean_activations(net, "resnet.layer2.0.relu_out", faces)
    assert once.shape == (7, 128) and once.dtype == torch.float32
    batched = mean_activations(net, "resnet.layer2.0.relu_out", faces, batch=3)
    torch.testing.assert_close(batched, once, rtol=1e-5, atol=1e-6)


def test_mean_activations_of_the_first_conv_and_of_the_logits_by_hand():
    net, faces = model(), uint8_faces(5)
    x = faces.float() / 255
    normalized = (x - net.normalize.mean) / net.normalize.std
    by_hand = F.conv2d(normalized, net.block1.conv.weight, padding=1).mean((2, 3))
    torch.testing.assert_close(mean_activations(net, "block1.conv", faces), by_hand)
    with torch.no_grad():
        torch.testing.assert_close(mean_activations(net, "head.fc", faces, batch=2), net(x))


def test_progress_hears_the_start_and_each_batch():
    heard = []
    mean_activations(model(), "block1.relu", uint8_faces(5), batch=2,
                     progress=lambda done, total: heard.append((done, total)))
    assert heard == [(0, 5), (2, 5), (4, 5), (5, 5)]


# ---- feature maps ------------------------------------------------------------------------------

def test_feature_maps_are_one_faces_layer_output():
    net, face = model(), uint8_faces(1)[0]
    maps = feature_maps(net, "block2.bn", face)
    assert maps.shape == (128, 24, 24)
    torch.testing.assert_close(maps, layer_output(net, "block2.bn", face[None] / 255)[0])
    with pytest.raises(FerError, match="not spatial"):
        feature_maps(net, "head.fc", face)
    with pytest.raises(FerError, match="C x H x W"):
        feature_maps(net, "block2.bn", face[None, None])


def test_a_colour_model_s_feature_maps_and_statistics_take_its_faces(tmp_path, faces300):
    """A colour 64-pixel model of RAF-DB's classes on the same faces in colour: feature maps at
    its size, filter statistics over its split (the logits are its 7 classes)."""
    colour = in_other_task(faces300)
    run = untrained_checkpoint(tmp_path, colour.task)
    net = load_checkpoint(run).model
    face = torch.from_numpy(colour.images[0])
    assert feature_maps(net, "block2.bn", face).shape == (128, 32, 32)
    stats = filter_stats(net, run / "best.pt", colour, "val", "block3.relu", k=3)
    assert stats.top_positions.shape == (512, 3) and np.isfinite(stats.max_activation).all()
    logits = filter_stats(net, run / "best.pt", colour, "val", "head.fc", k=2)
    with torch.no_grad():
        x = torch.from_numpy(colour.images[colour.indices("val")]).float() / 255
        np.testing.assert_allclose(logits.max_activation, net(x).max(0).values.numpy(),
                                   rtol=1e-5, atol=1e-5)


# ---- filter statistics -------------------------------------------------------------------------

def dataset_of(images: np.ndarray) -> FaceDataset:
    """All of `images` as a val split."""
    n = len(images)
    return FaceDataset(images=images, labels=np.zeros(n, np.int64),
                       split_codes=np.full(n, SPLITS.index("val"), np.uint8),
                       sources=np.arange(n), name="duplicates", layout="test",
                       fingerprint=f"duplicates-{n}")


def test_top_faces_are_most_activating_first_with_ties_to_the_lower_position(trained, faces300):
    val = faces300.images[faces300.indices("val")]
    images = val[[0, 1, 0, 2, 1, 0, 3]]  # equal faces give equal activations: ties
    stats = filter_stats(trained.model, trained.path, dataset_of(images), "val", "block3.relu",
                         k=5)
    means = mean_activations(trained.model, "block3.relu", torch.from_numpy(images)).numpy()
    assert np.array_equal(means[0], means[2]) and np.array_equal(means[1], means[4])
    expected = np.array([sorted(range(7), key=lambda i: (-column[i], i))[:5]
                         for column in means.T])
    assert stats.top_positions.dtype == np.int64 and np.array_equal(stats.top_positions, expected)
    assert np.array_equal(stats.top_values, np.take_along_axis(means.T, expected, 1))
    assert np.array_equal(stats.max_activation, means.max(0))


def test_k_beyond_the_split_gives_every_face(trained, faces300):
    stats = filter_stats(trained.model, trained.path, faces300, "val", "head.fc", k=100)
    n = len(faces300.indices("val"))
    assert stats.top_positions.shape == (7, n) and not stats.dead.any()
    assert np.array_equal(np.sort(stats.top_positions, 1), np.tile(np.arange(n), (7, 1)))


def test_a_filter_whose_relu_never_fires_is_dead_and_the_others_live(faces300):
    net = load_checkpoint(CHECKPOINT).model
    with torch.no_grad():
        net.block1.bn.bias[3] = -1e4
    n = len(faces300.indices("val"))
    for layer in ("block1.conv", "block1.bn", "block1.relu"):
        stats = filter_stats(net, CHECKPOINT / "best.pt", faces300, "val", layer, k=4)
        assert np.flatnonzero(stats.dead).tolist() == [3], layer
    assert np.array_equal(stats.top_positions[3], np.arange(4))  # all zero: ties, in order
    assert stats.max_activation[3] == 0 and n > 4


def test_stats_come_from_the_cache_and_a_new_layer_is_computed(trained, faces300, monkeypatch):
    first = filter_stats(trained.model, trained.path, faces300, "val", "block2.relu", k=3)
    monkeypatch.setattr(fs, "_compute", refuse)
    again = filter_stats(trained.model, trained.path, faces300, "val", "block2.relu", k=3)
    for name in fs.ARRAYS:
        assert np.array_equal(getattr(again, name), getattr(first, name))
        assert getattr(again, name).dtype == getattr(first, name).dtype
    for layer, k in (("block3.relu", 3), ("block2.relu", 4)):
        with pytest.raises(AssertionError, match="must not run"):
            filter_stats(trained.model, trained.path, faces300, "val", layer, k=k)


def test_bad_requests_are_refused(trained, faces300):
    with pytest.raises(FerError, match="no 'holdout' faces"):
        filter_stats(trained.model, trained.path, faces300, "holdout", "block1.relu")
    with pytest.raises(FerError, match="k must be"):
        filter_stats(trained.model, trained.path, faces300, "val", "block1.relu", k=0)
    with pytest.raises(FerError, match="unknown layer"):
        filter_stats(trained.model, trained.path, faces300, "val", "block1.pool")


def test_the_shared_model_is_left_as_it_was(faces300):
    net = load_checkpoint(CHECKPOINT).model.requires_grad_(True)
    before = {name: value.clone() for name, value in net.state_dict().items()}
    face = torch.from_numpy(faces300.images[0])
    layer_output(net, "block2.relu", pixels(2))
    mean_activations(net, "block3.bn", uint8_faces(3))
    feature_maps(net, "block1.relu", face)
    filter_stats(net, CHECKPOINT / "best.pt", faces300, "val", "block3.bn", k=2)
    assert hooks_left(net) == 0 and not net.training
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())


def test_a_model_in_training_mode_is_read_in_eval_mode_and_stays_in_training_mode():
    net, faces = model(), uint8_faces(4)
    expected = mean_activations(net, "block2.bn", faces)
    net.train()
    torch.testing.assert_close(mean_activations(net, "block2.bn", faces), expected)
    assert net.training
