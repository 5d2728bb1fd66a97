"""Embeddings: penultimate features from the one prediction path (checked by hand), seeded
projections, cosine nearest neighbours on a toy set, the disk cache, and the `embed` command."""

import csv
import importlib.util
import io

import numpy as np
import pytest
import torch
from dataset_helpers import RAF_DB_NAMES, in_other_task
from explain_helpers import untrained_checkpoint
from torch import nn

from fer_core.cli.main import main
from fer_core.data.task import FER2013, Task
from fer_core.errors import FerError
from fer_core.evaluation import predict
from fer_core.evaluation.predict import predict_split
from fer_core.explain import embeddings
from fer_core.explain.embeddings import embed_split, embedding_csv, nearest_neighbours, project
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import make_payload, save_atomic

CPU = torch.device("cpu")
CLASSES = FER2013.classes
HAS_UMAP = importlib.util.find_spec("umap") is not None


def _cnn3(seed: int, task: Task = FER2013) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn3", task).eval()


def _save(model: nn.Module, path, task: Task = FER2013) -> None:
    save_atomic(make_payload(model, arch="cnn3", arch_options={}, task=task, epoch=1, metrics={},
                             config={}, dataset={"name": "builtin", "layout": "builtin",
                                                 "fingerprint": "f"}),
                path)


def test_features_are_the_input_of_the_last_linear_layer_by_hand(tiny_faces):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 5), nn.ReLU(), nn.Linear(5, 7)).eval()
    preds = predict_split(model, tiny_faces, "val", CPU, features=True)
    x = tiny_faces.images[preds.rows].reshape(len(preds.rows), -1).astype(np.float64) / 255
    w1, b1 = (t.detach().double().numpy() for t in (model[1].weight, model[1].bias))
    w2, b2 = (t.detach().double().numpy() for t in (model[3].weight, model[3].bias))
    hidden = np.maximum(x @ w1.T + b1, 0)
    assert preds.features.shape == (len(preds.rows), 5) and preds.features.dtype == np.float32
    np.testing.assert_allclose(preds.features, hidden, rtol=1e-5, atol=1e-5)
    logits = hidden @ w2.T + b2
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(preds.probs, expected / expected.sum(1, keepdims=True), atol=1e-5)
    assert not model[3]._forward_pre_hooks  # the hook is gone


def test_cnn3_features_are_its_pooled_block3_and_the_probabilities_do_not_change(tiny_faces):
    model = _cnn3(0)
    preds = predict_split(model, tiny_faces, "val", CPU, features=True)
    plain = predict_split(model, tiny_faces, "val", CPU)
    x = torch.from_numpy(tiny_faces.images[preds.rows]).float().div(255)
    with torch.no_grad():
        pooled = model.head.flatten(model.head.pool(model[:-1](x)))
    assert preds.features.shape == (len(preds.rows), 512)
    np.testing.assert_allclose(preds.features, pooled.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(preds.probs, plain.probs)
    assert plain.features is None


def test_features_ignore_other_threads_using_the_same_model(tiny_faces):
    """A forward of another tab on the shared model while features are taken adds nothing."""
    import threading

    model = _cnn3(0)
    other = threading.Thread(target=lambda: [model(torch.rand(3, 1, 48, 48)) for _ in range(20)])
    with torch.no_grad():
        other.start()
        preds = predict_split(model, tiny_faces, "val", CPU, features=True)
        other.join()
    assert preds.features.shape == (len(preds.rows), 512)


def test_features_with_tta_are_refused(tiny_faces):
    with pytest.raises(FerError, match="TTA"):
        predict_split(_cnn3(0), tiny_faces, "val", CPU, tta=True, features=True)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """60 points in 3 clusters of 32 dimensions, non-negative like ReLU features."""
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 3, (3, 32))
    return np.abs(np.repeat(centres, 20, 0) + rng.normal(0, 0.3, (60, 32))).astype(np.float32)


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.skipif(
    not HAS_UMAP, reason="umap-learn is not installed"))])
