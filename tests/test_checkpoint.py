import os

import pytest
import torch

from fer_core.data.task import FER2013, Task
from fer_core.errors import CheckpointError
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import (
    load_checkpoint,
    make_payload,
    read_payload,
    save_atomic,
    save_half,
)


RAF_COLOUR = Task(("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"),
                  64, 3)


def _payload(arch="cnn3", model=None, task=FER2013, **options):
    model = model or build_model(arch, task, **options)
    return make_payload(model, arch=arch, arch_options=options, task=task, epoch=3,
                        dataset={"name": "builtin", "layout": "builtin", "fingerprint": "f"},
                        metrics={"val_acc": 0.5}, config={"lr": 0.001})


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "best.pt"
    save_atomic(_payload(), path)
    return path


def test_roundtrip_restores_weights_and_metadata(saved):
    ckpt = load_checkpoint(saved)
    original = torch.load(saved, weights_only=True)["model"]
    for k, v in ckpt.model.state_dict().items():
        assert torch.equal(v, original[k])
    assert ckpt.meta["arch"] == "cnn3" and ckpt.meta["epoch"] == 3
    assert ckpt.meta["classes"][3] == "Happy" and ckpt.meta["input_size"] == 48
    assert ckpt.meta["dataset"]["fingerprint"] == "f" and ckpt.meta["config"] == {"lr": 0.001}
    assert not ckpt.model.training


def test_run_folder_means_its_best_checkpoint(saved):
    assert load_checkpoint(saved.parent).path == saved


def test_atomic_save_leaves_no_temporary_files(saved):
    assert sorted(os.listdir(saved.parent)) == ["best.pt"]


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_run(tmp_path):
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    payload = {**_payload(), "extra": exploit}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: refused to load: it holds pickled code"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not exploit.marker.exists()


def test_truncated_file_is_refused(saved, tmp_path):
    data = saved.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_other_files_are_not_checkpoints(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt: not a fer_core checkpoint"):
        read_payload(tmp_path / "plain.pt")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    payload = _payload()
    payload["arch"], payload["arch_options"] = "resnet18", {"small_input": True}
    save_atomic(payload, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="mixed.pt: weights do not fit architecture 'res"):
        load_checkpoint(tmp_path / "mixed.pt")


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="has no best.pt or last.pt"):
        load_checkpoint(tmp_path)


def test_the_input_normalization_travels_with_the_weights_not_as_buffers(tmp_path):
    from fer_core.models.architectures import arch_options

    options = arch_options("cnn3", mean=0.4, std=0.2)
    model = build_model("cnn3", **options)
    save_atomic(make_payload(model, arch="cnn3", arch_options=options, task=FER2013, epoch=1,
                             dataset={}, metrics={}, config={}), tmp_path / "own.pt")
    ckpt = load_checkpoint(tmp_path / "own.pt")
    assert (ckpt.model.normalize.mean, ckpt.model.normalize.std) == (0.4, 0.2)
    assert ckpt.meta["arch_options"]["mean"] == 0.4
    assert list(ckpt.model.state_dict()) == list(build_model("cnn3").state_dict())
    x = torch.rand(2, 1, 48, 48)
    assert not torch.allclose(ckpt.model(x), load_checkpoint_as_default(tmp_path, ckpt)(x))


def load_checkpoint_as_default(tmp_path, ckpt):
    """The same weights in a model built with today's default normalization."""
    model = build_model("cnn3")
    model.load_state_dict(ckpt.model.state_dict())
    return model.eval()


def test_checkpoints_saved_before_the_normalization_was_recorded_keep_their_values(
        tmp_path, monkeypatch):
    from fer_core.models import architectures

    payload = _payload()
    payload["arch_options"] = {"dropout": 0.3, "head": "pool"}  # as saved before
    save_atomic(payload, tmp_path / "old.pt")
    monkeypatch.setitem(architectures.DEFAULT_OPTIONS, "cnn3",
                        {**architectures.DEFAULT_OPTIONS["cnn3"], "mean": 0.6, "std": 0.3})
    model = load_checkpoint(tmp_path / "old.pt").model
    assert (model.normalize.mean, model.normalize.std) == (0.508, 0.255)


def test_a_half_precision_copy_is_half_the_size_and_predicts_as_the_original(tmp_path):
    source = tmp_path / "last.pt"
    save_atomic({**_payload("resnet18"), "training_state": {"optimizer": {"state": {}}}}, source)
    save_half(source, tmp_path / "best.pt")
    half = read_payload(tmp_path / "best.pt")
    assert "training_state" not in half and half["epoch"] == 3
    assert all(v.dtype == torch.float16 for v in half["model"].values() if v.is_floating_point())
    assert (tmp_path / "best.pt").stat().st_size < 0.55 * source.stat().st_size
    x = torch.rand(8, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, small = (load_checkpoint(p).model(x) for p in (source, tmp_path / "best.pt"))
    assert next(load_checkpoint(tmp_path / "best.pt").model.parameters()).dtype == torch.float32
    assert torch.allclose(full.softmax(1), small.softmax(1), atol=5e-3)


@pytest.mark.parametrize("arch", ["cnn3", "resnet18"])
def test_a_colour_task_of_other_classes_travels_with_the_weights(tmp_path, arch):
    save_atomic(_payload(arch, task=RAF_COLOUR), tmp_path / "raf.pt")
    ckpt = load_checkpoint(tmp_path / "raf.pt")
    assert ckpt.task == RAF_COLOUR and ckpt.meta["channels"] == 3
    assert ckpt.meta["classes"] == list(RAF_COLOUR.classes) and ckpt.meta["input_size"] == 64
    with torch.no_grad():
        assert ckpt.model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_a_checkpoint_saved_before_channels_were_recorded_loads_as_grey(tmp_path):
    payload = _payload()
    del payload["channels"]
    save_atomic(payload, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.task == FER2013 and ckpt.model.block1.conv.in_channels == 1
