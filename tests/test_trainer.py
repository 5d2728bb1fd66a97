import json
import os

import numpy as np
import pytest
import torch
from dataset_helpers import RAF_DB_NAMES, in_other_task, subset_of

from fer_core.errors import FerError, RunError
from fer_core.evaluation.predict import predict_split
from fer_core.evaluation.report import evaluate_split, format_report
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint, make_payload, read_payload, save_atomic
from fer_core.training.config import TrainConfig
from fer_core.training.preflight import check_before_folder
from fer_core.training.probes import read_timeline
from fer_core.training.runs import RunFolder
from fer_core.training.snapshots import saved_snapshots
from fer_core.training.trainer import train

CPU = torch.device("cpu")

EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
              "images_per_s"}


def _config(**overrides):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "log_every": 2, "seed": 7, **overrides})


def _stop_after(run: RunFolder, epoch: int, step: int):
    def on_step(record):
        if record["epoch"] == epoch and record["step"] >= step:
            run.request_stop()
    return on_step


def test_history_status_and_checkpoints_of_a_finished_run(tmp_path, tiny_faces):
    run = RunFolder(tmp_path / "run")
    assert train(_config(), run.path, tiny_faces) == "finished"
    epochs = run.epochs()
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(EPOCH_KEYS <= e.keys() for e in epochs)
    assert all(0 <= e["val_acc"] <= 1 and e["images_per_s"] > 0 for e in epochs)
    assert epochs[1]["lr"] < epochs[0]["lr"]  # cosine schedule
    steps = [r for r in run.history() if r["kind"] == "step"]
    assert steps and all(0 < s["progress"] <= 2 for s in steps)
    status = run.status()
    assert status["state"] == "finished" and status["epoch"] == 2 and status["error"] is None
    assert status["best_val_acc"] == max(e["val_acc"] for e in epochs)
    best = load_checkpoint(run.path)
    assert best.meta["metrics"]["val_acc"] == status["best_val_acc"]
    assert best.meta["dataset"]["fingerprint"] == tiny_faces.fingerprint
    assert best.meta["config"]["seed"] == 7
    assert best.meta["arch_options"] == {"dropout": 0.3, "head": "pool", "mean": 0.508,
                                         "std": 0.255}
    assert "training_state" in read_payload(run.last_path)
    assert json.loads(run.config_path.read_text())["batch_size"] == 32


# The recipe levers each draw randomness or keep state of their own that a resume must restore.
LEVERS = {"optimizer": "sgd", "nesterov": True, "lr": 0.05, "schedule": "onecycle",
          "mixup": 0.4, "cutmix": 1.0, "erase": 0.5, "ema": 0.9, "label_smoothing": 0.1}


@pytest.mark.parametrize("levers", [{}, LEVERS], ids=["defaults", "recipe-levers"])
def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_faces, levers):
    straight = RunFolder(tmp_path / "straight")
    train(_config(**levers), straight.path, tiny_faces)

    run = RunFolder(tmp_path / "stopped")
    state = train(_config(**levers), run.path, tiny_faces,
                  on_step=_stop_after(run, epoch=2, step=2))
    assert state == "stopped" and run.status()["state"] == "stopped"
    assert not run.stop_path.exists()
    progress = read_payload(run.last_path)["training_state"]["progress"]
    assert progress["epoch"] == 2 and progress["step"] == 3  # the step after the request
    assert [e["epoch"] for e in run.epochs()] == [1]

    assert train(_config(**levers), run.path, tiny_faces, resume=True) == "finished"
    assert [e["epoch"] for e in run.epochs()] == [1, 2]
    keys = [(r["epoch"], r["step"]) for r in run.history() if r["kind"] == "step"]
    assert keys == sorted(set(keys))
    a, b = read_payload(run.last_path), read_payload(straight.last_path)
    for weights in ("model", "raw_model") if levers else ("model",):
        saved = a[weights] if weights == "model" else a["training_state"][weights]
        wanted = b[weights] if weights == "model" else b["training_state"][weights]
        assert all(torch.equal(saved[k], wanted[k]) for k in saved)
    assert run.epochs()[1]["val_acc"] == straight.epochs()[1]["val_acc"]


def test_resume_drops_history_written_after_the_last_checkpoint(tmp_path, tiny_faces):
    run = RunFolder(tmp_path / "run")
    train(_config(epochs=1), run.path, tiny_faces)
    with open(run.history_path, "a") as f:  # a crash after logging, before saving
        f.write(json.dumps({"kind": "step", "epoch": 2, "step": 4, "loss": 9.0}) + "\n")
        f.write('{"kind": "epoch", "epo')
    assert train(_config(epochs=2), run.path, tiny_faces, resume=True) == "finished"
    assert [e["epoch"] for e in run.epochs()] == [1, 2]
    assert all(r.get("loss") != 9.0 for r in run.history())
    assert run.epochs()[1]["lr"] == pytest.approx(0.5e-3)  # cosine stretched to 2 epochs


