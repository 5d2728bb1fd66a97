"""Shared fixtures: every test writes its caches and runs under pytest's temporary folders."""

import pytest
from apptest_helpers import serve


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("fer_cache")))
    monkeypatch.setenv("FER_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_faces():
    """A small built-in set (about 8 faces per class per split) for fast training tests."""
    from fer_core.data.builtin import make_builtin_faces

    return make_builtin_faces(n=210, seed=3)


# ---- dashboard ---------------------------------------------------------------------------------

def _kill_trainers(root):
    """End the trainer processes the dashboard launched into run folders under `root`: only a
    live process whose command line names that folder (a pid may have been reused)."""
    import json
    import os
    import signal
    from pathlib import Path

    for launch in Path(root).glob("*/launch.json"):
        try:
            pid = json.loads(launch.read_text())["pid"]
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, KeyError):
            continue
        if str(launch.parent).encode() in command:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="session")
def dashboard_checkpoints(tmp_path_factory, tiny_faces):
    """A checkpoints root holding two finished tiny runs, 'tiny-a' and its copy 'tiny-b'."""
    import shutil

    from fer_core.training.config import TrainConfig
    from fer_core.training.trainer import train

    root = tmp_path_factory.mktemp("dashboard_checkpoints")
    train(TrainConfig(epochs=1, batch_size=32, device="cpu"), root / "tiny-a", tiny_faces)
    shutil.copytree(root / "tiny-a", root / "tiny-b")
    return root


@pytest.fixture
def dashboard_root(dashboard_checkpoints, monkeypatch):
    """Point the dashboard at the shared tiny checkpoints (read-only use)."""
    return serve(monkeypatch, dashboard_checkpoints)


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    """An empty checkpoints root for tests that start trainers; they are killed at teardown."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    yield serve(monkeypatch, root)
    _kill_trainers(root)


# ---- face finding ------------------------------------------------------------------------------

@pytest.fixture
def fresh_face_finder():
    """`haar_cascade` forgets the cascade it loaded earlier in the session (it is cached), so that
    a test hiding parts of cv2 is seen; it is forgotten again afterwards."""
    from fer_core.data.photos import haar_cascade

    haar_cascade.cache_clear()
    yield
    haar_cascade.cache_clear()


@pytest.fixture
def opencv_without_cascades(monkeypatch, fresh_face_finder):
    """cv2 as the OpenCV 5 wheels ship it: no CascadeClassifier and no Haar cascade files."""
    import cv2

    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.delattr(cv2.data, "haarcascades")
