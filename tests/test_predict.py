"""The one prediction path: its disk cache, its agreement with training validation, and TTA."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task, subset_of

from fer_core.data.builtin import make_builtin_faces
from fer_core.data.task import FER2013
from fer_core.errors import FerError
from fer_core.evaluation import predict
from fer_core.evaluation.predict import predict_split
from fer_core.evaluation.report import evaluate_split
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint, make_payload, save_atomic
from fer_core.training.config import TrainConfig
from fer_core.training.trainer import train

CPU = torch.device("cpu")


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn3").eval()


def _save(model: torch.nn.Module, path) -> None:
    save_atomic(make_payload(model, arch="cnn3", arch_options={}, task=FER2013, epoch=1,
                             metrics={}, config={},
                             dataset={"name": "builtin", "layout": "builtin", "fingerprint": "f"}),
                path)


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Count the real predictions behind `cached_predict_split` (one entry per model run)."""
    made = []
    def counted(model, dataset, split, *args, **kwargs):
        made.append(dataset.fingerprint)
        return predict_split(model, dataset, split, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_split", counted)
    return made


def test_the_same_checkpoint_and_data_are_served_from_the_cache(tmp_path, tiny_faces, calls):
    path = tmp_path / "best.pt"
    model = _model(0)
    _save(model, path)
    first = predict.cached_predict_split(model, path, tiny_faces, "val", CPU)
    second = predict.cached_predict_split(model, path, tiny_faces, "val", CPU)
    assert len(calls) == 1
    assert np.array_equal(second.probs, first.probs) and np.array_equal(second.rows, first.rows)
    assert np.array_equal(second.labels, first.labels) and second.split == "val"
    predict.cached_predict_split(model, path, tiny_faces, "test", CPU)
    predict.cached_predict_split(model, path, tiny_faces, "val", CPU, tta=True)
    assert len(calls) == 3  # another split or TTA is another entry


def test_new_content_in_the_same_checkpoint_file_is_a_miss(tmp_path, tiny_faces, calls):
    path = tmp_path / "best.pt"
    old, new = _model(0), _model(1)
    _save(old, path)
    before = predict.cached_predict_split(old, path, tiny_faces, "val", CPU)
    _save(new, path)
    after = predict.cached_predict_split(new, path, tiny_faces, "val", CPU)
    assert len(calls) == 2
    assert not np.allclose(after.probs, before.probs)
    expected = predict_split(new, tiny_faces, "val", CPU).probs
    assert np.array_equal(after.probs, expected)


def test_other_data_is_a_miss(tmp_path, tiny_faces, calls):
    path = tmp_path / "best.pt"
    model = _model(0)
    _save(model, path)
    # the same rows and labels with other pixels: only the fingerprint tells them apart
    mirrored = dataclasses.replace(tiny_faces, images=tiny_faces.images[..., ::-1].copy(),
                                   fingerprint=f"{tiny_faces.fingerprint}-mirrored")
    other = make_builtin_faces(n=210, seed=4)
    half = subset_of(tiny_faces, np.arange(0, len(tiny_faces), 2))
    for dataset in (tiny_faces, mirrored, other, half):
        got = predict.cached_predict_split(model, path, dataset, "val", CPU)
        assert np.array_equal(got.rows, dataset.indices("val"))
        assert np.array_equal(got.labels, dataset.labels[dataset.indices("val")])
        assert np.array_equal(got.probs, predict_split(model, dataset, "val", CPU).probs)
    assert calls == [d.fingerprint for d in (tiny_faces, mirrored, other, half)]


def test_best_checkpoint_scores_the_val_accuracy_the_trainer_recorded(tmp_path, tiny_faces):
    out = tmp_path / "run"
    train(TrainConfig(epochs=1, batch_size=32, device="cpu"), out, tiny_faces)
    ckpt = load_checkpoint(out / "best.pt", CPU)
    epochs = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    recorded = next(r["val_acc"] for r in epochs
                    if r["kind"] == "epoch" and r["epoch"] == ckpt.meta["epoch"])
    scored = evaluate_split(ckpt.model, tiny_faces, "val", CPU)["accuracy"]
    assert scored == recorded
    assert ckpt.meta["metrics"]["val_acc"] == recorded


def test_tta_views_are_ten_same_sized_views_starting_with_the_face():
    x = torch.rand(3, 1, 48, 48)
    views = predict.tta_views(x)
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x)
    assert torch.equal(views[5], x.flip(-1))
    assert len({v.sum().item() for v in views[1:5]}) == 4  # four different shifts


def test_tta_predictions_are_probabilities_that_differ_from_plain(tiny_faces):
    model = _model(0)
    plain = predict_split(model, tiny_faces, "val", CPU)
    tta = predict_split(model, tiny_faces, "val", CPU, tta=True)
    assert tta.probs.shape == plain.probs.shape and tta.probs.dtype == np.float32
    assert (tta.probs >= 0).all()
    assert np.allclose(tta.probs.sum(1), 1, atol=1e-5)
    assert not np.allclose(tta.probs, plain.probs)


def test_a_colour_model_of_five_classes_predicts_five_probabilities_per_face(tiny_faces):
    five = in_other_task(tiny_faces, classes=("surprise", "fear", "happiness", "sadness", "anger"))
    torch.manual_seed(0)
    model = build_model("cnn3", five.task, head="flat").eval()  # its head depends on the size
    preds = predict_split(model, five, "val", CPU, features=True)
    assert preds.probs.shape == (len(five.indices("val")), 5)
    assert preds.features.shape == (len(five.indices("val")), 256)
    assert np.allclose(preds.probs.sum(1), 1, atol=1e-5)
    tta = predict_split(model, five, "val", CPU, tta=True)
    assert tta.probs.shape == preds.probs.shape and not np.allclose(tta.probs, preds.probs)


def test_faces_without_a_channel_axis_are_refused_in_one_line():
    with pytest.raises(FerError, match=r"faces must be N x C x H x W, got shape \(2, 48, 48\)"):
        predict.logits_on_device(_model(0), torch.zeros(2, 48, 48, dtype=torch.uint8))
