"""`python -m fer_core explain`: prediction, PNG and JSON for a dataset face or a photo; bad
input exits 2 with one line and writes nothing."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import RAF_DB_NAMES
from explain_helpers import untrained_checkpoint
from PIL import Image

from fer_core.explain.settings import METHOD_KEYS
from fer_core.cli.main import main
from fer_core.data.task import FER2013, Task
from fer_core.explain.attribution import METHODS

CLASSES = FER2013.classes
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "builtin-cnn3"
DATA = "builtin:100"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from skimage.data import astronaut

    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(astronaut()).save(path, quality=90)
    return path


def explain(*args) -> int:
    try:
        return main(["explain", "--checkpoint", str(SHIPPED), *map(str, args)])
    except SystemExit as e:  # a usage error, from argparse
        return e.code


def test_the_method_list_is_the_engines():
    assert list(METHOD_KEYS) == list(METHODS)


def test_a_dataset_face_gives_prediction_png_and_json(tmp_path, capsys):
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    assert explain("--data", DATA, "--split", "val", "--index", 3, "--method", "ig",
                   "--param", "steps=8", "--target", "true", "--out", out, "--json", report) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("predicted: ") and "(true class " in printed
    assert all(f"  {name:<9} " in printed for name in CLASSES)
    data = json.loads(report.read_text())
    assert data["pred"] in CLASSES and data["method"] == "ig" and data["face_box"] is None
    assert len(data["probs"]) == 7 and abs(sum(data["probs"]) - 1) < 1e-5
    assert data["target"] == data["true"] and data["params"] == {"steps": 8,
                                                                 "baseline": "black"}
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 3 * picture.height // 2


def test_a_photo_gives_its_face_box(tmp_path, photo, capsys):
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    assert explain("--image", photo, "--method", "gradcam", "--target", "Happy-Sad",
                   "--out", out, "--json", report) == 0
    data = json.loads(report.read_text())
    x, y, w, h = data["face_box"]
    assert 120 < x < 260 and 20 < y < 140 and 60 < w < 200
    assert data["target"] == "Happy - Sad" and data["params"]["layer"] == "block3.relu"


def test_a_photo_without_a_face_uses_the_centre_crop(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("L", (120, 80), 128).save(blank)
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    assert explain("--image", blank, "--out", out, "--json", report) == 0
    assert "no face found" in capsys.readouterr().err
    assert json.loads(report.read_text())["face_box"] is None


def test_without_face_finding_a_photo_uses_the_centre_crop_with_one_warning(
        tmp_path, photo, capsys, opencv_without_cascades):
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    assert explain("--image", photo, "--out", out, "--json", report) == 0
    err = capsys.readouterr().err
    why = [line for line in err.splitlines() if "face finding is unavailable" in line]
    assert len(why) == 1 and "OpenCV 5.0.0 has no Haar cascades" in why[0], err
    assert "centre crop" in why[0] and "Traceback" not in err
    assert json.loads(report.read_text())["face_box"] is None


def not_an_image(tmp_path) -> Path:
    path = tmp_path / "face.jpg"
    path.write_text("hello")
    return path


BAD = {
    "missing photo": lambda t: ["--image", t / "nope.jpg"],
    "not an image": lambda t: ["--image", not_an_image(t)],
    "unknown class": lambda t: ["--data", DATA, "--index", 0, "--target", "Joy"],
    "same classes": lambda t: ["--data", DATA, "--index", 0, "--target", "Sad-Sad"],
    "index too large": lambda t: ["--data", DATA, "--index", 10_000],
    "no index": lambda t: ["--data", DATA],
    "index with image": lambda t: ["--image", t / "x.jpg", "--index", 1],
    "parameter of another method": lambda t: ["--data", DATA, "--index", 0, "--param",
                                             "window=4"],
    "steps out of range": lambda t: ["--data", DATA, "--index", 0, "--method", "ig",
                                     "--param", "steps=0"],
    "no such layer": lambda t: ["--data", DATA, "--index", 0, "--method", "gradcam",
                                "--param", "layer=head.fc"],
    "parameter of a method not chosen": lambda t: ["--data", DATA, "--index", 0, "--param",
                                                   "ig.steps=8"],
    "malformed parameter": lambda t: ["--data", DATA, "--index", 0, "--method", "ig",
                                      "--param", "steps"],
    "unknown method": lambda t: ["--data", DATA, "--index", 0, "--method", "lime"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    code = explain(*BAD[case](tmp_path), "--out", out, "--json", report)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".json")) == []


@pytest.mark.parametrize("out", ["map.jpg", "missing/map.png"])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, out):
    assert explain("--data", DATA, "--index", 0, "--out", tmp_path / out) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_true_target_for_a_photo_is_refused(tmp_path, photo, capsys):
    out = tmp_path / "map.png"
    assert explain("--image", photo, "--target", "true", "--out", out) == 2
    assert "unknown" in capsys.readouterr().err and not out.exists()


def test_the_data_command_imports_no_torch_captum_or_opencv():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "fer_core", "data",
                             "--data", "builtin:100"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")}
    assert "fer_core.cli.explain" in modules
    assert not modules & {"torch", "captum", "cv2", "matplotlib"}


def test_the_png_shows_face_map_and_overlay(tmp_path, capsys):
    out = tmp_path / "map.png"
    assert explain("--data", DATA, "--index", 1, "--method", "occlusion", "--param", "window=12",
                   "--out", out) == 0
    picture = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"), dtype=int)
    third = (picture.shape[1] + 4) // 3
    face_tile, map_tile = picture[20:, :third - 4], picture[20:, third:2 * third - 4]
    assert face_tile.std() > 0
    assert (face_tile == face_tile[..., :1]).all()       # the face is grey
    assert (map_tile != map_tile[..., :1]).any()         # the map is in colour


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> Path:
    """An untrained colour 64-pixel model of RAF-DB's seven classes, in RAF-DB's order."""
    return untrained_checkpoint(tmp_path_factory.mktemp("colour"), Task(RAF_DB_NAMES, 64, 3))


def test_a_colour_model_s_png_shows_the_face_in_colour_at_its_size(tmp_path, photo, colour_run,
                                                                    capsys):
    out, report = tmp_path / "map.png", tmp_path / "map.json"
    assert main(["explain", "--checkpoint", str(colour_run), "--image", str(photo), "--method",
                 "ig", "--param", "steps=4", "--target", "happiness-anger", "--out", str(out),
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["target"] == "happiness - anger" and data["pred"] in RAF_DB_NAMES
    assert len(data["probs"]) == 7
    printed = capsys.readouterr().out
    assert all(f"  {name:<9} " in printed for name in RAF_DB_NAMES)
    picture = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    side = 64 * 4  # the face at the model's size, zoomed 4 times
    assert picture.shape[:2] == (side + 18, 3 * side + 8)
    face_tile = picture[18:, :side]
    assert (face_tile != face_tile[..., :1]).any()       # the face is in colour
    overlay = picture[18:, 2 * side + 8:]
    assert overlay.std() > 0


def test_a_colour_model_explains_grey_data_converted_and_matched_by_name(tmp_path, colour_run,
                                                                          capsys):
    out = tmp_path / "map.png"
    assert main(["explain", "--checkpoint", str(colour_run), "--data", DATA, "--index", "0",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: the data's classes matched to the model's by name" in err
    assert "note: faces converted from 48x48 grey to the model's 64x64 colour" in err
    assert Image.open(out).mode == "RGB"
