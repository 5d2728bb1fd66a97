"""`python -m fer_core export` and `fer_core.load_export`: every face of a split explained into
shards, the same from one process and from two torchrun ranks, resumed after a kill -9, and every
refusal one line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task
from explain_helpers import untrained_checkpoint

from dashboard.common.exports import richest
from fer_core import ExportError, FerError, load_export
from fer_core.cli.main import main
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013
from fer_core.evaluation.predict import cached_predict_split
from fer_core.explain.attribution import Target, explain
from fer_core.explain.export import ExportRequest, export_split, find_export, resolve_methods
from fer_core.explain.export import split_exports
from fer_core.explain.export_files import LOCK, MANIFEST, chunk_name
from fer_core.locks import FolderLock
from fer_core.models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "builtin-cnn3"
DATA = "builtin:600"  # 60 val faces
METHODS = ["--methods", "gradcam,vanilla,guided", "--param", "gradcam.layer=block2.relu"]
ARGS = ["--checkpoint", str(CHECKPOINT), "--data", DATA, "--split", "val", *METHODS,
        "--device", "cpu"]


def export(out: Path, *more: str) -> int:
    return main(["export", *ARGS, "--out", str(out), *more])


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def close_maps(got: np.ndarray, want: np.ndarray) -> None:
    """Equal within float16 rounding (and float noise of other batch shapes)."""
    assert got.dtype == np.float16
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-3, atol=1e-3 * scale)


def same_export(a, b) -> None:
    """Two loaded exports hold the same faces, predictions and features, and maps within float16
    rounding."""
    assert a.manifest["key"] == b.manifest["key"] and a.methods == b.methods
    for name in ("rows", "labels", "predictions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-5)
    for method in a.methods:
        close_maps(a.maps[method], b.maps[method].astype(np.float32))


@pytest.fixture(scope="module")
def solo(tmp_path_factory) -> Path:
    """One plain export of the 60 val faces in 4 chunks of 16, with its own cache folder."""
    out = tmp_path_factory.mktemp("solo") / "export"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("solo_cache")))
        assert export(out, "--chunk", "16") == 0
    return out


def test_an_export_round_trips_through_load_export(solo):
    done = load_export(solo)
    dataset = load_dataset(DATA)
    ckpt = load_checkpoint(CHECKPOINT)
    n = len(dataset.indices("val"))
    assert len(done) == n == 60 and done.split == "val"
    assert done.methods == ["gradcam", "vanilla", "guided"]
    assert done.params("gradcam") == {"layer": "block2.relu"} and done.params("guided") == {}
    assert (done.manifest["faces"], done.manifest["chunk_size"], done.manifest["chunks"]) == (
        60, 16, 4)
    for method in done.methods:
        assert done.maps[method].shape == (n, 48, 48) and done.maps[method].dtype == np.float16
    assert done.probs.shape == (n, 7) and done.probs.dtype == np.float32
    assert done.task == FER2013 and done.manifest["checkpoint"]["task"] == FER2013.to_meta()
    assert done.features.shape == (n, 512) and done.features.dtype == np.float32
    assert done.predictions.dtype == done.rows.dtype == done.labels.dtype == np.int64

    predicted = cached_predict_split(ckpt.model, ckpt.path, dataset, "val", torch.device("cpu"),
                                     features=True)
    np.testing.assert_array_equal(done.rows, predicted.rows)
    np.testing.assert_array_equal(done.labels, predicted.labels)
    np.testing.assert_array_equal(done.predictions, predicted.predicted)
    np.testing.assert_array_equal(done.probs, predicted.probs)
    np.testing.assert_array_equal(done.features, predicted.features)
    faces = torch.from_numpy(dataset.images[done.rows])
    for method in done.methods:
        want = explain(ckpt.model, faces, method, Target("predicted"), **done.params(method))
        close_maps(done.maps[method], want.maps.numpy())


def test_a_colour_model_of_five_classes_exports_at_its_size(tmp_path, monkeypatch):
    """An (untrained) colour 64-pixel model of five of the emotions on the same faces in colour:
    the manifest records its task, the export reads back with five probabilities and 64 x 64
    maps, and data of another task is refused naming both."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    names = ("happiness", "sadness", "anger", "surprise", "neutral")
    colour = in_other_task(load_dataset("builtin:300"), classes=names)
    ckpt = load_checkpoint(untrained_checkpoint(tmp_path, colour.task))
    request = ExportRequest(ckpt.model, ckpt.path, ckpt.task, colour, "val",
                            resolve_methods(ckpt, {"gradcam": {}, "occlusion": {"window": 64}}))
    export_split(request, tmp_path / "export", torch.device("cpu"), chunk_size=16)
    done = load_export(tmp_path / "export")
    n = len(colour.indices("val"))
    assert done.task == colour.task and done.manifest["classes"] == list(names)
    assert done.probs.shape == (n, 5) and done.params("gradcam") == {"layer": "block3.relu"}
    for method in ("gradcam", "occlusion"):
        assert done.maps[method].shape == (n, 64, 64)
        assert np.isfinite(done.maps[method].astype(np.float32)).all()
    grey = ExportRequest(ckpt.model, ckpt.path, ckpt.task, load_dataset("builtin:300"), "val",
                         request.methods)
    with pytest.raises(FerError, match=r"5 classes, 64x64 colour, but .* 48x48 grey"):
        export_split(grey, tmp_path / "grey", torch.device("cpu"))
    assert not (tmp_path / "grey").exists()


