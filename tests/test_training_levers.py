"""The recipe's levers, each against what it should compute: random erasing, mixup and CutMix,
the weight average, the one-cycle schedule, and the --recipe flag that names them together."""

import math

import pytest
import torch
from torch import nn

from fer_core.cli.main import build_parser
from fer_core.cli.train import train_config_from_args
from fer_core.errors import FerError, RunError
from fer_core.models.checkpoint import read_payload
from fer_core.training.augment import erase_batch
from fer_core.training.averaging import WeightAverage
from fer_core.training.config import RECIPES, TrainConfig
from fer_core.training.mixing import MixConfig, Mixed, mix_batch
from fer_core.training.runs import RunFolder
from fer_core.training.trainer import Trainer, train


def faces(n: int = 16, seed: int = 0, shape: tuple = (1, 48, 48)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# ---- random erasing ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 48, 48), (3, 64, 64)])
def test_erasing_puts_one_box_of_the_drawn_size_on_each_chosen_face(shape):
    x = faces(64, shape=shape)
    erased = erase_batch(x, 1.0, torch.Generator().manual_seed(1))
    for before, after in zip(x, erased):
        changed_pixels = before != after
        assert all(torch.equal(channel, changed_pixels.any(0)) for channel in changed_pixels)
        rows, cols = torch.nonzero(changed_pixels[0], as_tuple=True)
        assert len(rows) > 0
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        changed = changed_pixels[0][top:bottom, left:right]
        assert changed.float().mean() > 0.99  # one filled box (noise may repeat a pixel's value)
        area = (bottom - top) * (right - left) / shape[-1] ** 2
        assert 0.02 * 0.8 <= area <= 0.33 * 1.2 and 0.3 / 1.5 <= (bottom - top) / (right - left)
    assert erased.min() >= 0 and erased.max() <= 1


def test_erasing_chooses_the_given_share_of_faces_and_repeats_for_a_seed():
    x = faces(400)
    erased = erase_batch(x, 0.25, torch.Generator().manual_seed(2))
    share = (erased != x).flatten(1).any(1).float().mean().item()
    assert 0.18 < share < 0.32
    assert torch.equal(erased, erase_batch(x, 0.25, torch.Generator().manual_seed(2)))
    assert torch.equal(erase_batch(x, 0.0, torch.Generator().manual_seed(2)), x)


# ---- mixup and CutMix -------------------------------------------------------------------------

def test_mixup_blends_each_face_with_its_partner_by_the_drawn_weight():
    x = faces()
    mixed, targets = mix_batch(x, MixConfig(mixup=0.4), (0, 1, 5))
    assert 0 < targets.lam < 1
    assert torch.allclose(mixed, targets.lam * x + (1 - targets.lam) * x.flip(0))
    again, same = mix_batch(x, MixConfig(mixup=0.4), (0, 1, 5))
    assert same.lam == targets.lam and torch.equal(again, mixed)
    assert mix_batch(x, MixConfig(mixup=0.4), (0, 1, 6))[1].lam != targets.lam


def test_cutmix_pastes_a_box_of_the_partner_and_weighs_the_labels_by_its_area():
    x = faces()
    for step in range(20):
        mixed, targets = mix_batch(x, MixConfig(cutmix=1.0), (3, 2, step))
        pasted = (mixed != x).any(0)[0]  # pixels taken from the partner, any face
        from_partner = torch.isclose(mixed, x.flip(0)) | ~pasted
        assert bool(from_partner.all())
        assert targets.lam == pytest.approx(1 - pasted.float().mean().item(), abs=1 / 48**2)


def test_both_on_mixes_each_batch_one_way_or_the_other():
    x = faces()
    ways = set()
    for step in range(40):
        mixed, _ = mix_batch(x, MixConfig(mixup=0.4, cutmix=1.0), (0, 1, step))
        ways.add("cutmix" if torch.equal(mixed[:, :, :1, :1], x[:, :, :1, :1])
                 or torch.equal(mixed[:, :, :1, :1], x.flip(0)[:, :, :1, :1]) else "mixup")
    assert ways == {"mixup", "cutmix"}


def test_a_mixed_batch_loss_and_accuracy_weigh_both_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    mixed = Mixed(0.7)
    ce = nn.CrossEntropyLoss()
    assert mixed.loss(ce, logits, y) == pytest.approx(
        0.7 * ce(logits, y).item() + 0.3 * ce(logits, torch.tensor([1, 0, 0])).item())
    # predictions (0, 1, 0): right on y (0, 0, 1) for face 0, on the reversed (1, 0, 0) for face 2
    assert mixed.correct(logits, y).item() == pytest.approx(0.7 * 1 + 0.3 * 1)
    assert Mixed().correct(logits, y).item() == 1


# ---- the weight average -----------------------------------------------------------------------

def test_the_weight_average_follows_the_warmed_up_decay_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in start.items()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model.train()(torch.randn(4, 3))  # moves the batch-norm statistics and its counter
        average.update()
        d = min(0.9, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            expected[k] = (d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone())
    for k, v in average.module.state_dict().items():
        assert torch.allclose(v, expected[k].to(v.dtype)), k
    assert torch.allclose(model[0].weight, start["0.weight"] + 5)
    assert not any(p.requires_grad for p in average.module.parameters())


def test_a_run_with_a_weight_average_validates_and_ships_the_average(tmp_path, tiny_faces):
    config = TrainConfig(epochs=1, batch_size=32, seed=1, ema=0.9)
    assert train(config, tmp_path / "run", tiny_faces) == "finished"
    run = RunFolder(tmp_path / "run")
    best, last = read_payload(run.best_path), read_payload(run.last_path)
    raw = last["training_state"]["raw_model"]
    assert any(not torch.equal(best["model"][k], raw[k]) for k in raw)
    trainer = Trainer(config, RunFolder(tmp_path / "again"), tiny_faces)
    trainer.shipped.load_state_dict(best["model"])
    assert trainer.validate()[1] == run.epochs()[-1]["val_acc"]


# ---- one-cycle ----------------------------------------------------------------------------------

def test_one_cycle_rises_to_the_peak_then_falls_within_the_run(tmp_path, tiny_faces):
    config = TrainConfig(epochs=4, batch_size=32, seed=1, optimizer="sgd", lr=0.05,
                         schedule="onecycle")
    rates = []
    trainer = Trainer(config, RunFolder(tmp_path / "run"), tiny_faces)
    total = 4 * trainer.steps_per_epoch()
    for _ in range(total):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(0.05, rel=0.01) and peak == pytest.approx(0.3 * total, abs=1.5)
    assert rates[0] == pytest.approx(0.05 / 25) and rates[-1] < rates[0] / 100
    assert math.isclose(trainer.optimizer.param_groups[0]["momentum"], 0.9)


def test_a_one_cycle_run_steps_its_schedule_every_step(tmp_path, tiny_faces):
    config = TrainConfig(epochs=3, batch_size=32, seed=1, optimizer="sgd", lr=0.05,
                         schedule="onecycle")
    train(config, tmp_path / "run", tiny_faces)
    rates = [e["lr"] for e in RunFolder(tmp_path / "run").epochs()]  # each epoch's last step
    assert rates[0] > rates[1] > rates[2] and rates[2] < rates[0] / 20


def test_a_one_cycle_run_resumed_with_other_epochs_is_refused(tmp_path, tiny_faces):
    config = TrainConfig(epochs=1, batch_size=32, schedule="onecycle")
    train(config, tmp_path / "run", tiny_faces)
    with pytest.raises(RunError, match="one-cycle schedule is planned over 1"):
        train(TrainConfig(epochs=2, batch_size=32, schedule="onecycle"), tmp_path / "run",
              tiny_faces, resume=True)


# ---- recipes ----------------------------------------------------------------------------------

def parsed(*flags: str) -> TrainConfig:
    return train_config_from_args(build_parser().parse_args(["train", "--out", "x", *flags]))


def test_a_recipe_sets_its_settings_and_the_flags_given_override_them():
    config = parsed("--recipe", "fer2013-resnet18", "--epochs", "5")
    for name, value in RECIPES["fer2013-resnet18"].items():
        assert getattr(config, name) == (5 if name == "epochs" else value), name
    assert config.recipe == "fer2013-resnet18" and config.seed == TrainConfig().seed
    assert parsed().arch == "cnn3" and parsed().recipe == "none"


def test_an_unknown_recipe_is_refused_by_name():
    with pytest.raises(FerError, match="recipe must be one of .*got 'fast'"):
        TrainConfig.from_settings({"recipe": "fast"})


# ---- torch.compile ----------------------------------------------------------------------------

def test_a_compiled_run_trains_as_the_eager_one_and_saves_the_plain_model(tmp_path, tiny_faces):
    """No dropout (compiled dropout draws other random numbers), fp32: the two runs take the same
    steps up to the compiler's reordering of float sums."""
    import torch._dynamo

    torch._dynamo.reset()
    runs = {}
    for compiled in (False, True):
        config = TrainConfig(epochs=1, batch_size=32, seed=7, precision="fp32", compile=compiled,
                             arch_options={"dropout": 0.0})
        train(config, tmp_path / str(compiled), tiny_faces)
        runs[compiled] = RunFolder(tmp_path / str(compiled))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    eager, compiled = (read_payload(runs[c].last_path)["model"] for c in (False, True))
    assert list(compiled) == list(eager)  # no "_orig_mod." prefix: the model itself is saved
    assert runs[True].epochs()[0]["train_loss"] == pytest.approx(
        runs[False].epochs()[0]["train_loss"], rel=1e-3)
