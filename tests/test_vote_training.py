"""Training on crowd votes (--labels, the four modes of the FER+ paper) and on a held-out share of
the training split (--holdout): the targets against a line-by-line port of Microsoft's reader,
each mode's loss, the draws, the faces validated on, and the refusals."""

import dataclasses

import numpy as np
import pytest
import torch
from dataset_helpers import microsoft_target

from fer_core.cli.main import main
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.ferplus import FERPLUS, majority_labels, vote_targets
from fer_core.errors import FerError
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.config import LABEL_MODES, TrainConfig
from fer_core.training.runs import RunFolder
from fer_core.training.targets import MultiTargetLoss, split_rows
from fer_core.training.trainer import Trainer, train


def random_votes(n: int, seed: int) -> np.ndarray:
    """Vote rows like the crowd's (10 votes spread by a Dirichlet draw), and small random counts
    that tie often."""
    rng = np.random.default_rng(seed)
    crowd = rng.multinomial(10, rng.dirichlet(np.full(10, 0.5)), size=n)
    ties = rng.integers(0, 4, size=(n // 3, 10))
    return np.concatenate([crowd, ties]).astype(np.uint8)


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_vote_targets_are_microsofts_row_by_row(mode):
    votes = random_votes(1500, seed=1)
    targets, keep = vote_targets(votes, mode)
    for row, target, kept in zip(votes, targets, keep):
        expected = microsoft_target(row.tolist(), mode)
        assert kept == (expected is not None), row
        if kept:
            np.testing.assert_allclose(target, expected, atol=1e-6, err_msg=str(row))
        else:
            assert not target.any()
    assert 0 < keep.sum() < len(votes)
    if mode == "majority":
        assert np.array_equal(np.where(keep, targets.argmax(1), -1), majority_labels(votes))


def ferplus_faces(n: int = 400, second: int = 3, seed: int = 3):
    """Built-in faces given FER+'s task: each face's votes are 10 - `second` for an emotion
    (its built-in class, in FER+'s order), `second` for the next one."""
    faces = make_builtin_faces(n=n, seed=seed)
    votes = np.zeros((n, 10), dtype=np.uint8)
    first = faces.labels % FERPLUS.num_classes
    votes[np.arange(n), first] = 10 - second
    votes[np.arange(n), (first + 1) % FERPLUS.num_classes] += second
    return dataclasses.replace(faces, task=FERPLUS, labels=majority_labels(votes), votes=votes,
                               fingerprint=f"ferplus-like-{n}-{second}-{seed}")


def trained_weights(tmp_path, dataset, **settings) -> dict:
    config = TrainConfig(epochs=1, batch_size=32, device="cpu", precision="fp32", snapshots=0,
                         probes=0, **settings)
    out = tmp_path / settings.get("labels", "run")
    assert train(config, str(out), dataset) == "finished"
    return load_checkpoint(out / "last.pt").model.state_dict()


def test_unanimous_votes_train_every_mode_alike_and_split_votes_do_not(tmp_path):
    """With every face's votes on one emotion, the label, a label drawn from the votes, the
    votes as a distribution and multi-target's one target (-log p of it, while p of the label is
    above 0.001 of any other's) are one target: the four modes reach the same weights. With
    7/3 votes the distribution is another target than the label."""
    dataset = ferplus_faces(second=0)
    reference = trained_weights(tmp_path / "one", dataset, labels="majority", mixup=0.4)
    for mode in ("probability", "crossentropy", "multi_target"):
        weights = trained_weights(tmp_path / "one", dataset, labels=mode, mixup=0.4)
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    split = ferplus_faces(second=3)
    hard = trained_weights(tmp_path / "split", split, labels="majority")
    soft = trained_weights(tmp_path / "split", split, labels="crossentropy")
    assert max((hard[k].float() - v.float()).abs().max().item() for k, v in soft.items()) > 1e-3


def test_crossentropy_learns_the_vote_shares_and_majority_the_label(tmp_path):
    """Split 7/3 votes: the trainer's soft targets are those shares, and its loss is the cross-
    entropy to them; under majority the target is the label alone."""
    dataset = ferplus_faces(second=3)
    soft = Trainer(TrainConfig(labels="crossentropy", device="cpu", snapshots=0, probes=0),
                   RunFolder(tmp_path / "soft"), dataset)
    targets = soft.targets.for_epoch(1)
    first = soft.train_data.labels
    assert torch.allclose(targets[torch.arange(len(first)), first], torch.tensor(0.7))
    assert torch.allclose(targets.sum(1), torch.tensor(1.0)) and (targets > 0).sum(1).eq(2).all()
    logits = torch.randn(5, FERPLUS.num_classes)
    expected = -(targets[:5] * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(soft.loss_fn(logits, targets[:5]), expected)
    hard = Trainer(TrainConfig(labels="majority", device="cpu", snapshots=0, probes=0),
                   RunFolder(tmp_path / "hard"), dataset)
    assert torch.equal(hard.targets.for_epoch(1), hard.train_data.labels)
    assert torch.equal(hard.train_data.labels, first)


def test_the_multi_target_loss_is_minus_log_of_the_best_target_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    target = torch.tensor([[1.0, 0.001, 0.001], [0.001, 1.0, 1.0]])
    p = logits.softmax(1)
    expected = -torch.log(torch.tensor([p[0, 0], p[1, 2]]))
    torch.testing.assert_close(MultiTargetLoss("sum")(logits, target), expected.sum())
    torch.testing.assert_close(MultiTargetLoss()(logits, target), expected.mean())


def test_multi_target_rewards_any_emotion_with_enough_votes(tmp_path):
    """6/4 votes: both emotions are targets (at least 3 tenths each), nearly 1 each."""
    dataset = ferplus_faces(second=4)
    trainer = Trainer(TrainConfig(labels="multi_target", device="cpu", snapshots=0, probes=0),
                      RunFolder(tmp_path / "multi"), dataset)
    targets = trainer.targets.for_epoch(1)
    assert ((targets > 0.99).sum(1) == 2).all() and targets.min() == pytest.approx(0.001)


def test_probability_draws_follow_the_votes_anew_each_epoch_and_repeat_for_a_seed(tmp_path):
    dataset = ferplus_faces(n=2000, second=4)
    config = TrainConfig(labels="probability", device="cpu", snapshots=0, probes=0, seed=5)
    trainer = Trainer(config, RunFolder(tmp_path / "p"), dataset)
    first = trainer.train_data.labels
    drawn = trainer.targets.for_epoch(1)
    share = (drawn == first).float().mean().item()
    assert 0.55 < share < 0.65  # 6 of 10 votes, over about 1,400 training faces
    assert ((drawn == first) | (drawn == (first + 1) % 8)).all()
    assert torch.equal(drawn, trainer.targets.for_epoch(1))
    assert not torch.equal(drawn, trainer.targets.for_epoch(2))
    again = Trainer(config, RunFolder(tmp_path / "p2"), dataset).targets.for_epoch(1)
    assert torch.equal(drawn, again)


def test_a_holdout_validates_on_a_stratified_share_of_the_training_faces(tmp_path):
    dataset = ferplus_faces(n=600)
    config = TrainConfig(holdout=0.2, device="cpu", snapshots=0, probes=0)
    train_rows, val_rows = split_rows(config, dataset, None)
    labelled = dataset.indices("train")
    assert set(train_rows) | set(val_rows) == set(labelled) and not set(train_rows) & set(
        val_rows)
    assert set(val_rows) <= set(dataset.indices("train"))
    assert abs(len(val_rows) - 0.2 * len(labelled)) <= dataset.task.num_classes
    for k in range(FERPLUS.num_classes):
        in_class = (dataset.labels[labelled] == k).sum()
        if in_class > 1:
            assert 0 < (dataset.labels[val_rows] == k).sum() < in_class
    trainer = Trainer(config, RunFolder(tmp_path / "h"), dataset)
    assert (len(trainer.train_data), len(trainer.val_data)) == (len(train_rows), len(val_rows))
    plain_rows = split_rows(TrainConfig(), dataset, None)[1]
    assert set(plain_rows) == set(dataset.indices("val"))


def test_vote_modes_without_votes_and_multi_target_with_smoothing_are_refused(tmp_path, capsys):
    with pytest.raises(FerError, match="crossentropy learns from crowd votes.*has none"):
        Trainer(TrainConfig(data="builtin", labels="crossentropy", device="cpu"),
                RunFolder(tmp_path / "a"), make_builtin_faces(n=100, seed=1))
    with pytest.raises(FerError, match="multi_target has its own loss"):
        TrainConfig(labels="multi_target", label_smoothing=0.1).validate()
    with pytest.raises(FerError, match="holdout must be in"):
        TrainConfig(holdout=1.0).validate()
    out = tmp_path / "refused"
    assert main(["train", "--data", "builtin:200", "--labels", "probability", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels probability" in err[0] and not out.exists()
