"""Shared fixtures: every test writes its caches and runs under pytest's temporary folders."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("fer_cache")))
    monkeypatch.setenv("FER_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_faces():
    """A small built-in set (about 8 faces per class per split) for fast training tests."""
    from fer_core.builtin import make_builtin_faces

    return make_builtin_faces(n=210, seed=3)
