"""Snapshots (the weights at epochs evenly spaced over the run, fp16, with their learning rate)
and probe maps (a fixed set of val faces explained at every epoch's end): where they are, what
they hold, that they leave training untouched, and how a resume with a new plan treats them."""

import numpy as np
import pytest
import torch

from fer_core.explain.attribution import explain
from fer_core.models.checkpoint import load_checkpoint, read_payload, snapshot_lr
from fer_core.training.config import TrainConfig
from fer_core.training.probes import choose_probes, read_timeline
from fer_core.training.runs import RunFolder
from fer_core.training.snapshots import (
    Snapshot,
    checkpoint_snapshots,
    list_snapshots,
    snapshot_epochs,
)
from fer_core.training.trainer import train


def _config(**overrides):
    return TrainConfig(**{"epochs": 4, "batch_size": 32, "log_every": 2, "seed": 7,
                          "device": "cpu", "snapshots": 2, **overrides})


@pytest.mark.parametrize(("epochs", "count", "expected"), [
    (10, 4, [3, 5, 8, 10]), (3, 4, [1, 2, 3]), (60, 3, [20, 40, 60]), (5, 0, []), (1, 1, [1])])
def test_snapshots_are_evenly_spaced_with_the_last_epoch_included(epochs, count, expected):
    assert snapshot_epochs(epochs, count) == expected


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory, tiny_faces):
    out = tmp_path_factory.mktemp("probed") / "run"
    assert train(_config(), out, tiny_faces) == "finished"
    return RunFolder(out)


def test_a_run_keeps_fp16_snapshots_with_their_learning_rates(probed_run):
    snapshots = list_snapshots(probed_run.path)
    assert [s.epoch for s in snapshots] == [2, 4]
    history = {e["epoch"]: e["lr"] for e in probed_run.epochs()}
    for snapshot in snapshots:
        payload = read_payload(snapshot.path)
        assert "training_state" not in payload and payload["epoch"] == snapshot.epoch
        assert all(v.dtype == torch.float16 for v in payload["model"].values()
                   if v.is_floating_point())
        assert snapshot_lr(payload) == history[snapshot.epoch]
    final = load_checkpoint(snapshots[-1].path).model.state_dict()
    last = load_checkpoint(probed_run.last_path).model.state_dict()
    for name, value in last.items():  # the last snapshot is the final weights, rounded to fp16
        torch.testing.assert_close(final[name], value.half().to(value.dtype))


def test_a_checkpoint_is_scored_over_the_snapshots_up_to_its_own_epoch(probed_run):
    """Snapshots at 2 and 4: a checkpoint of epoch 3 never saw epoch 4's training; one older
    than the first snapshot stands for itself."""
    assert [s.epoch for s in checkpoint_snapshots(probed_run.best_path, 4)] == [2, 4]
    assert [s.epoch for s in checkpoint_snapshots(probed_run.best_path, 3)] == [2]
    assert checkpoint_snapshots(probed_run.best_path, 1) == [Snapshot(1, probed_run.best_path)]


def test_probe_maps_are_the_maps_explain_gives_for_each_epoch(probed_run, tiny_faces):
    timeline = read_timeline(probed_run.path)
    assert timeline.epochs == [1, 2, 3, 4]
    assert len(timeline.positions) == 8 and len(set(timeline.labels.tolist())) == 7
    assert timeline.gradient.shape == timeline.gradcam.shape == (4, 8, 48, 48)
    np.testing.assert_allclose(timeline.probs.sum(-1), 1, atol=1e-5)
    model = load_checkpoint(probed_run.last_path).model  # the weights of epoch 4
    faces = torch.from_numpy(tiny_faces.images[timeline.rows])
    np.testing.assert_array_equal(timeline.images, faces.numpy())  # the pixels the page draws
    for method, kept in (("vanilla", timeline.gradient[-1]), ("gradcam", timeline.gradcam[-1])):
        expected = explain(model, faces, method, layer=timeline.layer) if method == "gradcam" \
            else explain(model, faces, method)
        values = expected.maps.numpy()
        # fp16 storage, and the trainer's channels-last layout: a max-pool tie can route a
        # gradient to another pixel, so a few pixels differ; the maps as a whole agree
        assert np.abs(kept - values).sum() / np.abs(values).sum() < 1e-2
    assert np.abs(timeline.gradient[0] - timeline.gradient[-1]).max() > 0  # the maps moved


def test_probe_faces_of_a_run_written_before_tasks_read_as_one_grey_channel(probed_run,
                                                                            tmp_path):
    import shutil

    from fer_core.training.probes import PIXELS, PROBES

    old = tmp_path / "old"
    shutil.copytree(probed_run.path, old)
    faces = np.load(old / PROBES / PIXELS)
    assert faces.shape == (8, 1, 48, 48)
    np.save(old / PROBES / PIXELS, faces[:, 0])  # as a run saved them before: N x 48 x 48
    np.testing.assert_array_equal(read_timeline(old).images, faces)


def test_probes_are_chosen_by_the_seed_alone(tiny_faces):
    a, b = choose_probes(tiny_faces, 8, 3), choose_probes(tiny_faces, 8, 3)
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions, choose_probes(tiny_faces, 8, 4).positions)
    assert np.array_equal(tiny_faces.labels[a.rows], a.labels)


def test_probes_and_snapshots_leave_the_training_untouched(probed_run, tmp_path, tiny_faces):
    plain = RunFolder(tmp_path / "plain")
    train(_config(snapshots=0, probes=0), plain.path, tiny_faces)
    assert read_timeline(plain.path) is None
    assert [s.path.name for s in list_snapshots(plain.path)] == ["best.pt"]  # best.pt alone
    a = read_payload(probed_run.last_path)["model"]
    b = read_payload(plain.last_path)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_resume_with_a_new_plan_keeps_its_spacing_and_redoes_later_probe_maps(tmp_path,
                                                                                  tiny_faces):
    run = RunFolder(tmp_path / "run")

    def stop_in_epoch_3(record):
        if record["epoch"] == 3:
            run.request_stop()

    assert train(_config(), run.path, tiny_faces, on_step=stop_in_epoch_3) == "stopped"
    assert [s.epoch for s in list_snapshots(run.path)] == [2]
    config = TrainConfig(**run.config())
    config.epochs, config.precision_used = 6, None
    assert train(config, run.path, tiny_faces, resume=True) == "finished"
    assert [s.epoch for s in list_snapshots(run.path)] == [3, 6]  # 2 was not in the new plan
    assert read_timeline(run.path).epochs == [1, 2, 3, 4, 5, 6]


def test_a_colour_probe_gradient_is_explain_s_vanilla_map_summed_over_channels(tiny_faces):
    from dataset_helpers import in_other_task

    from fer_core.models.architectures import build_model
    from fer_core.training.probes import probe_maps

    raf = in_other_task(tiny_faces)
    torch.manual_seed(0)
    model = build_model("cnn3", raf.task).eval()
    faces = torch.from_numpy(raf.images[:4])
    kept = probe_maps(model, faces.float() / 255, "block3.relu")["gradient"]
    expected = explain(model, faces, "vanilla").maps.numpy()
    assert kept.shape == expected.shape == (4, 64, 64)
    assert np.abs(kept - expected).sum() / np.abs(expected).sum() < 1e-2