def test_a_second_trainer_on_the_same_folder_is_refused(tmp_path, tiny_faces):
    holder = RunFolder(tmp_path / "run")
    holder.acquire()
    try:
        with pytest.raises(RunError, match="is in use by another trainer"):
            train(_config(), holder.path, tiny_faces)
        assert holder.is_locked()
    finally:
        holder.release()
    assert not holder.is_locked()


def test_an_existing_run_is_not_overwritten(tmp_path, tiny_faces):
    run = RunFolder(tmp_path / "run")
    train(_config(epochs=1), run.path, tiny_faces)
    before = run.history_path.read_bytes(), run.best_path.read_bytes()
    with pytest.raises(RunError, match="already holds a run"):
        train(_config(epochs=1), run.path, tiny_faces)
    assert (run.history_path.read_bytes(), run.best_path.read_bytes()) == before
    assert run.status()["state"] == "finished"


def test_data_without_training_faces_is_refused_before_any_folder(tmp_path, tiny_faces):
    """(A failure once the folder is made is a failed run: tests/test_cli.py.)"""
    no_train = subset_of(tiny_faces, tiny_faces.indices("val"))
    run = RunFolder(tmp_path / "run")
    with pytest.raises(FerError, match="no labelled training faces"):
        train(_config(), run.path, no_train)
    assert not run.path.exists()


def test_a_running_status_without_its_trainer_reads_as_failed(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_status(state="running", pid=999999)
    assert run.status()["state"] == "failed"


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be at least 1"), ("lr", -1.0, "learning rate must be positive"),
    ("optimizer", "rmsprop", "optimizer must be one of"), ("schedule", "step", "schedule must be"),
    ("erase", 1.5, "erase must be in"), ("mixup", -0.1, "mixup and cutmix must be"),
    ("ema", 1.0, "ema must be in")])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, tiny_faces, field, value,
                                                             message):
    with pytest.raises(FerError, match=message):
        train(_config(**{field: value}), tmp_path / "run", tiny_faces)


def test_sgd_plateau_and_no_augmentation_train(tmp_path, tiny_faces):
    config = _config(optimizer="sgd", nesterov=True, schedule="plateau", shift=0, flip=False,
                     rotate=0, label_smoothing=0.1, epochs=1)
    assert train(config, tmp_path / "run", tiny_faces) == "finished"


def test_a_stop_requested_while_starting_is_honoured_and_a_stale_one_is_not(tmp_path, tiny_faces):
    early = RunFolder(tmp_path / "early")
    early.request_stop()  # after this process started: a real request
    assert train(_config(), early.path, tiny_faces) == "stopped"
    assert read_payload(early.last_path)["training_state"]["progress"]["step"] == 1

    stale = RunFolder(tmp_path / "stale")
    stale.request_stop()
    os.utime(stale.stop_path, (0, 0))  # left over from long ago
    assert train(_config(epochs=1), stale.path, tiny_faces) == "finished"


def test_a_run_without_validation_faces_still_saves_a_best_checkpoint(tmp_path, tiny_faces):
    train_only = subset_of(tiny_faces, tiny_faces.indices("train"))
    run = RunFolder(tmp_path / "run")
    assert train(_config(epochs=1), run.path, train_only) == "finished"
    assert run.epochs()[0]["val_acc"] is None
    assert load_checkpoint(run.path).path == run.best_path
    assert run.status()["best_val_acc"] is None


# ---- tasks other than FER2013's ---------------------------------------------------------------

@pytest.fixture(scope="module")
def raf_faces(tiny_faces):
    """The tiny faces in colour at 64 pixels, labelled with RAF-DB's names in RAF-DB's order."""
    return in_other_task(tiny_faces)


@pytest.fixture(scope="module", params=["cnn3", "resnet18"])
def raf_run(request, tmp_path_factory, raf_faces):
    """One epoch of each architecture on `raf_faces`, with a snapshot and four probes. ResNet18
    keeps its ImageNet stem here: the small-input stem keeps 64x64 maps through layer1, which
    takes minutes on a shared 2-core CPU (tests/test_models.py builds that one for colour)."""
    arch = request.param
    options = {"small_input": False} if arch == "resnet18" else {}
    run = RunFolder(tmp_path_factory.mktemp("raf") / arch)
    train(_config(arch=arch, arch_options=options, epochs=1, snapshots=1, probes=4, device="cpu"),
          run.path, raf_faces)
    return run


