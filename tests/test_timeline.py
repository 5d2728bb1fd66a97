"""How the model learned to look: one face across a run's snapshots (`python -m fer_core
timeline`, the Saliency page's "Across training"), the snapshot where its prediction became
right or stopped being right, and the probe faces' maps beside the Training page's curves."""

import json

import numpy as np
import pytest
import torch
from apptest_helpers import open_page, serve

from fer_core.cli.main import main
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013, Task
from fer_core.explain.attribution import Target
from fer_core.explain.timeline import (
    BECAME_RIGHT,
    MARKS,
    STOPPED_BEING_RIGHT,
    FaceTimeline,
    Moment,
    face_timeline,
    strip_image,
    turning_points,
)
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint, snapshot_lr
from fer_core.training.config import TrainConfig
from fer_core.training.snapshots import list_snapshots
from fer_core.training.trainer import train

DATA = "builtin:300"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A root with 'probed' (3 epochs, a snapshot and probe maps at each) and 'plain' (no
    snapshots, no probes, as runs made before them), both on DATA."""
    root = tmp_path_factory.mktemp("timeline_runs")
    dataset = load_dataset(DATA)
    common = {"data": DATA, "batch_size": 32, "device": "cpu", "log_every": 4, "seed": 1}
    train(TrainConfig(epochs=3, snapshots=3, probes=4, **common), root / "probed", dataset)
    train(TrainConfig(epochs=1, snapshots=0, probes=0, **common), root / "plain", dataset)
    return root


@pytest.fixture
def root(runs, monkeypatch):
    return serve(monkeypatch, runs)


# ---- the computation and the command -----------------------------------------------------------

@pytest.mark.parametrize(("correct", "expected"), [
    ([False, True, True, True], {4: BECAME_RIGHT}),
    ([True, True, False, False], {6: STOPPED_BEING_RIGHT}),
    ([False, True, False, True], {6: STOPPED_BEING_RIGHT, 8: BECAME_RIGHT}),  # the last of each
    ([True, False, True, True], {4: STOPPED_BEING_RIGHT, 6: BECAME_RIGHT}),
    ([True, True, True, True], {}), ([False] * 4, {}), (None, {})])
def test_the_snapshot_where_the_prediction_became_right_or_stopped(correct, expected):
    assert turning_points([2, 4, 6, 8], correct) == expected


def constructed(predicted: list[int], label: int | None) -> FaceTimeline:
    moments = [Moment(epoch=e, lr=0.1, probs=np.eye(7, dtype=np.float32)[p] * 0.7 + 0.3 / 7,
                      values=np.ones((48, 48), np.float32), target="x")
               for e, p in zip([1, 2, 3], predicted)]
    return FaceTimeline(moments=moments, label=label, method="vanilla", title="Gradient",
                        signed=False, params={}, classes=FER2013.classes)


def test_the_became_right_snapshot_is_framed_in_the_strip_and_named_in_the_report():
    timeline = constructed([4, 3, 3], label=3)  # Sad, then Happy: right from epoch 2
    report = timeline.report()
    assert [s["correct"] for s in report["snapshots"]] == [False, True, True]
    assert (report["became_right"], report["stopped_being_right"]) == (2, None)
    picture = np.asarray(strip_image(timeline, np.zeros((48, 48), np.uint8)))
    side, gap = 48 * 3, 6
    framed = [tuple(picture[100, gap + i * (side + gap) - 2, :3]) for i in range(3)]
    assert framed == [(0, 0, 0), MARKS[BECAME_RIGHT], (0, 0, 0)]  # transparent around the others
    unknown = constructed([4, 3, 3], label=None).report()
    assert unknown["became_right"] is None and unknown["snapshots"][0]["correct"] is None
    assert report["true"] == "Happy" and report["snapshots"][0]["pred"] == "Sad"


def test_a_colour_face_of_a_five_class_run_across_its_snapshots():
    """Two (untrained) snapshots of a colour 64-pixel model of five classes: maps at its size,
    five probabilities, its class names, and a strip with five bars under each colour face."""
    task = Task(("calm", "glad", "cross", "low", "shocked"), 64, 3)
    snapshots = []
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        snapshots.append((epoch, 0.1 / epoch, build_model("cnn3", task).eval()))
    face = np.random.default_rng(0).integers(0, 256, task.shape, dtype=np.uint8)
    timeline = face_timeline(snapshots, face, 1, "gradcam", Target("class", 4),
                             classes=task.classes)
    assert [m.values.shape for m in timeline.moments] == [(64, 64)] * 2
    assert [m.probs.shape for m in timeline.moments] == [(5,)] * 2
    assert {m.target for m in timeline.moments} == {"shocked"}
    report = timeline.report()
    assert report["true"] == "glad" and report["snapshots"][0]["pred"] in task.classes
    picture = strip_image(timeline, face, zoom=1)
    assert picture.size == (2 * (64 + 6) + 6, 30 + 64 + 5 * 9 + 4 + 18)


def test_the_command_writes_a_strip_and_per_snapshot_predictions_of_each_snapshot(root, tmp_path,
                                                                                  capsys):
    out, report = tmp_path / "t.png", tmp_path / "t.json"
    assert main(["timeline", "--checkpoint", str(root / "probed"), "--data", DATA, "--split",
                 "val", "--index", "5", "--method", "gradcam", "--out", str(out),
                 "--json", str(report)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    written = json.loads(report.read_text())
    dataset = load_dataset(DATA)
    row = dataset.indices("val")[5]
    face = torch.from_numpy(dataset.images[row]).float()[None] / 255
    snapshots = list_snapshots(root / "probed")
    assert [s["epoch"] for s in written["snapshots"]] == [s.epoch for s in snapshots] == [1, 2, 3]
    correct = []
    for entry, snapshot in zip(written["snapshots"], snapshots):
        ckpt = load_checkpoint(snapshot.path)
        with torch.no_grad():
            probs = ckpt.model(face).softmax(1)[0].numpy()
        np.testing.assert_allclose(entry["probs"], probs, atol=1e-5)
        assert entry["lr"] == snapshot_lr(ckpt.meta)
        assert entry["correct"] == (int(probs.argmax()) == dataset.labels[row])
        correct.append(entry["correct"])
    changes = {kind: epoch for epoch, kind in turning_points([1, 2, 3], correct).items()}
    assert written["became_right"] == changes.get(BECAME_RIGHT)
    assert written["stopped_being_right"] == changes.get(STOPPED_BEING_RIGHT)
    assert written["method"] == "gradcam" and written["params"]["layer"]
    assert "epoch    3" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoint", "{root}/probed/best.pt", "--data", DATA, "--index", "0"],
     "not a run folder"),
    (["--checkpoint", "{root}/missing", "--data", DATA, "--index", "0"], "not a run folder"),
    (["--checkpoint", "{root}/probed", "--data", DATA], "--data needs --index"),
    (["--checkpoint", "{root}/probed", "--data", DATA, "--index", "0", "--method", "ig",
      "--param", "window=3"], "no chosen method takes window")])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(root, tmp_path, capsys, args,
                                                                 message):
    out = tmp_path / "t.png"
    args = [a.format(root=root) for a in args]
    assert main(["timeline", *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


# ---- the pages ---------------------------------------------------------------------------------

SALIENCY, TRAINING = "views/saliency/page.py", "views/training/page.py"


def test_the_saliency_page_shows_the_face_across_training_when_asked(root):
    at = open_page(SALIENCY, data=DATA, run="probed", split="val", idx="5")
    images = len(at.image)
    at.toggle(key="sa_timeline").set_value(True).run()
    assert not at.exception and not at.error
    assert len(at.image) == images + 1
    caption = next(c.value for c in at.caption if "3 snapshots (epochs 1, 2, 3)" in c.value)
    assert any(words in caption for words in ("became right", "stopped being right",
                                              "every snapshot"))


def test_a_run_without_snapshots_says_how_to_get_them(root):
    at = open_page(SALIENCY, data=DATA, run="plain", split="val", idx="5")
    at.toggle(key="sa_timeline").set_value(True).run()
    assert not at.exception
    assert any("--snapshots" in i.value for i in at.info)


def test_a_finished_run_shows_its_probe_strip_with_a_slider_over_its_epochs(root):
    at = open_page(TRAINING, data=DATA, follow="probed")
    slider = at.select_slider(key="probe_epoch-probed")
    assert slider.options == ["1", "2", "3"] and slider.value == 3
    assert len(at.image) == 1 and any(c.value.startswith("Epoch 3:") for c in at.caption)
    slider.set_value(1).run()
    assert not at.exception
    assert any(c.value.startswith("Epoch 1:") for c in at.caption)


def test_a_run_without_probes_shows_the_curves_alone(root):
    at = open_page(TRAINING, data=DATA, follow="plain")
    assert not at.select_slider and not at.image
    assert not any("probe" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 1  # the curves
