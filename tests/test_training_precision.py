"""The trainer's precision, class weights, cnn3 head, resume schedules and cross-device resume."""

import dataclasses
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task, subset_of

import fer_core.device
from fer_core.cli.main import main
from fer_core.data.dataset import SPLITS
from fer_core.device import native_bf16, resolve_precision
from fer_core.errors import FerError
from fer_core.evaluation.report import evaluate_split
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint, read_payload, save_atomic
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import Trainer, train

CPU = torch.device("cpu")
CPU_BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
needs_cpu_bf16 = pytest.mark.skipif(not CPU_BF16, reason="this CPU has no native bfloat16")


def _config(**overrides):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "log_every": 2, "seed": 7,
                          "device": "cpu", **overrides})


def _cosine(epoch: int, total: int, base: float = 1e-3) -> float:
    """The learning rate of 0-based `epoch` of a `total`-epoch cosine schedule from `base`."""
    return base * (1 + math.cos(math.pi * epoch / total)) / 2


def _lrs(run: RunFolder) -> dict[int, float]:
    return {e["epoch"]: e["lr"] for e in run.epochs()}


@pytest.fixture(scope="module")
def few_faces(tiny_faces):
    """64 training faces (two steps of 32 per epoch) and the 21 val faces of `tiny_faces`."""
    rows = np.concatenate([tiny_faces.indices("train")[:64], tiny_faces.indices("val")])
    return subset_of(tiny_faces, rows)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = read_payload(a)["model"], read_payload(b)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- precision --------------------------------------------------------------------------------

def test_auto_precision_on_this_cpu_is_bf16_exactly_where_onednn_has_it():
    assert native_bf16(CPU) is CPU_BF16
    assert resolve_precision("auto", CPU) == ("bf16" if CPU_BF16 else "fp32")


@pytest.mark.parametrize("device,native,expected", [
    ("cpu", True, "bf16"), ("cpu", False, "fp32"),
    ("cuda", True, "bf16"), ("cuda", False, "fp16"),  # an A100/H100, then a T4/V100
])
def test_auto_precision_follows_native_bf16(monkeypatch, device, native, expected):
    monkeypatch.setattr(fer_core.device, "native_bf16", lambda d: native)
    assert resolve_precision("auto", torch.device(device)) == expected


def test_auto_precision_on_mps_is_fp32():
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


@pytest.mark.parametrize("requested", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_an_explicit_precision_is_honoured(monkeypatch, requested, native, device):
    monkeypatch.setattr(fer_core.device, "native_bf16", lambda d: native)
    assert resolve_precision(requested, torch.device(device)) == requested


def test_an_unknown_precision_is_refused():
    with pytest.raises(FerError, match="precision must be one of"):
        resolve_precision("fp8", CPU)
    with pytest.raises(FerError, match="precision must be one of"):
        _config(precision="fp8").validate()


class ConvSpy:
    """Records, for every forward of block2.conv: train mode, output dtype, channels_last-ness of
    the output and of the weight (block2 has 64 input channels, so the layout is unambiguous)."""

    def __init__(self, model: torch.nn.Module):
        self.calls = []
        self.handle = model.block2.conv.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        cl = torch.channels_last
        self.calls.append((module.training, output.dtype, output.is_contiguous(memory_format=cl),
                           module.weight.is_contiguous(memory_format=cl)))

    def training(self) -> set:
        return {call[1:] for call in self.calls if call[0]}

    def validation_dtypes(self) -> set:
        return {call[1] for call in self.calls if not call[0]}


def _spied_run(tmp_path: Path, dataset, **overrides) -> tuple[RunFolder, ConvSpy]:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    trainer = Trainer(_config(**overrides), run, dataset)
    spy = ConvSpy(trainer.model)
    assert trainer.run() == "finished"
    spy.handle.remove()
    return run, spy


def _recorded_precision(run: RunFolder) -> tuple[dict, dict]:
    config = json.loads(run.config_path.read_text())
    saved = load_checkpoint(run.path).meta["config"]
    return ({k: config[k] for k in ("precision", "precision_used")},
            {k: saved[k] for k in ("precision", "precision_used")})


def test_fp32_trains_in_float32_and_channels_last_on_the_cpu(tmp_path, few_faces):
    run, spy = _spied_run(tmp_path, few_faces, precision="fp32", epochs=1)
    assert spy.training() == {(torch.float32, True, True)}
    assert spy.validation_dtypes() == {torch.float32}
    expected = {"precision": "fp32", "precision_used": "fp32"}
    assert _recorded_precision(run) == (expected, expected)


@needs_cpu_bf16
def test_bf16_autocasts_training_and_validates_in_fp32(tmp_path, few_faces):
    run, spy = _spied_run(tmp_path, few_faces, precision="bf16")
    assert spy.training() == {(torch.bfloat16, True, True)}
    assert spy.validation_dtypes() == {torch.float32}
    expected = {"precision": "bf16", "precision_used": "bf16"}
    assert _recorded_precision(run) == (expected, expected)

    best = load_checkpoint(run.path)
    recorded = run.epochs()[best.meta["epoch"] - 1]["val_acc"]
    assert recorded == max(e["val_acc"] for e in run.epochs()) == run.status()["best_val_acc"]
    assert evaluate_split(best.model, few_faces, "val", CPU)["accuracy"] == recorded


# ---- class weights ----------------------------------------------------------------------------

COUNTS = (4, 1, 6, 8, 3, 5, 2)  # training faces per class, in FER2013 order


def _faces_with_counts(tiny_faces):
    """COUNTS[c] labelled training faces of class c, one unlabelled training face, the val split."""
    train_rows = tiny_faces.indices("train")
    labels = tiny_faces.labels[train_rows]
    rows = [train_rows[labels == c][:n] for c, n in enumerate(COUNTS)]
    unlabelled = train_rows[labels == 3][8:9]
    subset = subset_of(tiny_faces, np.concatenate(rows + [unlabelled, tiny_faces.indices("val")]))
    subset_labels = subset.labels.copy()
    subset_labels[sum(COUNTS)] = -1
    assert (subset.split_codes[:sum(COUNTS) + 1] == SPLITS.index("train")).all()
    return dataclasses.replace(subset, labels=subset_labels)


def test_balanced_class_weights_are_n_over_k_times_each_count(tmp_path, tiny_faces):
    dataset = _faces_with_counts(tiny_faces)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    trainer = Trainer(_config(class_weights="balanced", epochs=1), run, dataset)
    n = sum(COUNTS)
    expected = torch.tensor([n / (7 * count) for count in COUNTS])
    torch.testing.assert_close(trainer.loss_fn.weight, expected)
    assert trainer.run() == "finished"
    assert json.loads(run.config_path.read_text())["class_weights"] == "balanced"
    assert load_checkpoint(run.path).meta["config"]["class_weights"] == "balanced"


def test_balanced_class_weights_count_the_task_s_classes_not_fer2013_s(tmp_path, tiny_faces):
    five = in_other_task(_faces_with_counts(tiny_faces), size=48, channels=1,
                         classes=("surprise", "fear", "happiness", "sadness", "anger"))
    trainer = Trainer(_config(class_weights="balanced"), RunFolder(tmp_path / "run"), five)
    counts = (5, 6, 8, 3, 4)  # COUNTS of Surprise, Fear, Happy, Sad and Angry
    expected = torch.tensor([sum(counts) / (5 * count) for count in counts])
    torch.testing.assert_close(trainer.loss_fn.weight, expected)


def test_no_class_weights_by_default(tmp_path, tiny_faces):
    trainer = Trainer(_config(), RunFolder(tmp_path / "run"), _faces_with_counts(tiny_faces))
    assert trainer.config.class_weights == "none" and trainer.loss_fn.weight is None


def test_unknown_class_weights_are_refused():
    with pytest.raises(FerError, match="class weights must be one of"):
        _config(class_weights="inverse").validate()


# ---- cnn3 head --------------------------------------------------------------------------------

def test_cnn3_flat_head_maps_faces_to_seven_logits_through_head_fc():
    model = build_model("cnn3", head="flat").eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[-1] is model.head.fc
    assert (model.head.fc.in_features, model.head.fc.out_features) == (256, 7)


def test_cnn3_default_head_is_pool_and_the_shipped_checkpoint_still_loads():
    model = build_model("cnn3")
    assert isinstance(model.head.pool, torch.nn.AdaptiveAvgPool2d)
    assert sum(p.numel() for p in model.parameters()) == 669_127
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "builtin-cnn3"
    assert list(model.state_dict()) == list(read_payload(shipped)["model"])
    assert load_checkpoint(shipped).model.head.fc.out_features == 7


def test_an_unknown_cnn3_head_is_refused():
    with pytest.raises(FerError, match="unknown cnn3 head 'wide'"):
        build_model("cnn3", head="wide")


def test_cli_records_the_flat_head_and_dropout(tmp_path, capsys):
    out = tmp_path / "flat"
    assert main(["train", "--data", "builtin:70", "--out", str(out), "--epochs", "1",
                 "--batch-size", "32", "--device", "cpu", "--head", "flat",
                 "--dropout", "0.5"]) == 0
    options = {"dropout": 0.5, "head": "flat", "mean": 0.508, "std": 0.255}
    assert json.loads((out / "config.json").read_text())["arch_options"] == options
    best = load_checkpoint(out)
    assert best.meta["arch_options"] == options
    assert best.model.head.dropout.p == 0.5 and best.model.head.hidden.out_features == 256


# ---- resume schedules -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, few_faces):
    """A finished 2-epoch cosine run at lr 1e-3 (precision auto), to copy and extend."""
    out = tmp_path_factory.mktemp("schedules") / "two"
    assert train(_config(), out, few_faces) == "finished"
    return out


@pytest.mark.parametrize("schedule,lr3,lr4", [
    ("stretch", _cosine(2, 4), _cosine(3, 4)),
    ("constant", _cosine(1, 2), _cosine(1, 2)),
    ("restart", 1e-3, _cosine(1, 2)),
])
def test_a_finished_run_extended_to_4_epochs_follows_its_resume_schedule(
        tmp_path, few_faces, two_epoch_run, schedule, lr3, lr4):
    out = shutil.copytree(two_epoch_run, tmp_path / "run")
    state = train(_config(epochs=4), out, few_faces, resume=True, resume_schedule=schedule)
    run = RunFolder(out)
    assert state == "finished" and run.status()["epoch"] == 4
    lrs = _lrs(run)
    assert list(lrs) == [1, 2, 3, 4]
    assert lrs[1] == pytest.approx(1e-3) and lrs[2] == pytest.approx(5e-4)
    assert lrs[3] == pytest.approx(lr3, rel=1e-9) and lrs[4] == pytest.approx(lr4, rel=1e-9)
    config = json.loads(run.config_path.read_text())
    assert config["epochs"] == 4 and config["precision"] == "auto"
    assert config["precision_used"] == resolve_precision("auto", CPU)


def test_an_unknown_resume_schedule_is_refused(tmp_path, few_faces, two_epoch_run):
    out = shutil.copytree(two_epoch_run, tmp_path / "run")
    with pytest.raises(FerError, match="resume schedule must be one of"):
        train(_config(epochs=4), out, few_faces, resume=True, resume_schedule="linear")


@pytest.fixture(scope="module")
def stopped_after_epoch_1(tmp_path_factory, few_faces):
    """A 2-epoch cosine run stopped at the end of its first epoch."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    run = RunFolder(out)
    assert train(_config(), out, few_faces, on_epoch=lambda r: run.request_stop()) == "stopped"
    assert [e["epoch"] for e in run.epochs()] == [1]
    return out


@pytest.mark.parametrize("schedule", ["constant", "restart"])
def test_resuming_with_the_same_epochs_keeps_the_schedule(tmp_path, few_faces,
                                                          stopped_after_epoch_1, schedule):
    out = shutil.copytree(stopped_after_epoch_1, tmp_path / "run")
    assert train(_config(), out, few_faces, resume=True, resume_schedule=schedule) == "finished"
    assert _lrs(RunFolder(out)) == pytest.approx({1: 1e-3, 2: _cosine(1, 2)})


def test_cli_resume_schedule_reaches_the_trainer(tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--out", out, "--batch-size", "32", "--device", "cpu"]
    assert main(["train", "--data", "builtin:70", "--epochs", "2", "--lr", "1e-3", *common]) == 0
    assert main(["train", "--resume", "--epochs", "4", "--resume-schedule", "constant",
                 *common]) == 0
    assert _lrs(RunFolder(out)) == pytest.approx({1: 1e-3, 2: 5e-4, 3: 5e-4, 4: 5e-4})


# ---- resume across devices --------------------------------------------------------------------

def _as_if_saved_on_a_gpu(last: Path) -> None:
    """Rewrite last.pt's random state the way a CUDA run saves it: a Philox generator state is
    16 bytes (seed, then offset, little-endian 64-bit) and there is a CUDA global state too."""
    payload = read_payload(last)
    cuda_state = torch.tensor(list(struct.pack("<QQ", 7, 4096)), dtype=torch.uint8)
    payload["training_state"]["aug_rng"] = cuda_state
    payload["training_state"]["cuda_rng"] = cuda_state.clone()
    payload["config"]["device"] = "cuda"
    save_atomic(payload, last)


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu_reproducibly(tmp_path, few_faces,
                                                              stopped_after_epoch_1):
    with pytest.raises(RuntimeError):  # why the trainer cannot take the saved stream as is
        torch.Generator().set_state(torch.zeros(16, dtype=torch.uint8))
    gpu = RunFolder(shutil.copytree(stopped_after_epoch_1, tmp_path / "gpu"))
    _as_if_saved_on_a_gpu(gpu.last_path)
    resumed = []
    for name in ("a", "b"):
        run = RunFolder(shutil.copytree(gpu.path, tmp_path / name))
        assert train(_config(), run.path, few_faces, resume=True) == "finished"
        assert run.status()["state"] == "finished"
        assert [e["epoch"] for e in run.epochs()] == [1, 2]
        resumed.append(run)
    a, b = resumed
    assert _same_weights(a.last_path, b.last_path)
    assert _same_weights(a.best_path, b.best_path)
    assert a.epochs()[1]["val_acc"] == b.epochs()[1]["val_acc"]