def test_projections_are_deterministic_for_a_seed(blobs, method):
    first = project(blobs, method, seed=0)
    again = project(blobs.copy(), method, seed=0)
    assert first.shape == (60, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    labels = np.repeat(np.arange(3), 20)  # the three clusters stay apart
    centres = np.stack([first[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(first[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > spread


def test_pca_is_the_two_leading_directions():
    rng = np.random.default_rng(0)
    points = np.zeros((200, 5), dtype=np.float32)
    points[:, 3] = rng.normal(0, 10, 200)  # the widest direction
    points[:, 1] = rng.normal(0, 3, 200)   # the next one
    points[:, [0, 2, 4]] = rng.normal(0, 0.1, (200, 3))
    xy = project(points, "pca")
    assert abs(np.corrcoef(xy[:, 0], points[:, 3])[0, 1]) > 0.99
    assert abs(np.corrcoef(xy[:, 1], points[:, 1])[0, 1]) > 0.99


def test_projection_input_is_checked():
    with pytest.raises(FerError, match="unknown projection"):
        project(np.ones((10, 4)), "lda")
    with pytest.raises(FerError, match="at least"):
        project(np.ones((3, 4)), "pca")


def test_nearest_neighbours_on_a_toy_set():
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [0.7, 0.7], [3, 0], [1.8, 0.2]],
                        dtype=np.float32)
    # Face 0 points along x: face 5 the same way (cosine 1, whatever its length), faces 1 and 6
    # the same way as each other (a tie: lower position first), then 4, 2 (orthogonal), 3.
    positions, similarity = nearest_neighbours(features, 0, 6)
    assert positions.tolist() == [5, 1, 6, 4, 2, 3]
    np.testing.assert_allclose(similarity, [1, 0.99388, 0.99388, 0.70711, 0, -1], atol=1e-4)
    assert nearest_neighbours(features, 0, 2)[0].tolist() == [5, 1]
    assert nearest_neighbours(features, 2, 1)[0].tolist() == [4]
    assert len(nearest_neighbours(features, 0, 100)[0]) == 6  # never more than the others
    with pytest.raises(FerError):
        nearest_neighbours(features, 7, 3)


def test_the_embedding_csv_has_one_row_per_face(tiny_faces):
    model = _cnn3(0)
    preds = predict_split(model, tiny_faces, "val", CPU, features=True)
    embedding = embeddings.Embedding(preds, project(preds.features, "pca"), "pca")
    rows = list(csv.DictReader(io.StringIO(embedding_csv(embedding, CLASSES))))
    assert list(rows[0]) == ["split", "index", "x", "y", "label", "pred", "confidence"]
    assert [int(r["index"]) for r in rows] == list(range(len(preds.rows)))
    assert {r["split"] for r in rows} == {"val"}
    assert [r["label"] for r in rows] == [CLASSES[k] for k in preds.labels]
    assert [r["pred"] for r in rows] == [CLASSES[k] for k in preds.predicted]
    np.testing.assert_allclose([float(r["x"]) for r in rows], embedding.xy[:, 0], rtol=1e-5)
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], preds.probs.max(1),
                               atol=1e-4)


def test_a_colour_split_is_embedded_with_its_own_class_names(tmp_path, tiny_faces):
    colour = in_other_task(tiny_faces)
    path = tmp_path / "colour.pt"
    model = _cnn3(0, colour.task)
    _save(model, path, colour.task)
    embedding = embed_split(model, path, colour, "val", "pca", CPU)
    assert embedding.xy.shape == (len(colour.indices("val")), 2)
    assert embedding.predictions.probs.shape[1] == 7
    rows = list(csv.DictReader(io.StringIO(embedding_csv(embedding, colour.task.classes))))
    names = colour.task.classes
    assert [r["label"] for r in rows] == [names[k] if k >= 0 else "" for k in
                                          embedding.predictions.labels]
    assert {r["pred"] for r in rows} <= set(names)


# ---- the disk cache ----------------------------------------------------------------------------

@pytest.fixture
def counted(monkeypatch) -> dict[str, list]:
    """Count the real predictions and projections behind `embed_split`."""
    made = {"predict": [], "project": []}
    real_project = embeddings.project

    def predicting(model, dataset, split, *args, **kwargs):
        made["predict"].append((split, kwargs.get("features", False)))
        return predict_split(model, dataset, split, *args, **kwargs)

    def projecting(features, method, *args, **kwargs):
        made["project"].append(method)
        return real_project(features, method, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_split", predicting)
    monkeypatch.setattr(embeddings, "project", projecting)
    return made


def test_the_cache_hits_and_misses_like_the_prediction_cache(tmp_path, tiny_faces, counted):
    path = tmp_path / "best.pt"
    model = _cnn3(0)
    _save(model, path)
    first = embed_split(model, path, tiny_faces, "val", "pca", CPU)
    second = embed_split(model, path, tiny_faces, "val", "pca", CPU)
    assert counted == {"predict": [("val", True)], "project": ["pca"]}
    np.testing.assert_array_equal(second.xy, first.xy)
    np.testing.assert_array_equal(second.predictions.features, first.predictions.features)
    np.testing.assert_array_equal(second.predictions.probs, first.predictions.probs)

    embed_split(model, path, tiny_faces, "val", "tsne", CPU)  # features come from the cache
    assert counted == {"predict": [("val", True)], "project": ["pca", "tsne"]}
    embed_split(model, path, tiny_faces, "test", "pca", CPU)  # another split: both miss
    assert len(counted["predict"]) == 2 and counted["project"][-1] == "pca"

    plain = predict.cached_predict_split(model, path, tiny_faces, "val", CPU)
    assert len(counted["predict"]) == 2 and plain.features is None  # shares the entry
    np.testing.assert_array_equal(plain.probs, first.predictions.probs)

    _save(_cnn3(1), path)  # new weights in the same file: everything misses
    embed_split(_cnn3(1), path, tiny_faces, "val", "pca", CPU)
    assert len(counted["predict"]) == 3 and len(counted["project"]) == 4


def test_predicting_without_features_keeps_them_for_later(tmp_path, tiny_faces, counted):
    """The features come from the forward pass that predicts: asking for them later reads them."""
    path = tmp_path / "best.pt"
    model = _cnn3(0)
    _save(model, path)
    plain = predict.cached_predict_split(model, path, tiny_faces, "val", CPU)
    with_features = predict.cached_predict_split(model, path, tiny_faces, "val", CPU,
                                                 features=True)
    assert counted["predict"] == [("val", True)] and plain.features is None
    np.testing.assert_array_equal(with_features.probs, plain.probs)
    expected = predict_split(model, tiny_faces, "val", CPU, features=True).features
    np.testing.assert_array_equal(with_features.features, expected)


def test_an_entry_written_without_features_is_computed_again_once(tmp_path, tiny_faces,
                                                                  counted):
    """An entry of an earlier release holds probabilities only: the first wish for features
    predicts again and stores both."""
    path = tmp_path / "best.pt"
    model = _cnn3(0)
    _save(model, path)
    key = predict.prediction_key(path, tiny_faces, "val", False)
    rows = tiny_faces.indices("val")
    probs = predict_split(model, tiny_faces, "val", CPU).probs
    predict.cache.save_arrays(key, {"rows": rows, "probs": probs})
    predict.cached_predict_split(model, path, tiny_faces, "val", CPU, features=True)
    again = predict.cached_predict_split(model, path, tiny_faces, "val", CPU, features=True)
    assert counted["predict"] == [("val", True)]
    assert again.features.shape == (len(again.rows), 512)


def test_a_damaged_projection_entry_is_a_miss(tmp_path, tiny_faces, counted):
    path = tmp_path / "best.pt"
    model = _cnn3(0)
    _save(model, path)
    embed_split(model, path, tiny_faces, "val", "pca", CPU)
    key = embeddings.projection_key(path, tiny_faces, "val", "pca")
    (embeddings.cache.cache_dir() / f"{key}.npz").write_bytes(b"not an npz")
    embed_split(model, path, tiny_faces, "val", "pca", CPU)
    assert counted["project"] == ["pca", "pca"]
    assert embeddings.projection_cached(path, tiny_faces, "val", "pca")


# ---- the embed command -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("embed") / "model.pt"
    _save(_cnn3(0), path)
    return path


def test_embed_writes_one_row_per_face_of_the_split(checkpoint_file, tmp_path, capsys):
    out = tmp_path / "val.csv"
    assert main(["embed", "--checkpoint", str(checkpoint_file), "--data", "builtin:300",
                 "--split", "test", "--method", "tsne", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    from fer_core.data.readers import load_dataset

    n = len(load_dataset("builtin:300").indices("test"))
    assert len(rows) == n and {r["split"] for r in rows} == {"test"}
    assert {r["label"] for r in rows} <= set(CLASSES) and {r["pred"] for r in rows} <= set(CLASSES)
    assert f"wrote {n:,} faces" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--split", "train", "--data", "{csv}"], "has no train split"),
    (["--out", "{missing}/x.csv"], "does not exist"),
    (["--data", "/no/such/file.csv"], "no/such/file.csv"),
])
def test_embed_bad_input_exits_2_with_one_line(checkpoint_file, tmp_path, capsys, args, message):
    unlabelled = tmp_path / "only_test.csv"
    unlabelled.write_text("id,feature\n" + "".join(f"{i},{' '.join(['9'] * 2304)}\n"
                                                   for i in range(6)))
    fill = {"csv": str(unlabelled), "missing": str(tmp_path / "missing")}
    args = [a.format(**fill) for a in args]
    base = {"--data": "builtin:300", "--out": str(tmp_path / "out.csv")}
    for flag in ("--data", "--out"):
        if flag not in args:
            args += [flag, base[flag]]
    assert main(["embed", "--checkpoint", str(checkpoint_file), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_embed_of_data_of_another_task_converts_it_and_matches_classes(tmp_path, capsys):
    run = untrained_checkpoint(tmp_path, Task(RAF_DB_NAMES, 64, 3))
    out = tmp_path / "x.csv"
    assert main(["embed", "--checkpoint", str(run), "--data", "builtin:300", "--out",
                 str(out)]) == 0
    assert "faces converted from 48x48 grey to the model's 64x64 colour" in \
        capsys.readouterr().err
    assert set(out.read_text().splitlines()[1].split(",")) & set(RAF_DB_NAMES)


def test_embed_refuses_an_unknown_method(checkpoint_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["embed", "--checkpoint", str(checkpoint_file), "--method", "lda", "--out",
              str(tmp_path / "x.csv")])
    assert stop.value.code == 2 and capsys.readouterr().err.count("\n") == 1

