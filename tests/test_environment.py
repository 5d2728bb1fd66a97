"""`python -m fer_core env` and the Home page say what this machine gives the project, and a
broken install (a torchvision built for another torch, a missing package, OpenCV 5) is one line
naming the fix: on the command line, on Home, and on a page that builds a ResNet."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from apptest_helpers import open_page

from fer_core import environment
from fer_core.cli.main import main
from fer_core.errors import FerError
from fer_core.models.architectures import build_model

ROOT = Path(__file__).resolve().parents[1]
MISMATCH = "operator torchvision::nms does not exist"
NAMES = ["Python", "torch", "torchvision", "streamlit", "captum", "OpenCV", "device",
         "face finding"]


class MismatchedTorchvision:
    """An import finder that fails every torchvision import as a torchvision built for another
    torch does (its `import torchvision` registers ops this torch lacks)."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError(MISMATCH)
        return None


@pytest.fixture
def broken_torchvision(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [MismatchedTorchvision(), *sys.meta_path])


def env(capsys) -> tuple[int, dict[str, str], list[str]]:
    """`python -m fer_core env` in this process: (exit status, facts by name, stderr lines)."""
    code = main(["env"])
    out, err = capsys.readouterr()
    facts = dict(line.split(":", 1) for line in out.splitlines())
    return code, {name: value.strip() for name, value in facts.items()}, err.splitlines()


def test_a_healthy_install_exits_0_and_lists_each_package(capsys):
    import captum
    import cv2
    import streamlit
    import torch
    import torchvision

    code, facts, err = env(capsys)
    assert (code, err) == (0, [])
    assert list(facts) == NAMES
    assert facts["Python"] == ".".join(map(str, sys.version_info[:3]))
    for name, module in (("torch", torch), ("streamlit", streamlit), ("captum", captum),
                         ("OpenCV", cv2)):
        assert facts[name] == module.__version__
    assert facts["torchvision"] == f"{torchvision.__version__}, its ops load"
    assert facts["device"].startswith("cpu: CPU (") and "GiB of memory" in facts["device"]
    assert facts["face finding"].startswith("available")


def test_a_torchvision_built_for_another_torch_exits_2_with_one_line(broken_torchvision,
                                                                      capsys):
    code, facts, err = env(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: torchvision ") and MISMATCH in err[0]
    assert 'pip install torch==' in err[0] and '"torchvision==0.' in err[0]
    assert facts["torchvision"].endswith(f"its ops do not load (RuntimeError: {MISMATCH})")
    assert facts["face finding"].startswith("available")  # the rest is still reported


def test_the_fix_names_the_torchvision_paired_with_the_installed_torch(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.9.1+cpu")
    versions = {"torchvision": "0.20.1"}
    monkeypatch.setattr(environment, "distribution_version", versions.get)
    assert environment.torchvision_problem(RuntimeError(MISMATCH)) == (
        f"torchvision 0.20.1 does not work with torch 2.9.1+cpu (RuntimeError: {MISMATCH}): "
        'install the torchvision release paired with torch: pip install torch==2.9.1 '
        '"torchvision==0.24.*"')
    versions["torchvision"] = environment.NOT_INSTALLED
    assert environment.torchvision_problem(ImportError("no")) == (
        'torchvision is not installed: pip install torch==2.9.1 "torchvision==0.24.*"')


def test_a_missing_package_is_one_line_naming_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "captum", None)
    code, facts, err = env(capsys)
    assert code == 2 and facts["captum"] == "not installed"
    assert err == ["error: captum is not installed: pip install captum"]


def test_without_torch_the_rest_is_still_reported(monkeypatch, capsys):
    import captum  # noqa: F401  (imported while torch is there: torch alone goes missing)

    monkeypatch.setitem(sys.modules, "torch", None)
    code, facts, err = env(capsys)
    assert code == 2 and err == ["error: torch is not installed: pip install torch"]
    assert facts["torchvision"] == facts["device"] == "not checked: torch does not import"
    assert list(facts) == NAMES


def test_opencv_without_cascades_is_one_line_naming_opencv_4(opencv_without_cascades, capsys):
    code, facts, err = env(capsys)
    assert code == 2 and facts["OpenCV"] == "5.0.0"
    assert err == ['error: face finding is unavailable: OpenCV 5.0.0 has no Haar cascades: '
                   'pip install "opencv-python-headless<5"']


def test_a_device_fer_device_names_but_this_machine_lacks_is_a_problem(monkeypatch, capsys):
    monkeypatch.setenv("FER_DEVICE", "tpu")
    code, _, err = env(capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: FER_DEVICE: ")


def test_building_a_resnet_without_a_working_torchvision_says_the_fix(broken_torchvision):
    with pytest.raises(FerError, match=r"paired with torch: pip install torch=="):
        build_model("resnet18")
    build_model("cnn3")


def test_env_in_a_real_process_exits_0_here():
    result = subprocess.run([sys.executable, "-m", "fer_core", "env"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == NAMES


def test_home_lists_the_environment_and_says_nothing_is_wrong(dashboard_root):
    at = open_page("views/home.py", data="builtin:300")
    table = next(d.value for d in at.dataframe if "version or state" in d.value.columns)
    assert list(table.iloc[:, 0]) == NAMES
    assert not at.error


def test_home_says_a_broken_torchvision_in_one_line(dashboard_root, broken_torchvision):
    at = open_page("views/home.py", data="builtin:300")
    assert len(at.error) == 1 and MISMATCH in at.error[0].value
    assert "pip install torch==" in at.error[0].value


def test_a_resnet_chosen_without_a_working_torchvision_is_one_line(dashboard_root,
                                                                  broken_torchvision):
    from dashboard.common import state

    state.architecture_table.clear()  # a table built earlier in the session would hide it
    at = open_page("views/model.py", data="builtin:300", arch="resnet18")
    assert [e.value for e in at.error] == [environment.torchvision_problem(RuntimeError(MISMATCH))]
