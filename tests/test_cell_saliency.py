"""The mean saliency of a confusion cell: known answers on a linear model, a per-face autograd
reference on a small nonlinear one, batching, the shared-model rules, and the disk cache."""

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task
from torch import nn

from fer_core.data.builtin import make_builtin_faces
from fer_core.errors import FerError
from fer_core.evaluation.predict import predict_split
from fer_core.explain import cell_saliency
from fer_core.explain.cell_saliency import cached_cell_saliency, cell_mean_saliency, cell_rows


def faces(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 48, 48, generator=torch.Generator().manual_seed(seed))


def linear_model(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)).eval()


def small_cnn(seed: int = 2) -> nn.Module:
    """Nonlinear, with batch norm (so eval mode matters) and a max-pool."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 12 * 12, 7))
    with torch.no_grad():  # batch-norm statistics that differ from a batch's own
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def per_face_reference(model: nn.Module, x: torch.Tensor, t: int, p: int) -> torch.Tensor:
    """The definition, one face at a time (a colour face's channels added up)."""
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    for face in x:
        face = face[None].clone().requires_grad_(True)
        logits = model(face)[0]
        score = logits[p] - logits[t] if t != p else logits[t]
        (grad,) = torch.autograd.grad(score, face)
        total += (grad if t != p else grad.abs())[0].sum(0).double()
    return (total / len(x)).float()


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


# ---- the map -----------------------------------------------------------------------------------

def test_a_linear_model_gives_the_weight_difference_and_on_the_diagonal_its_magnitude():
    model = linear_model()
    w = model[1].weight.detach()
    x = faces(10)
    off = cell_mean_saliency(model, x, true_class=2, pred_class=4)
    assert off.shape == (48, 48)
    torch.testing.assert_close(off, (w[4] - w[2]).view(48, 48), atol=1e-6, rtol=1e-5)
    diagonal = cell_mean_saliency(model, x, true_class=3, pred_class=3)
    torch.testing.assert_close(diagonal, w[3].abs().view(48, 48), atol=1e-6, rtol=1e-5)


def test_a_colour_model_of_five_classes_adds_up_the_channels():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5)).eval()
    w = model[1].weight.detach().view(5, 3, 32, 32)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    off = cell_mean_saliency(model, x, true_class=1, pred_class=4)
    assert off.shape == (32, 32)
    torch.testing.assert_close(off, (w[4] - w[1]).sum(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cell_mean_saliency(model, x, 2, 2), w[2].abs().sum(0),
                               atol=1e-6, rtol=1e-5)
    with pytest.raises(FerError, match="0-4"):
        cell_mean_saliency(model, x, 5, 1)


def test_uint8_faces_give_the_map_of_their_pixels_over_255():
    model = small_cnn()
    pixels = (faces(6, seed=4)[:, 0] * 255).round().to(torch.uint8)
    torch.testing.assert_close(cell_mean_saliency(model, pixels, 0, 5),
                               per_face_reference(model, pixels[:, None].float() / 255, 0, 5),
                               atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell", [(0, 5), (6, 6)], ids=["off-diagonal", "diagonal"])
def test_a_nonlinear_model_matches_a_per_face_autograd_loop(cell):
    model = small_cnn()
    x = faces(9, seed=3)
    torch.testing.assert_close(cell_mean_saliency(model, x, *cell),
                               per_face_reference(model, x, *cell), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell", [(1, 2), (4, 4)], ids=["off-diagonal", "diagonal"])
def test_batching_does_not_change_the_map(cell):
    model = small_cnn()
    x = faces(10, seed=5)
    torch.testing.assert_close(cell_mean_saliency(model, x, *cell, batch=3),
                               cell_mean_saliency(model, x, *cell), atol=1e-7, rtol=1e-5)


def test_progress_hears_the_start_and_every_batch():
    calls = []
    cell_mean_saliency(small_cnn(), faces(10), 1, 2, batch=4,
                       progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 10), (4, 10), (8, 10), (10, 10)]


def test_the_shared_model_is_left_untouched():
    model = small_cnn().requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cell_mean_saliency(model, faces(5), 3, 0)
    assert hooks_left(model) == 0 and not model.training
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_model_in_training_mode_is_explained_in_eval_mode_and_stays_in_training_mode():
    model = small_cnn().train()
    x = faces(6, seed=6)
    result = cell_mean_saliency(model, x, 5, 2)
    assert model.training and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(result, per_face_reference(small_cnn().eval(), x, 5, 2),
                               atol=1e-6, rtol=1e-4)


def test_it_works_under_no_grad_and_autocast():
    model = small_cnn()
    x = faces(4, seed=7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        result = cell_mean_saliency(model, x, 0, 1)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, per_face_reference(model, x, 0, 1), atol=1e-6, rtol=1e-4)


def test_an_empty_cell_or_a_bad_class_is_refused():
    with pytest.raises(FerError, match="has no faces"):
        cell_mean_saliency(small_cnn(), torch.zeros(0, 48, 48, dtype=torch.uint8), 1, 2)
    with pytest.raises(FerError, match="class number"):
        cell_mean_saliency(small_cnn(), faces(2), 7, 2)


# ---- the disk cache ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scored():
    """A small dataset, a model, its checkpoint file and its predictions of the val split."""
    dataset = make_builtin_faces(n=140, seed=5)
    model = small_cnn()
    preds = predict_split(model, dataset, "val", torch.device("cpu"))
    return dataset, model, preds


def busiest_cells(preds) -> tuple[tuple[int, int], tuple[int, int]]:
    """The fullest off-diagonal cell and the fullest diagonal one."""
    counts = np.zeros((7, 7), dtype=int)
    np.add.at(counts, (preds.labels, preds.predicted), 1)
    diagonal = int(np.argmax(np.diag(counts)))
    np.fill_diagonal(counts, -1)
    t, p = np.unravel_index(np.argmax(counts), counts.shape)
    return (int(t), int(p)), (diagonal, diagonal)


def save_checkpoint(model: nn.Module, path) -> None:
    torch.save(model.state_dict(), path)


def no_compute(*args, **kwargs):
    raise AssertionError("computed although cached")


def test_the_cached_map_is_the_cell_mean_and_a_second_call_reads_it(scored, tmp_path,
                                                                    monkeypatch):
    dataset, model, preds = scored
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(model, checkpoint)
    for t, p in busiest_cells(preds):
        rows = cell_rows(preds, t, p)
        assert len(rows) > 1 and set(rows) == {
            preds.rows[i] for i in range(len(preds.rows))
            if preds.labels[i] == t and preds.predicted[i] == p}
        expected = per_face_reference(model, torch.from_numpy(dataset.images[rows])
                                      .float() / 255, t, p).numpy()
        first = cached_cell_saliency(model, checkpoint, dataset, preds, t, p)
        assert first.dtype == np.float32 and first.shape == (48, 48)
        np.testing.assert_allclose(first, expected, atol=1e-6, rtol=1e-4)
        with monkeypatch.context() as m:
            m.setattr(cell_saliency, "cell_mean_saliency", no_compute)
            np.testing.assert_array_equal(
                cached_cell_saliency(model, checkpoint, dataset, preds, t, p), first)


def test_another_cell_or_another_checkpoint_content_is_computed_again(scored, tmp_path,
                                                                      monkeypatch):
    dataset, model, preds = scored
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(model, checkpoint)
    (t, p), (d, _) = busiest_cells(preds)
    cached_cell_saliency(model, checkpoint, dataset, preds, t, p)
    computed = []
    real = cell_saliency.cell_mean_saliency
    monkeypatch.setattr(cell_saliency, "cell_mean_saliency",
                        lambda *a, **k: computed.append(a[2:4]) or real(*a, **k))
    cached_cell_saliency(model, checkpoint, dataset, preds, d, d)
    assert computed == [(d, d)]
    retrained = small_cnn(seed=9)
    save_checkpoint(retrained, checkpoint)  # same path, new content
    again = cached_cell_saliency(retrained, checkpoint, dataset, preds, t, p)
    assert computed == [(d, d), (t, p)]
    x = torch.from_numpy(dataset.images[cell_rows(preds, t, p)]).float() / 255
    np.testing.assert_allclose(again, per_face_reference(retrained, x, t, p).numpy(),
                               atol=1e-6, rtol=1e-4)


def test_a_colour_dataset_s_cell_map_has_its_size(scored, tmp_path):
    dataset = in_other_task(scored[0], size=32)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 7)).eval()
    checkpoint = tmp_path / "colour.pt"
    save_checkpoint(model, checkpoint)
    preds = predict_split(model, dataset, "val", torch.device("cpu"))
    (t, p), _ = busiest_cells(preds)
    x = torch.from_numpy(dataset.images[cell_rows(preds, t, p)]).float() / 255
    result = cached_cell_saliency(model, checkpoint, dataset, preds, t, p)
    assert result.shape == (32, 32)
    np.testing.assert_allclose(result, per_face_reference(model, x, t, p).numpy(), atol=1e-6,
                               rtol=1e-4)


def test_an_entry_for_other_faces_is_not_served(scored, tmp_path, monkeypatch):
    """The entry keeps the cell's rows: predictions that put other faces in the cell miss."""
    dataset, model, preds = scored
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(model, checkpoint)
    (t, p), _ = busiest_cells(preds)
    cached_cell_saliency(model, checkpoint, dataset, preds, t, p)
    moved = cell_rows(preds, t, p)[0] == preds.rows
    probs = preds.probs.copy()
    probs[moved] = np.eye(7, dtype=np.float32)[t]  # its first face is now predicted right
    changed = type(preds)(split=preds.split, rows=preds.rows, labels=preds.labels, probs=probs)
    monkeypatch.setattr(cell_saliency, "cell_mean_saliency", no_compute)
    with pytest.raises(AssertionError, match="computed although cached"):
        cached_cell_saliency(model, checkpoint, dataset, changed, t, p)