def test_load_export_imports_no_torch(solo):
    code = (f"import sys, fer_core; e = fer_core.load_export({str(solo)!r}); "
            f"assert len(e) == 60 and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_two_torchrun_ranks_write_the_files_of_one_process(solo, tmp_path):
    out = tmp_path / "ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--standalone", "-m", "fer_core", "export", *ARGS, "--out", str(out),
               "--chunk", "16"]
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 0] chunk 1/4 written" in result.stderr
    assert "[rank 1] chunk 2/4 written" in result.stderr
    assert result.stdout.count("exported 60 faces") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in solo.iterdir())
    same_export(load_export(out), load_export(solo))


def error_lines(capsys) -> list[str]:
    """What the command wrote to stderr, its warnings left out (the checkpoint was trained on
    the 10,000 built-in faces, not on DATA)."""
    return [line for line in capsys.readouterr().err.splitlines()
            if not line.startswith("warning: ")]


def chunk_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("chunk-*.npz"))


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def test_a_killed_export_refuses_a_second_meanwhile_and_resumes_to_the_same_result(
        solo, tmp_path, capsys):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "fer_core", "export", *ARGS, "--out", str(out),
               "--chunk", "4"]  # 15 chunks
    writer = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / chunk_name(0), writer)
        writer.send_signal(signal.SIGSTOP)  # frozen mid-export, the folder's lock held
        assert export(out, "--chunk", "4") == 2
        assert error_lines(capsys) == [
            f"error: {out} is in use by another export (pid {writer.pid}): wait for it to finish"]
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    written = chunk_files(out)
    assert 1 <= len(written) < 15
    for name in written:  # whole or absent: never half a shard under a chunk's name
        with np.load(out / name) as chunk:
            assert chunk["map_guided"].shape == (4, 48, 48)
    with pytest.raises(ExportError, match="incomplete"):
        load_export(out)

    assert export(out, "--chunk", "4") == 0
    captured = capsys.readouterr()
    assert f"{len(written)} kept from before" in captured.out
    assert captured.err.count("kept (written before)") == len(written)
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK, MANIFEST, *chunk_files(out)])
    assert len(chunk_files(out)) == 15  # no temporary file is left either
    same_export(load_export(out), load_export(solo))


def test_a_folder_holding_another_export_or_other_files_is_refused(solo, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(solo, other)
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.name != LOCK}
    assert main(["export", "--checkpoint", str(CHECKPOINT), "--data", DATA, "--methods",
                 "gradcam", "--out", str(other)]) == 2
    [line] = error_lines(capsys)
    assert line.startswith(f"error: {other} holds another export (")
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.name != LOCK} == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert export(stranger) == 2
    assert "holds files that are not an export (notes.txt" in capsys.readouterr().err
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]


def test_an_export_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    lock = FolderLock(out / LOCK)
    assert lock.acquire()
    try:
        assert export(out) == 2
    finally:
        lock.release()
    assert error_lines(capsys) == [
        f"error: {out} is in use by another export (pid {os.getpid()}): wait for it to finish"]


def damaged_copy(solo: Path, folder: Path, damage) -> Path:
    shutil.copytree(solo, folder)
    damage(folder / chunk_name(1))
    return folder


