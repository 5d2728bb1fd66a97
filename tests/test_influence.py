"""TracIn on the last layer (`fer_core.explain.influence`): the scores against a hand computation
and against autograd's last-layer gradients on a tiny model with two snapshots, the lists' order,
and the `influence` command's output and refusals."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task
from explain_helpers import untrained_checkpoint
from torch import nn

from fer_core.data.builtin import make_builtin_faces
from fer_core.data.task import FER2013
from fer_core.errors import FerError
from fer_core.explain.influence import (
    Gradients,
    build_index,
    checkpoint_loader,
    errors_of,
    query_gradients,
    self_influence,
    top_positions,
    tracin_scores,
)
from fer_core.training.snapshots import Snapshot

ROOT = Path(__file__).resolve().parents[1]


def test_scores_match_a_hand_computation():
    # two training faces, one query, two snapshots; 2 features and 7 classes
    e = np.zeros((2, 7), np.float32)
    e[0, :2] = [0.5, -0.5]
    e[1, :2] = [-0.25, 0.25]
    train = [Gradients(0.1, np.array([[1, 0], [0, 2]], np.float32), e),
             Gradients(0.01, np.array([[1, 1], [2, 0]], np.float32), 2 * e)]
    qe = np.zeros((1, 7), np.float32)
    qe[0, :2] = [1.0, -1.0]
    query = [Gradients(0.1, np.array([[3, 1]], np.float32), qe),
             Gradients(0.01, np.array([[0, 1]], np.float32), qe)]
    # face 0: 0.1 * (1.0) * (3 + 1) + 0.01 * (2.0) * (1 + 1) = 0.44
    # face 1: 0.1 * (-0.5) * (2 + 1) + 0.01 * (-1.0) * (0 + 1) = -0.16
    np.testing.assert_allclose(tracin_scores(train, query), [[0.44, -0.16]], rtol=1e-6)
    # self: 0.1 * 0.5 * (1 + 1) + 0.01 * 2.0 * (2 + 1) = 0.16; 0.1 * 0.125 * 5 + 0.01 * 0.5 * 5
    np.testing.assert_allclose(self_influence(train), [0.16, 0.0875], rtol=1e-6)


def test_errors_are_softmax_minus_one_hot_and_zero_when_the_label_is_unknown():
    probs = np.full((2, 7), 1 / 7, np.float32)
    errors = errors_of(probs, np.array([3, -1]))
    assert errors[0, 3] == pytest.approx(1 / 7 - 1) and np.all(errors[1] == 0)


class Tiny(nn.Module):
    """48 x 48 faces -> 3 features -> 7 logits: the last layer is a Linear, as in cnn3."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 3), nn.Tanh())
        self.fc = nn.Linear(3, 7)

    def forward(self, x):
        return self.fc(self.body(x))


@dataclass
class Snap:
    model: Tiny
    lr: float


def autograd_gradient(model: Tiny, face: torch.Tensor, target: int) -> torch.Tensor:
    x = face.float().div(255)[None]
    weight, bias = (p.detach().clone().requires_grad_(True) for p in (model.fc.weight,
                                                                       model.fc.bias))
    logits = nn.functional.linear(model.body(x), weight, bias)
    loss = nn.functional.cross_entropy(logits, torch.tensor([target]))
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, (weight, bias))])


def test_scores_equal_the_lr_weighted_dot_products_of_autograd_gradients():
    faces = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 1, 48, 48),
                                                               dtype=np.uint8))
    labels, query_class = [0, 3, 3, 6, 1], 3
    snaps = [Snap(Tiny(seed).eval().requires_grad_(False), lr) for seed, lr in ((1, 0.1),
                                                                                 (2, 0.02))]
    train = [query_gradients(s.model, faces[:4], labels[:4], s.lr) for s in snaps]
    query = [query_gradients(s.model, faces[4:], [query_class], s.lr) for s in snaps]
    expected = [sum(s.lr * float(autograd_gradient(s.model, faces[i], labels[i])
                                 @ autograd_gradient(s.model, faces[4], query_class))
                    for s in snaps) for i in range(4)]
    np.testing.assert_allclose(tracin_scores(train, query)[0], expected, rtol=1e-4, atol=1e-7)
    self_expected = [sum(s.lr * float(autograd_gradient(s.model, faces[i], labels[i]).square()
                                      .sum()) for s in snaps) for i in range(4)]
    np.testing.assert_allclose(self_influence(train), self_expected, rtol=1e-4)
    assert all(not p.requires_grad for s in snaps for p in s.model.parameters())


