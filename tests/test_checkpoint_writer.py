"""Checkpoints are written in a thread of their own while training goes on: what is written is
the state when it was handed over, and a failed write fails the run."""

import threading

import pytest
import torch

from fer_core.models.checkpoint import save_atomic
from fer_core.training import writer
from fer_core.training.config import TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import train
from fer_core.training.writer import CheckpointWriter


def test_a_file_holds_the_state_it_was_handed_even_as_training_changes_it(tmp_path,
                                                                          monkeypatch):
    handed_over = threading.Event()

    def save_after_the_next_step(payload, path):
        handed_over.wait(10)
        save_atomic(payload, path)

    monkeypatch.setattr(writer, "save_atomic", save_after_the_next_step)
    weights = torch.zeros(100, 100)
    background = CheckpointWriter()
    background.write([({"model": {"w": weights}, "epoch": 1}, tmp_path / "last.pt")])
    weights.add_(1)  # the next step changes the weights in place before the file is written
    handed_over.set()
    background.wait()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and not saved["model"]["w"].any()


def test_a_failed_write_is_raised_by_the_next_wait(tmp_path):
    background = CheckpointWriter()
    (tmp_path / "last.pt").mkdir()  # a folder where the file should go: the rename fails
    background.write([({"epoch": 1}, tmp_path / "last.pt")])
    with pytest.raises(OSError):
        background.wait()
    background.wait()  # raised once


def test_a_run_whose_checkpoint_cannot_be_written_fails_and_says_so(tmp_path, tiny_faces,
                                                                    monkeypatch):
    def disk_full(payload, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(writer, "save_atomic", disk_full)
    run = RunFolder(tmp_path / "run")
    with pytest.raises(OSError):
        train(TrainConfig(epochs=2, batch_size=32), run.path, tiny_faces)
    status = run.status()
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert "best.pt" in status["error"] and len(run.epochs()) <= 2