def test_every_checkpoint_of_a_run_on_colour_faces_of_other_classes_keeps_their_task(
        raf_run, raf_faces):
    paths = [raf_run.best_path, raf_run.last_path, *(s.path for s in saved_snapshots(raf_run.path))]
    assert len(paths) == 3
    for path in paths:
        ckpt = load_checkpoint(path)
        assert ckpt.task == raf_faces.task
        assert ckpt.meta["classes"] == list(RAF_DB_NAMES)
        assert (ckpt.meta["input_size"], ckpt.meta["channels"]) == (64, 3)
        with torch.no_grad():
            assert ckpt.model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_a_run_on_another_task_evaluates_with_that_task_s_class_names(raf_run, raf_faces):
    ckpt = load_checkpoint(raf_run.path)
    metrics = evaluate_split(ckpt.model, raf_faces, "val", CPU)
    assert metrics["classes"] == list(metrics["per_class"]) == list(RAF_DB_NAMES)
    assert np.array(metrics["confusion_matrix"]).shape == (7, 7)
    assert metrics["n"] == (raf_faces.labels[raf_faces.indices("val")] >= 0).sum()
    assert metrics["accuracy"] == pytest.approx(raf_run.epochs()[0]["val_acc"])
    report = format_report(metrics)
    assert "happiness" in report and "Happy" not in report
    probs = predict_split(ckpt.model, raf_faces, "val", CPU, tta=True).probs
    assert probs.shape == (len(raf_faces.indices("val")), 7)


def test_probes_of_a_colour_run_keep_colour_faces_and_maps_of_their_size(raf_run):
    timeline = read_timeline(raf_run.path)
    assert timeline.images.shape == (4, 3, 64, 64) and timeline.images.dtype == np.uint8
    assert timeline.probs.shape == (1, 4, 7)
    assert timeline.gradient.shape == timeline.gradcam.shape == (1, 4, 64, 64)
    assert timeline.gradient.max() > 0


FIVE = ("surprise", "fear", "happiness", "sadness", "anger")


def test_a_five_class_task_trains_and_evaluates_five_classes(tmp_path, tiny_faces):
    five = in_other_task(tiny_faces, size=48, channels=1, classes=FIVE)
    five = subset_of(five, np.flatnonzero(five.labels >= 0))  # Disgust and Neutral dropped
    run = RunFolder(tmp_path / "five")
    assert train(_config(epochs=1, class_weights="balanced"), run.path, five) == "finished"
    ckpt = load_checkpoint(run.path)
    assert ckpt.task.classes == FIVE and ckpt.task.num_classes == 5
    with torch.no_grad():
        assert ckpt.model(torch.rand(2, 1, 48, 48)).shape == (2, 5)
    metrics = evaluate_split(ckpt.model, five, "val", CPU)
    assert np.array(metrics["confusion_matrix"]).shape == (5, 5)
    assert all(p["true_name"] in FIVE and p["pred_name"] in FIVE for p in metrics["pairs"])


def test_resuming_on_data_of_another_task_is_refused(tmp_path, tiny_faces):
    run = RunFolder(tmp_path / "run")
    train(_config(epochs=1), run.path, tiny_faces)
    before = run.last_path.read_bytes()
    renamed = in_other_task(tiny_faces, size=48, channels=1)  # the same faces, RAF-DB's names
    with pytest.raises(RunError, match=r"cannot resume .*: its last.pt was trained for 7 "
                                       r"classes, 48x48 grey: Angry, Disgust.*; the data is 7 "
                                       r"classes, 48x48 grey: surprise, fear"):
        train(_config(epochs=2), run.path, renamed, resume=True)
    assert run.last_path.read_bytes() == before
    assert [e["epoch"] for e in run.epochs()] == [1]


def test_init_from_a_checkpoint_of_another_task_is_refused_before_any_folder(tmp_path, tiny_faces,
                                                                            raf_faces):
    source = tmp_path / "raf.pt"
    save_atomic(make_payload(build_model("cnn3", raf_faces.task), arch="cnn3", arch_options={},
                             task=raf_faces.task, dataset={}, epoch=1, metrics={}, config={}),
                source)
    run = RunFolder(tmp_path / "run")
    with pytest.raises(FerError, match=r"--init .*raf.pt was trained for 7 classes, 64x64 colour: "
                                       r"surprise.*; the data is 7 classes, 48x48 grey: Angry"):
        train(_config(init=str(source)), run.path, tiny_faces)
    assert not run.path.exists()
    check_before_folder(_config(init=str(source)), raf_faces)  # its own task: accepted