DAMAGE = {
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[:5000]), "cut short (5,000 of its"),
    "edited": (lambda p: p.write_bytes(flip_byte(p.read_bytes(), -100)),
               "changed since the export was written"),
    "missing": (lambda p: p.unlink(), "missing"),
}


def flip_byte(data: bytes, at: int) -> bytes:
    edited = bytearray(data)
    edited[at] ^= 0xFF
    return bytes(edited)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_shard_is_named_in_one_line(solo, tmp_path, case):
    damage, words = DAMAGE[case]
    folder = damaged_copy(solo, tmp_path / "copy", damage)
    with pytest.raises(ExportError) as caught:
        load_export(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / chunk_name(1)}: ") and words in message
    assert "\n" not in message


def test_a_rerun_export_replaces_a_damaged_shard_and_keeps_the_others(solo, tmp_path, capsys):
    folder = damaged_copy(solo, tmp_path / "copy", DAMAGE["edited"][0])
    assert export(folder) == 0
    assert "3 kept from before" in capsys.readouterr().out
    same_export(load_export(folder), load_export(solo))


def test_an_incomplete_or_foreign_folder_is_one_line(solo, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(solo, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ExportError, match=r"incomplete \(4 of 4 chunks written\): run the same"):
        load_export(folder)
    with pytest.raises(ExportError, match="no export here"):
        load_export(tmp_path)


BAD = {
    "unknown method": ["--methods", "lime"],
    "parameter of a method not asked for": ["--methods", "gradcam", "--param", "ig.steps=4"],
    "unknown parameter": ["--methods", "ig", "--param", "ig.window=4"],
    "parameter out of range": ["--methods", "ig", "--param", "ig.steps=0"],
    "malformed parameter": ["--methods", "ig", "--param", "ig.steps"],
    "no such layer": ["--methods", "gradcam", "--param", "gradcam.layer=head.fc"],
    "split missing from the data": ["--methods", "gradcam", "--data", "builtin:5",
                                    "--split", "test"],
    "chunk of 0": ["--methods", "gradcam", "--chunk", "0"],
    "missing checkpoint": ["--methods", "gradcam", "--checkpoint", "no/such/run"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    out = tmp_path / "export"
    args = ["--checkpoint", str(CHECKPOINT), "--data", "builtin:300", *BAD[case]]
    assert main(["export", *args, "--out", str(out)]) == 2
    [line] = error_lines(capsys)
    assert line.startswith("error: ")
    assert not out.exists()


def test_the_default_folder_lies_in_the_run_folder_where_find_export_finds_it(tmp_path,
                                                                              capsys):
    run = tmp_path / "run"
    shutil.copytree(CHECKPOINT, run)
    assert main(["export", "--checkpoint", str(run), "--data", "builtin:300", "--methods",
                 "gradcam"]) == 0
    folder = run / "exports" / "builtin-val"
    assert f"to {folder}" in capsys.readouterr().out
    ckpt, dataset = load_checkpoint(run), load_dataset("builtin:300")
    assert find_export(ckpt, dataset, "val", ["gradcam"]) == folder
    assert find_export(ckpt, dataset, "val", {"gradcam": {"layer": "block3.relu"}}) == folder
    assert find_export(ckpt, dataset, "val", {"gradcam": {"layer": "block2.relu"}}) is None
    assert find_export(ckpt, dataset, "val", ["gradcam", "vanilla"]) is None
    assert find_export(ckpt, dataset, "test", ["gradcam"]) is None
    assert find_export(ckpt, load_dataset("builtin:400"), "val", ["gradcam"]) is None
    assert len(load_export(folder)) == len(dataset.indices("val"))
    other = run / "exports" / "seeded"  # found too: the CLI and the dashboard by one rule
    assert main(["export", "--checkpoint", str(run), "--data", "builtin:300", "--methods",
                 "gradcam,vanilla", "--seed", "1", "--out", str(other)]) == 0
    assert [f for f, _ in split_exports(ckpt, dataset, "val")] == [folder, other]
    assert find_export(ckpt, dataset, "val", ["gradcam", "vanilla"]) is None
    assert find_export(ckpt, dataset, "val", ["gradcam", "vanilla"], seed=1) == other
    assert richest(ckpt, dataset, "val") == (other, ["gradcam", "vanilla"])  # the most methods
