"""The memory keys (`dashboard.common.keys.memo_key`): a file's part changes when the file is
rewritten and not otherwise, a dataset is its fingerprint, and a checkpoint is its file."""

import os
from pathlib import Path
from types import SimpleNamespace

from dashboard.common.keys import disk_version, memo_key
from fer_core.data.readers import load_dataset
from fer_core.models.checkpoint import Checkpoint


def test_a_file_s_part_follows_its_version_on_disk(tmp_path):
    file = tmp_path / "best.pt"
    file.write_bytes(b"weights")
    first = memo_key(file, "val", 3)
    assert first == ((str(file), disk_version(file)), "val", 3)
    assert memo_key(file, "val", 3) == first
    file.write_bytes(b"other weights")
    os.utime(file, ns=(1, 1))
    assert memo_key(file, "val", 3) != first
    assert memo_key(tmp_path / "missing.pt") == ((str(tmp_path / "missing.pt"), None),)


def test_a_dataset_is_its_fingerprint_and_a_checkpoint_its_file(tmp_path):
    dataset = load_dataset("builtin:70")
    file = tmp_path / "best.pt"
    file.write_bytes(b"weights")
    ckpt = Checkpoint(model=None, meta={}, path=file)
    assert memo_key(ckpt, dataset, "val") == memo_key(file, dataset, "val")
    assert memo_key(dataset) == (dataset.fingerprint,)
    snapshots = [SimpleNamespace(epoch=2, path=str(file))]
    assert memo_key(tuple((s.epoch, Path(s.path)) for s in snapshots)) == (
        ((2, (str(file), disk_version(file))),),)
