"""Every command on a colour class-folder tree with RAF-DB's emotion names (the issue's "done
when", at 64 px to stay fast), and a FER2013-task model on that tree: classes matched by name,
faces converted, the classes the model lacks left out."""

import json

import numpy as np
import pytest
from dataset_helpers import RAF_DB_NAMES, in_other_task
from PIL import Image
from test_tree_reader import write_tree

from fer_core.cli.main import main
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.classes import CLASSES
from fer_core.models.checkpoint import load_checkpoint

SHIPPED = "checkpoints/builtin-cnn3"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("raf")
    write_tree(root, in_other_task(make_builtin_faces(n=140, seed=4), size=64), suffix=".jpg")
    return root


@pytest.fixture(scope="module")
def run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "raf"
    assert main(["train", "--data", str(tree), "--epochs", "1", "--batch-size", "32",
                 "--snapshots", "1", "--probes", "2", "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_train_builds_a_colour_model_for_the_tree(run):
    ckpt = load_checkpoint(run)
    assert ckpt.task.classes == tuple(sorted(RAF_DB_NAMES))
    assert ckpt.task.shape == (3, 64, 64)
    assert ckpt.model.block1.conv.in_channels == 3


def test_each_command_works_on_the_run_and_its_tree(run, tree, tmp_path, capsys):
    face = ["--data", str(tree), "--split", "val", "--index", "0"]
    commands = [
        ["evaluate", "--checkpoint", str(run), "--json", str(tmp_path / "eval.json")],
        ["explain", "--checkpoint", str(run), *face, "--method", "gradcam",
         "--out", str(tmp_path / "explain.png")],
        ["export", "--checkpoint", str(run), "--methods", "vanilla",
         "--out", str(tmp_path / "export")],
        ["embed", "--checkpoint", str(run), "--out", str(tmp_path / "embed.csv")],
        ["visualize", "--checkpoint", str(run), "--layer", "block1.conv", "--filters", "0-1",
         "--steps", "2", "--out", str(tmp_path / "filters.png")],
        ["influence", "--checkpoint", str(run), "--data", str(tree), "--index", "0",
         "--top", "2"],
        ["timeline", "--checkpoint", str(run), *face, "--out", str(tmp_path / "timeline.png")],
    ]
    for command in commands:
        assert main(command) == 0, (command, capsys.readouterr().err)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["classes"] == sorted(RAF_DB_NAMES) and report["notes"] == []
    assert Image.open(tmp_path / "explain.png").mode == "RGB"


def test_a_fer2013_model_on_the_tree_matches_names_and_converts_faces(tree, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", SHIPPED, "--data", str(tree), "--split", "test",
                 "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: faces converted from 64x64 colour to the model's 48x48 grey" in err
    report = json.loads(out.read_text())
    assert report["classes"] == list(CLASSES)
    matrix = np.array(report["confusion_matrix"])
    support = {name: row["support"] for name, row in report["per_class"].items()}
    raf_test = sum(1 for p in tree.glob("test/*/*"))
    assert matrix.sum() == report["n"] == raf_test == sum(support.values())
    counts = {name: len(list(tree.glob(f"test/{name}/*"))) for name in RAF_DB_NAMES}
    assert support["Happy"] == counts["happiness"] and support["Angry"] == counts["anger"]


def test_classes_the_model_lacks_are_left_out_and_said_once(tree, tmp_path, capsys):
    contempt = tree.parent / "with_contempt"
    write_tree(contempt, in_other_task(make_builtin_faces(n=70, seed=6), size=64))
    for top in ("train", "test"):
        (contempt / top / "surprise").rename(contempt / top / "contempt")
    assert main(["evaluate", "--checkpoint", SHIPPED, "--data", str(contempt), "--split",
                 "test"]) == 0
    err = capsys.readouterr().err
    assert err.count("classes only the data has: contempt") == 1
    assert "face(s) of classes the model lacks left out" in err


def test_a_model_and_data_sharing_no_class_is_one_line_exit_2(tmp_path, capsys):
    pets = tmp_path / "pets"
    for name in ("cat", "dog"):
        (pets / "test" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (200, 10, 10)).save(pets / "test" / name / "a.png")
    assert main(["evaluate", "--checkpoint", SHIPPED, "--data", str(pets), "--split",
                 "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "share none" in err


def test_the_run_s_own_tree_named_again_is_read_as_the_run_read_it(tree, tmp_path, capsys):
    out = tmp_path / "small"
    assert main(["train", "--data", str(tree), "--size", "32", "--epochs", "1", "--batch-size",
                 "32", "--snapshots", "0", "--probes", "0", "--device", "cpu",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["embed", "--checkpoint", str(out), "--data", f"{tree}/", "--out",
                 str(tmp_path / "a.csv")]) == 0
    assert "converted" not in capsys.readouterr().err
    assert main(["embed", "--checkpoint", str(out), "--data", str(tree), "--size", "64",
                 "--out", str(tmp_path / "b.csv")]) == 0
    assert "faces converted from 64x64 colour to the model's 32x32 colour" in \
        capsys.readouterr().err
