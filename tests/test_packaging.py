"""Installable like the tools users know: `pip install .` gives `fer` and `fer-dashboard`, the
shipped runs travel with the package, and the dashboard keeps its serving settings when started
outside the checkout."""

import fnmatch
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from dashboard import serve
from dashboard.common import paths, runs
from fer_core.atomic import write_json

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SHIPPED = ("builtin-cnn3", "fer2013-cnn3")


def test_every_package_of_the_two_trees_is_installed():
    packages = {".".join(init.parent.relative_to(ROOT).parts)
                for top in ("fer_core", "dashboard") for init in (ROOT / top).rglob("__init__.py")}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == packages | {"dashboard.checkpoints"}


def test_every_file_of_the_shipped_runs_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["dashboard.checkpoints"]
    files = [path.relative_to(ROOT / "checkpoints").as_posix()
             for run in SHIPPED for path in (ROOT / "checkpoints" / run).iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


def test_the_command_passes_the_settings_of_the_checkouts_config():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    for name, value in serve.SERVING.items():
        section, key = name.split(".")
        if name != "server.fileWatcherType":  # "auto" reloads edited code in a checkout
            assert config[section][key] == value, name
    assert set(serve.SERVING) == {f"{s}.{k}" for s, table in config.items() for k in table}


def test_streamlit_settings_go_to_streamlit_and_the_rest_to_the_app():
    command = serve.streamlit_command(["--data", "faces.csv", "--server.port", "8502",
                                       "--server.address=0.0.0.0"])
    flags, app_args = command[:command.index("--")], command[command.index("--") + 1:]
    assert flags[:3] == ["streamlit", "run", str(ROOT / "dashboard" / "app.py")]
    assert "--server.address=0.0.0.0" in flags and "--server.address=localhost" not in flags
    assert "--server.port=8502" in flags and "--runner.postScriptGC=false" in flags
    assert app_args == ["--data", "faces.csv"]


def test_the_commands_are_installed():
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts["fer"] == "fer_core.cli.main:main"
    assert scripts["fer-dashboard"] == "dashboard.serve:main"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_fer_dashboard_serves_from_another_folder_on_localhost(tmp_path):
    port = free_port()
    command = [str(Path(sys.executable).parent / "fer-dashboard"), f"--server.port={port}"]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_health(port, server) == b"ok"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    # Bound to every interface, Streamlit says "Local URL: ..." (and "Network URL: ...").
    lines = [line.strip() for line in output.splitlines()]
    assert f"URL: http://localhost:{port}" in lines and not any("Local URL" in x for x in lines)


def wait_for_health(port: int, server: subprocess.Popen, seconds: float = 60) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no health answer on port {port} (exit code {server.poll()})")


def test_fer_runs_from_another_folder_and_names_itself(tmp_path):
    fer = str(Path(sys.executable).parent / "fer")
    result = subprocess.run([fer, "data"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "layout: builtin" in result.stdout
    result = subprocess.run([fer, "evaluate"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("fer evaluate: error: ")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The paths of an installed copy: shipped runs inside the package, the user in tmp_path."""
    monkeypatch.setattr(paths, "IN_CHECKOUT", False)
    monkeypatch.setattr(paths, "PACKAGED_RUNS", tmp_path / "site" / "dashboard" / "checkpoints")
    monkeypatch.delenv("FER_CHECKPOINTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_run(folder: Path, epoch: int) -> None:
    folder.mkdir(parents=True)
    write_json(folder / "status.json", {"state": "finished", "epoch": epoch})


def test_an_installed_copy_lists_the_shipped_runs_and_trains_into_the_working_folder(installed):
    make_run(paths.PACKAGED_RUNS / "builtin-cnn3", epoch=24)
    assert paths.checkpoints_root() == installed / "checkpoints"
    assert [r.name for r in runs.all_runs()] == ["builtin-cnn3"]
    assert paths.run_path("builtin-cnn3") == paths.PACKAGED_RUNS / "builtin-cnn3"
    make_run(installed / "checkpoints" / "builtin-cnn3", epoch=3)
    assert [r.epoch for r in runs.all_runs()] == [3]  # the user's run of that name wins
    assert paths.run_path("builtin-cnn3") == installed / "checkpoints" / "builtin-cnn3"


def test_a_checkout_keeps_its_runs_in_checkpoints(monkeypatch):
    monkeypatch.delenv("FER_CHECKPOINTS_DIR", raising=False)
    assert paths.IN_CHECKOUT and paths.run_roots() == [ROOT / "checkpoints"]
    assert {"builtin-cnn3", "fer2013-cnn3"} <= {r.name for r in runs.all_runs()}
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", os.fspath(ROOT / "tests"))
    assert paths.run_roots() == [ROOT / "tests"]
