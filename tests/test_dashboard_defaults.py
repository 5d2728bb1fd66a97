"""The sidebar's default checkpoint fits the dataset shown (the FER2013 model for FER2013 data,
ResNet18 where a GPU computes, cnn3 elsewhere; the built-in model for built-in faces) until the
user picks one, and a checkpoint trained on the other kind of data gets a visible note."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard import sidebar as sidebar_module
from dashboard.common.runs import RunInfo

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture
def mixed_root(dashboard_checkpoints, tmp_path, monkeypatch):
    """tiny-a (built-in faces) and 'fer2013-cnn3', a copy whose config says FER2013."""
    root = tmp_path / "checkpoints"
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "tiny-a")
    shutil.copytree(dashboard_checkpoints / "tiny-a", root / "fer2013-cnn3")
    config = root / "fer2013-cnn3" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "data": "/data/fer2013.csv"}))
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(root))
    monkeypatch.delenv("FER_DATA", raising=False)
    return root


@pytest.fixture
def kaggle_csv(tmp_path) -> str:
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for i in range(28):
        pixels = " ".join(map(str, rng.integers(0, 256, 2304)))
        rows.append(f"{i % 7},{pixels},{'Training' if i < 21 else 'PublicTest'}")
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def sidebar(data: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"data": data, **query})
    return at.run()


def warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.sidebar.warning]


def test_fer2013_data_defaults_to_the_fer2013_model(mixed_root, kaggle_csv):
    at = sidebar(kaggle_csv)
    assert not at.exception
    assert at.sidebar.selectbox(key="ckpt").value == "fer2013-cnn3"
    assert at.query_params["run"] == "fer2013-cnn3"
    assert not warnings(at)


def test_builtin_data_defaults_to_a_builtin_model(mixed_root):
    at = sidebar("builtin:300")
    assert at.sidebar.selectbox(key="ckpt").value == "tiny-a"
    assert not warnings(at)


def test_the_default_follows_the_data_until_the_user_picks(mixed_root, kaggle_csv):
    at = sidebar("builtin:300")
    at.sidebar.radio(key="data_kind").set_value("Dataset path").run()
    at.sidebar.text_input(key="data_path").input(kaggle_csv).run()
    assert at.sidebar.selectbox(key="ckpt").value == "fer2013-cnn3"
    at.sidebar.selectbox(key="ckpt").select("tiny-a").run()  # the user's pick stays
    assert at.sidebar.selectbox(key="ckpt").value == "tiny-a"
    assert any("trained on the built-in synthetic faces" in w for w in warnings(at))


def test_a_checkpoint_from_the_url_is_kept_and_noted_when_it_does_not_fit(mixed_root):
    at = sidebar("builtin:300", run="fer2013-cnn3")
    assert at.sidebar.selectbox(key="ckpt").value == "fer2013-cnn3"
    assert any("trained on real FER2013 photos" in w for w in warnings(at))


FER = "/data/fer2013.csv"


def runs(*names: str) -> dict[str, RunInfo]:
    """Finished runs; those called builtin-* trained on the built-in faces, the rest on FER2013."""
    data = {n: "builtin:300" if n.startswith("builtin") else FER for n in names}
    return {n: RunInfo(n, Path(n), "done", "cnn3", data[n], 1, 1, 0.5, None, None, True)
            for n in names}


@pytest.mark.parametrize("gpu", ["cuda", "mps"])
def test_fer2013_data_on_a_gpu_defaults_to_resnet18(gpu):
    found = runs("builtin-cnn3", "fer2013-cnn3", "fer2013-resnet18")
    assert sidebar_module.default_run(found, FER, gpu) == "fer2013-resnet18"


def test_fer2013_data_on_a_cpu_defaults_to_cnn3():
    found = runs("fer2013-resnet18", "fer2013-cnn3")
    assert sidebar_module.default_run(found, FER, "cpu") == "fer2013-cnn3"


def test_fer2013_data_on_a_gpu_without_resnet18_defaults_to_cnn3():
    found = runs("builtin-cnn3", "fer2013-other", "fer2013-cnn3")
    assert sidebar_module.default_run(found, FER, "cuda") == "fer2013-cnn3"


def test_builtin_data_on_a_gpu_defaults_to_builtin_cnn3():
    found = runs("fer2013-resnet18", "fer2013-cnn3", "builtin-cnn3")
    assert sidebar_module.default_run(found, "builtin:300", "cuda") == "builtin-cnn3"


def test_the_sidebar_picks_resnet18_on_the_dashboards_gpu(mixed_root, kaggle_csv, monkeypatch):
    shutil.copytree(mixed_root / "fer2013-cnn3", mixed_root / "fer2013-resnet18")
    monkeypatch.setattr(sidebar_module, "device", lambda: torch.device("cuda"))
    at = sidebar(kaggle_csv)
    assert not at.exception
    assert at.sidebar.selectbox(key="ckpt").value == "fer2013-resnet18"
