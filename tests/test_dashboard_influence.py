"""The pages' TracIn parts headless (AppTest): the Saliency page's proponents and opponents of
the shown face are the library's, each with its link; the Confusions page ranks the train split's
likely label errors by self-influence on request."""

import shutil

import apptest_helpers
import numpy as np
import pytest
import torch
from apptest_helpers import figure

from fer_core.data.readers import load_dataset
from fer_core.evaluation.predict import logits_on_device
from fer_core.explain.influence import (
    build_index,
    checkpoint_loader,
    ranked_self_influence,
    top_positions,
)
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.snapshots import checkpoint_snapshots

DATA = "builtin:300"


def library_index(root):
    ckpt = load_checkpoint(root / "tiny-a")
    snapshots = checkpoint_snapshots(ckpt.path, ckpt.meta["epoch"])
    return ckpt, build_index(snapshots, load_dataset(DATA), torch.device("cpu"))


def test_saliency_lists_the_proponents_and_opponents_the_library_finds(dashboard_root):
    at = apptest_helpers.open_page("views/saliency/page.py", data=DATA, run="tiny-a",
                                   split="val", idx="4")
    assert not [c for c in at.get("plotly_chart") if c.proto.id.endswith("-sa_proponents")]
    at.toggle(key="sa_influence").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    ckpt, index = library_index(dashboard_root)
    dataset = load_dataset(DATA)
    face = torch.from_numpy(dataset.images[dataset.indices("val")[4]].copy())[None]
    predicted = int(logits_on_device(ckpt.model, face).argmax(1))
    scores = index.scores(face, [predicted], checkpoint_loader("cpu"))[0]
    for key, sign in (("sa_proponents", 1), ("sa_opponents", -1)):
        shown = [int(v) for v in figure(at, key)["data"][1]["customdata"]]
        assert shown == top_positions(scores, 10, sign).tolist() and shown
    links = at.dataframe[0].value["link"].tolist()
    assert links[0].startswith("saliency?") and "split=train" in links[0]
    assert f"idx={top_positions(scores, 10, 1)[0]}" in links[0]


def self_influence_ranked():
    """The Confusions page on tiny-a's train split, its likely label errors by self-influence."""
    at = apptest_helpers.open_page("views/confusions/page.py", data=DATA, run="tiny-a",
                                   split="train")
    at.toggle(key="cm_errors").set_value(True).run()
    at.session_state["cm_error_ranking"] = "self"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_confusions_ranks_the_training_faces_by_self_influence(dashboard_root):
    at = self_influence_ranked()
    _, index = library_index(dashboard_root)
    ranking, _ = ranked_self_influence(index)
    shown = [int(v) for v in figure(at, "cm_gallery")["data"][1]["customdata"]]
    assert shown == ranking[:round(0.05 * len(index.rows))].tolist()
    assert any("self-influence" in h.value for h in at.subheader)
    assert np.all(np.diff(index.self_influence()[shown]) <= 0)


def test_the_memory_budget_counts_every_snapshots_features(dashboard_root):
    from dashboard.common.memo import nbytes

    _, index = library_index(dashboard_root)
    arrays = sum(s.train.features.nbytes + s.train.errors.nbytes for s in index.stages)
    assert arrays > 0 and nbytes(index) == arrays + index.rows.nbytes + index.labels.nbytes


@pytest.fixture
def damaged_snapshot(dashboard_checkpoints, tmp_path, monkeypatch):
    """A copy of tiny-a whose one snapshot is cut short."""
    root = tmp_path / "checkpoints"
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "tiny-a")
    (snapshot,) = (root / "tiny-a" / "snapshots").glob("epoch-*.pt")
    snapshot.write_bytes(snapshot.read_bytes()[:1000])
    apptest_helpers.serve(monkeypatch, root)
    return snapshot


def test_a_damaged_snapshot_is_one_line_on_both_pages(damaged_snapshot):
    at = self_influence_ranked()
    assert any(damaged_snapshot.name in e.value for e in at.error), [e.value for e in at.error]
    at = apptest_helpers.open_page("views/saliency/page.py", data=DATA, run="tiny-a",
                                   split="val", idx="4")
    at.toggle(key="sa_influence").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(damaged_snapshot.name in e.value for e in at.error), [e.value for e in at.error]
