import json
import os

import pytest
import torch
from dataset_helpers import subset_of

from fer_core.errors import FerError, RunError
from fer_core.models.checkpoint import load_checkpoint, read_payload
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import train

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