def test_a_colour_run_of_five_classes_is_indexed_and_scored(tmp_path):
    """Two snapshots of an (untrained) colour 32-pixel model of five of the emotions: errors of
    five classes, faces without one of them (-1) scoring 0, and data of another task refused."""
    names = ("happiness", "sadness", "anger", "surprise", "neutral")
    dataset = in_other_task(make_builtin_faces(70, seed=2), size=32, classes=names)
    snapshots = [Snapshot(epoch, untrained_checkpoint(tmp_path / str(epoch), dataset.task,
                                                      seed=epoch) / "best.pt")
                 for epoch in (1, 2)]
    index = build_index(snapshots, dataset, torch.device("cpu"))
    assert [s.train.errors.shape[1] for s in index.stages] == [5, 5]
    unknown = index.labels < 0
    assert unknown.any() and np.all(index.self_influence()[unknown] == 0)
    face = torch.from_numpy(dataset.images[dataset.indices("val")[:1]])
    scores = index.scores(face, [4], checkpoint_loader("cpu"))
    assert scores.shape == (1, len(index.rows)) and np.isfinite(scores).all()
    assert np.all(scores[0, unknown] == 0)
    with pytest.raises(FerError, match="5 classes, 32x32 colour, but .* 7 classes, 48x48 grey"):
        build_index(snapshots, make_builtin_faces(70, seed=2), torch.device("cpu"))


def test_top_positions_keep_one_sign_strongest_first():
    scores = np.array([0.5, -2.0, 3.0, 0.0, -0.1, 3.0])
    assert top_positions(scores, 2, 1).tolist() == [2, 5]
    assert top_positions(scores, 5, -1).tolist() == [1, 4]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_core", "influence", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


DATA = "builtin:210"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny run on DATA with two snapshots."""
    from fer_core.data.readers import load_dataset
    from fer_core.training.config import TrainConfig
    from fer_core.training.trainer import train

    out = tmp_path_factory.mktemp("influence") / "run"
    train(TrainConfig(data=DATA, epochs=2, batch_size=32, device="cpu", snapshots=2, probes=0,
                      seed=1), out, load_dataset(DATA))
    return out


def test_the_command_lists_proponents_and_opponents_and_the_self_ranking(small_run, tmp_path):
    """The command's lists are the library's, on the run's two snapshots (those of last.pt,
    epoch 2: best.pt may be of epoch 1, which a snapshot of epoch 2 did not shape)."""
    from fer_core.data.readers import load_dataset
    from fer_core.explain.influence import ranked_self_influence
    from fer_core.training.snapshots import list_snapshots

    data = DATA
    dataset = load_dataset(data)
    index = build_index(list_snapshots(small_run), dataset, torch.device("cpu"))
    assert [s.epoch for s in index.stages] == [1, 2]
    out = tmp_path / "q.json"
    final = str(small_run / "last.pt")
    done = run_cli("--checkpoint", final, "--data", data, "--split", "val", "--index", "2",
                   "--top", "3", "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    face = torch.from_numpy(dataset.images[dataset.indices("val")[2]].copy())[None]
    predicted = report["pred"]
    classes = FER2013.classes
    scores = index.scores(face, [classes.index(predicted)], checkpoint_loader("cpu"))[0]
    assert [e["index"] for e in report["proponents"]] == top_positions(scores, 3, 1).tolist()
    assert [e["index"] for e in report["opponents"]] == top_positions(scores, 3, -1).tolist()
    for e in report["proponents"] + report["opponents"]:
        assert e["split"] == "train" and e["score"] == pytest.approx(scores[e["index"]], rel=1e-4)
        assert e["label"] == classes[dataset.labels[dataset.indices("train")[e["index"]]]]
    done = run_cli("--checkpoint", final, "--data", data, "--self", "--split", "train",
                   "--top", "4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    ranking, _ = ranked_self_influence(index)
    listed = json.loads(out.read_text())["self_influence"]
    assert [e["index"] for e in listed] == ranking[:4].tolist()
    assert [e["score"] for e in listed] == sorted((e["score"] for e in listed), reverse=True)


@pytest.mark.parametrize(("args", "says"), [
    (["--self", "--split", "val"], "--self ranks the training faces"),
    (["--index", "99999", "--split", "val"], "no index 99999"),
    (["--index", "0", "--top", "0"], "--top must be at least 1"),
    (["--image", "/nonexistent.png"], "nonexistent.png"),
])
def test_bad_input_is_one_line_and_exit_2(small_run, args, says, tmp_path):
    done = run_cli("--checkpoint", str(small_run), "--data", "builtin:210", *args, "--json",
                   str(tmp_path / "x.json"))
    assert done.returncode == 2 and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
