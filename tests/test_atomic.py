"""fer_core.atomic: a target holds its old content or the new, never part of it, and no temporary
file is left behind; a cache entry that cannot be written only warns."""

import json

import numpy as np
import pytest

from fer_core import atomic, cache


def test_the_content_takes_the_targets_place_and_nothing_else_is_left(tmp_path):
    target = tmp_path / "status.json"
    target.write_text("old")
    atomic.write_json(target, {"state": "running", "epoch": 3})
    assert target.read_text() == json.dumps({"state": "running", "epoch": 3}, indent=2)
    atomic.write_text(target, "text\n")
    assert target.read_text() == "text\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic.atomic_file(target, "wb") as f:
            f.write(b"half of the new")
            raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_a_failed_cache_write_only_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.warns(UserWarning, match="could not write cache entry"):
        cache.save_arrays("entry", {"a": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []
