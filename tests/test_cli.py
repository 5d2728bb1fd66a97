"""The CLI's contract: output, JSON, exit codes, and one readable line on stderr for errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dataset_helpers import RAF_DB_NAMES, in_other_task

from fer_core.cli.main import main
from fer_core.data import readers
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import FORMAT, make_payload, save_atomic
from fer_core.training.config import TrainConfig
from fer_core.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
CLASSES = FER2013.classes


def run_cli(*args, timeout=120):
    """Run `python -m fer_core ARGS` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_faces):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(epochs=1, batch_size=32), out, tiny_faces)
    return out


def test_data_prints_layout_and_counts_per_split(capsys):
    assert main(["data", "--data", "builtin:700"]) == 0
    out = capsys.readouterr().out
    assert "layout: builtin" in out and "faces: 700" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in ("train", "val", "test")}
    assert set(rows) == {"train", "val", "test"}
    assert sum(int(r[-1]) for r in rows.values()) == 700
    assert all(sum(map(int, r[:-1])) == int(r[-1]) for r in rows.values())


def imported_modules(*args) -> set[str]:
    """The modules a fresh `python -X importtime -m fer_core ARGS` imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "fer_core", *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:")}


def test_the_data_command_never_imports_torch(tmp_path):
    csv = tmp_path / "faces.csv"
    csv.write_text("emotion,pixels,Usage\n" + "".join(
        f"{k % 7},{' '.join(['9'] * 2304)},Training\n" for k in range(20)))
    for data in ("builtin:100", csv, csv):  # the second CSV load is served from the cache
        modules = imported_modules("data", "--data", data)
        assert "fer_core.data.readers" in modules
        assert not modules & {"torch", "torchvision"}, data


def test_a_cnn3_is_built_without_torchvision():
    code = ("import sys; from fer_core.models.architectures import build_model; "
            "build_model('cnn3'); assert 'torchvision' not in sys.modules; "
            "build_model('resnet18'); assert 'torchvision' in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_train_help_still_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "epochs to train (default 10)" in out and "faces per step (default 128)" in out


def test_evaluate_prints_metrics_and_writes_json(trained_run, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "builtin:210",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "confusion matrix (rows = true class, columns = predicted)" in printed
    assert printed.count("task: 7 classes, 48x48 grey: Angry, Disgust") == 1
    metrics = json.loads(out_json.read_text())
    assert {"n", "accuracy", "per_class", "confusion_matrix"} <= metrics.keys()
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 7 and all(len(row) == 7 for row in matrix)
    assert sum(map(sum, matrix)) == metrics["n"] > 0
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(7)) / metrics["n"])
    assert set(metrics["per_class"]["Happy"]) == {"precision", "recall", "f1", "support"}
    assert f"accuracy = {metrics['accuracy']:.4f}" in printed


def test_evaluate_accepts_a_pt_file_and_another_split(trained_run, tmp_path):
    out_json = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "last.pt"), "--data",
                 "builtin:210", "--split", "test", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["split"] == "test"


def test_train_then_resume_from_the_command_line(tmp_path):
    out = tmp_path / "cli-run"
    first = run_cli("train", "--data", "builtin:140", "--epochs", "1", "--batch-size", "32",
                    "--out", out)
    assert first.returncode == 0, first.stderr
    assert "finished: 1/1 epochs, best val acc" in first.stdout
    assert first.stdout.count("task: 7 classes, 48x48 grey: Angry, Disgust") == 1
    assert "epoch 1/1  train loss" in first.stdout
    again = run_cli("train", "--data", "builtin:140", "--epochs", "1", "--out", out)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already holds a run" in again.stderr
    resumed = run_cli("train", "--resume", "--epochs", "2", "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "finished: 2/2 epochs" in resumed.stdout
    epochs = [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert epochs == [1, 2]


def step_record(step: int, steps: int = 19, epoch: int = 1) -> dict:
    """A step record as the trainer writes it to history.jsonl and hands to on_step."""
    return {"kind": "step", "epoch": epoch, "step": step, "steps": steps,
            "progress": round(epoch - 1 + step / steps, 4), "loss": 1.8, "acc": 0.25,
            "time": 1e9}


def test_the_training_bar_s_rate_counts_only_steps_it_timed(monkeypatch):
    """The first record of an epoch arrives log_every steps in: the bar, made then, must not
    read those steps as done in no time."""
    import tqdm.std

    from fer_core.cli.train import ProgressBar

    now = [1000.0]

    def clock() -> float:  # a millisecond passes at each reading, as on a real machine
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(tqdm.std, "time", clock)
    bar = ProgressBar(epochs=2)
    bar.step(step_record(10))
    first = str(bar.bar)
    assert "10/19" in first and "?step/s" in first, first
    now[0] += 2.0  # nine more steps in two seconds
    bar.step(step_record(19))
    assert bar.bar.format_dict["rate"] == pytest.approx(4.5, rel=0.01), str(bar.bar)
    bar.close()


@pytest.mark.parametrize("args,message", [
    (["data", "--data", "/no/such/fer2013.csv"], "/no/such/fer2013.csv"),
    (["evaluate", "--checkpoint", "/no/such/run"], "no such checkpoint"),
    (["train", "--out", "X", "--epochs", "0"], "epochs must be at least 1"),
    (["train", "--out", "X", "--arch", "vgg"], "architecture must be one of cnn3, resnet18 or "
                                              "torchvision:NAME, got 'vgg'"),
    (["train", "--out", "X", "--resume"], "cannot resume X"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_bad_checkpoint_exits_2_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.pt"
    save_atomic({"not": "a checkpoint"}, bad)
    result = run_cli("evaluate", "--checkpoint", bad, "--data", "builtin:70")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: not a fer_core checkpoint (no " \
                                    f"'{FORMAT}' format tag)"


def test_evaluate_on_a_truncated_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    shipped = (ROOT / "checkpoints" / "builtin-cnn3" / "best.pt").read_bytes()
    cut = tmp_path / "best.pt"
    cut.write_bytes(shipped[:len(shipped) // 2])
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--data", "builtin:70"]) == 2
    assert capsys.readouterr().err == (f"error: {cut}: not a PyTorch checkpoint (truncated, or "
                                       f"another kind of file)\n")


@pytest.mark.parametrize("init,message", [
    ("cut", "not a PyTorch checkpoint (truncated"),
    ("nowhere.pt", "no such checkpoint file or run folder"),
    ("resnet18", "holds a cnn3, not a resnet18"),
])
def test_a_training_refused_before_its_first_step_leaves_no_folder(init, message, tmp_path,
                                                                     capsys):
    """What can be checked before the run folder is made is checked there: a bad --init leaves
    no run.lock and no failed status.json behind, and says why in one line."""
    shipped = ROOT / "checkpoints" / "builtin-cnn3" / "best.pt"
    cut = tmp_path / "broken.pt"
    cut.write_bytes(shipped.read_bytes()[:5000])
    args = {"cut": ["--init", str(cut)], "nowhere.pt": ["--init", str(tmp_path / "nowhere.pt")],
            "resnet18": ["--init", str(shipped), "--arch", "resnet18"]}[init]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", "builtin:70", "--epochs", "1",
                 "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_a_failure_after_the_folder_is_made_is_a_failed_run(tmp_path, monkeypatch):
    from fer_core.errors import FerError
    from fer_core.training import trainer

    def fail(*_args, **_kwargs):
        raise FerError("the optimizer could not be made")

    monkeypatch.setattr(trainer, "make_optimizer", fail)
    out = tmp_path / "run"
    with pytest.raises(FerError):
        train(TrainConfig(epochs=1, device="cpu"), out, load_dataset("builtin:70"))
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == "the optimizer could not be made"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_training_gracefully(tmp_path, sig):
    out = tmp_path / "signalled"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "fer_core", "train", "--data", "builtin:300",
                             "--epochs", "50", "--batch-size", "16", "--log-every", "1",
                             "--out", str(out)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not _has_step(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _has_step(out), "the trainer logged no step"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1].startswith("stopped:")
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped"
    progress = torch.load(out / "last.pt", weights_only=True)["training_state"]["progress"]
    assert progress is None or progress["step"] >= 1


def _has_step(out: Path) -> bool:
    history = out / "history.jsonl"
    return history.exists() and '"kind": "step"' in history.read_text()


# ---- evaluate: ranked pairs, the checkpoint's own data, TTA ----------------------------------

@pytest.fixture(scope="module")
def builtin300_run(tmp_path_factory):
    """A run trained on 'builtin:300', so `evaluate` can find its data from the checkpoint."""
    out = tmp_path_factory.mktemp("runs") / "builtin300"
    train(TrainConfig(data="builtin:300", epochs=1, batch_size=32), out,
          load_dataset("builtin:300"))
    return out


def test_evaluate_json_ranks_confused_pairs_by_count(trained_run, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "builtin:210",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    matrix, pairs = metrics["confusion_matrix"], metrics["pairs"]
    cells = {(t, p) for t in range(7) for p in range(7) if t != p and matrix[t][p] > 0}
    assert pairs and {(pair["true"], pair["pred"]) for pair in pairs} == cells
    assert [(-pair["count"], pair["true"], pair["pred"]) for pair in pairs] == \
        sorted((-matrix[t][p], t, p) for t, p in cells)
    for pair in pairs:
        t, p = pair["true"], pair["pred"]
        assert pair["count"] == matrix[t][p] and pair["share"] == pytest.approx(
            matrix[t][p] / sum(matrix[t]))
        assert (pair["true_name"], pair["pred_name"]) == (CLASSES[t], CLASSES[p])
    assert 0 <= metrics["balanced_accuracy"] <= 1
    report = printed[printed.index("most confused pairs"):].splitlines()[1:]
    assert len(report) == min(5, len(pairs))
    for line, pair in zip(report, pairs):
        assert line.split()[:4] == [pair["true_name"], "->", pair["pred_name"], str(pair["count"])]


def test_evaluate_without_data_scores_the_checkpoints_own_data(builtin300_run, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(builtin300_run), "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(out_json.read_text())
    assert metrics["data"] == "builtin:300" and metrics["split"] == "val"
    assert metrics["n"] == len(load_dataset("builtin:300").indices("val"))
    assert "on builtin:300, split val" in captured.out
    assert captured.err == ""  # the same data: no fingerprint warning


def test_evaluate_refuses_a_training_data_path_missing_here(builtin300_run, tmp_path, capsys):
    payload = torch.load(builtin300_run / "best.pt", weights_only=True)
    payload["config"]["data"] = "/nonexistent/fer2013.csv"
    moved = tmp_path / "moved.pt"
    save_atomic(payload, moved)
    assert main(["evaluate", "--checkpoint", str(moved)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "/nonexistent/fer2013.csv" in err and "--data" in err


def test_evaluate_on_other_data_warns_in_one_line(trained_run, capsys):
    # trained_run learnt builtin faces drawn with seed 3; 'builtin:210' draws them with seed 0
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "builtin:210"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: ") and "\n" not in err and "fingerprint" in err


def test_evaluate_with_tta_reports_both_accuracies(trained_run, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "builtin:210",
                 "--tta", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    tta = metrics["tta"]
    assert tta["n"] == metrics["n"] and {"accuracy", "confusion_matrix", "pairs"} <= tta.keys()
    assert (f"with test-time augmentation (flip and shifts): accuracy = {tta['accuracy']:.4f} "
            f"(without: {metrics['accuracy']:.4f})") in printed


# ---- evaluate: tasks other than FER2013's -----------------------------------------------------

@pytest.fixture
def raf_data(monkeypatch, tiny_faces):
    """`--data raf` reads the tiny faces in colour at 64 pixels with RAF-DB's class names (until
    a reader of such trees exists)."""
    raf = in_other_task(tiny_faces)
    real = readers.load_dataset
    monkeypatch.setattr(readers, "load_dataset",
                        lambda spec, **kw: raf if spec == "raf" else real(spec, **kw))
    return raf


def test_evaluate_names_the_classes_of_the_checkpoint_s_task(raf_data, tmp_path, capsys):
    source = tmp_path / "raf.pt"
    save_atomic(make_payload(build_model("cnn3", raf_data.task), arch="cnn3", arch_options={},
                             task=raf_data.task, dataset={}, epoch=1, metrics={}, config={}),
                source)
    out_json = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(source), "--data", "raf",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("task: 7 classes, 64x64 colour: surprise, fear, disgust") == 1
    metrics = json.loads(out_json.read_text())
    assert metrics["classes"] == list(metrics["per_class"]) == list(RAF_DB_NAMES)
    assert len(metrics["confusion_matrix"]) == 7 and all(len(r) == 7
                                                         for r in metrics["confusion_matrix"])
    header = printed.splitlines()[printed.splitlines().index(
        "confusion matrix (rows = true class, columns = predicted)") + 1]
    assert header.split() == [name[:8] for name in RAF_DB_NAMES]


def test_evaluate_of_a_checkpoint_on_data_of_another_task_matches_classes_by_name(
        trained_run, raf_data, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "raf", "--json",
                 str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["classes"] == list(CLASSES)
    assert metrics["notes"] == ["the data's classes matched to the model's by name",
                                "faces converted from 64x64 colour to the model's 48x48 grey"]
    val = raf_data.labels[raf_data.indices("val")]
    expected = {CLASSES[k]: int((val == RAF_DB_NAMES.index(name)).sum())
                for k, name in enumerate(("anger", "disgust", "fear", "happiness", "sadness",
                                          "surprise", "neutral"))}
    assert {c: row["support"] for c, row in metrics["per_class"].items()} == expected
