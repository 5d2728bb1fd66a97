"""What a visitor can make the readers do: errors never quote a file's content; only regular
files are read, within a size limit that also bounds what gzip inflates to; FER_DATA_ROOTS keeps
paths inside the allowed folders without telling whether a path exists; builtin:N is bounded;
the source stamp changes when any image inside a folder changes."""

import gzip
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.data import files
from fer_core.data.readers import load_dataset, source_stamp
from fer_core.errors import DataError

SECRET = "s3cr3t-Pa55w0rd"
PIXELS = " ".join(["7"] * 2304)


def message(path) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(path, use_cache=False)
    text = str(caught.value)
    assert "\n" not in text
    return text


def message_within(seconds: float, path, fifo: Path) -> str:
    """`message(path)`, failing when the reader blocks on `fifo` (then released with an EOF)."""
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(text=message(path)), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY))  # the blocked reader sees end of file
        worker.join()
        pytest.fail(f"reading {path} blocked on the FIFO")
    return outcome["text"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def save_face(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48), value, np.uint8)).save(path)


# ---- no content in messages -------------------------------------------------------------------

def test_a_text_file_is_named_and_described_never_quoted(tmp_path):
    path = write(tmp_path / "passwd", f"root:x:0:0:{SECRET}:/root:/bin/bash\n")
    text = message(path)
    assert SECRET not in text and "root:x" not in text
    assert str(path) in text and "emotion,pixels,Usage" in text
    assert "a text file whose first line is not a FER2013 header" in text


def test_a_binary_file_is_described_as_binary(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01" + SECRET.encode() + b"\xff\xfe\n")
    text = message(path)
    assert SECRET not in text and "binary" in text


@pytest.mark.parametrize("row, problem", [
    (f"{SECRET},{PIXELS},Training", "label is not an integer 0-6 (found text)"),
    (f"0,{PIXELS},{SECRET}", "Usage is not Training, PublicTest or PrivateTest (found text)"),
    (f"0,{PIXELS[:-1]}{SECRET},Training", "pixel 2304 is not a number"),
])
def test_values_after_a_fer_header_are_described_not_quoted(tmp_path, row, problem):
    text = message(write(tmp_path / "faces.csv", f"emotion,pixels,Usage\n{row}\n"))
    assert SECRET not in text and f"faces.csv line 2: {problem}" in text


# ---- what is read -----------------------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert "a FIFO, not a regular file" in message_within(5, fifo, fifo)


@pytest.mark.parametrize("path, kind", [("/dev/zero", "under /dev"),
                                        ("/proc/self/environ", "under /proc")])
def test_system_files_are_refused(path, kind):
    if not Path(path).exists():
        pytest.skip(f"{path} is not on this system")
    text = message(path)
    assert kind in text and "not a dataset" in text


def test_a_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_DATA_BYTES", 1000)
    path = write(tmp_path / "big.csv", "emotion,pixels,Usage\n" + "0" * 2000)
    assert "larger than the 1,000-byte limit" in message(path)


def test_gzip_output_is_bounded_too(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_DATA_BYTES", 100_000)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"emotion,pixels,Usage\n" + b"0" * 10_000_000))
    assert path.stat().st_size < 100_000
    assert "inflates to more than the 100,000-byte limit" in message(path)


def test_each_image_of_a_folder_is_bounded_by_the_same_limit(tmp_path, monkeypatch):
    for k in range(3):
        save_face(tmp_path / "train" / "happy" / f"{k}.png", k)
    sizes = sorted(p.stat().st_size for p in tmp_path.rglob("*.png"))
    monkeypatch.setattr(files, "MAX_DATA_BYTES", sizes[-1] - 1)
    dataset = load_dataset(tmp_path, use_cache=False)
    assert len(dataset) == sum(s < sizes[-1] for s in sizes)
    assert f"limit for data" in dataset.notes[0]


def test_a_fifo_inside_an_image_folder_is_skipped_and_named_without_blocking(tmp_path):
    save_face(tmp_path / "train" / "sad" / "a.png")
    os.mkfifo(tmp_path / "train" / "sad" / "b.png")
    done = []
    reader = threading.Thread(target=lambda: done.append(load_dataset(tmp_path, use_cache=False)),
                              daemon=True)
    reader.start()
    reader.join(5)
    assert done and len(done[0]) == 1
    assert done[0].notes == ("1 image file(s) skipped: train/sad/b.png (a FIFO, not a regular "
                             "file)",)


def test_a_path_with_a_nul_byte_is_a_data_error():
    assert "not a valid path" in message("faces\0.csv")


# ---- FER_DATA_ROOTS ---------------------------------------------------------------------------

def test_paths_outside_the_data_roots_are_refused_alike_whether_or_not_they_exist(
        tmp_path, monkeypatch):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    save_face(allowed / "train" / "happy" / "a.png")
    other.mkdir()
    write(other / "real.csv", "emotion,pixels,Usage\n")
    (allowed / "link.csv").symlink_to(other / "real.csv")
    monkeypatch.setenv("FER_DATA_ROOTS", os.pathsep.join([str(allowed), "/nowhere"]))
    assert len(load_dataset(allowed, use_cache=False)) == 1
    refusals = {}
    for path in (other / "real.csv", other / "missing.csv", allowed / "link.csv", "/etc/passwd"):
        refusals[path] = message(path).removeprefix(str(path))
    assert len(set(refusals.values())) == 1, refusals
    assert "outside the data folders this server reads (FER_DATA_ROOTS:" in refusals["/etc/passwd"]
    assert source_stamp(other / "real.csv") is None


# ---- builtin:N --------------------------------------------------------------------------------

def test_builtin_counts_are_bounded(monkeypatch):
    import fer_core.data.builtin

    monkeypatch.setattr(fer_core.data.builtin, "make_builtin_faces", lambda n, seed: n)
    assert load_dataset("builtin:100000") == 100_000
    for spec in ("builtin:100001", "builtin:50000000", "builtin:0"):
        assert "N from 1 to 100,000" in message(spec)


# ---- the source stamp -------------------------------------------------------------------------

def test_the_stamp_of_a_folder_changes_when_any_image_inside_changes(tmp_path):
    image = tmp_path / "train" / "happy" / "a.png"
    save_face(image)
    save_face(tmp_path / "test" / "sad" / "b.png")
    before = source_stamp(tmp_path)
    assert before is not None and source_stamp(tmp_path) == before
    save_face(image, 200)  # same name, new content
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert source_stamp(tmp_path) != before
    changed = source_stamp(tmp_path)
    save_face(tmp_path / "test" / "sad" / "c.png")
    assert source_stamp(tmp_path) not in (before, changed)


def test_the_stamp_reads_no_file(tmp_path, monkeypatch):
    save_face(tmp_path / "train" / "happy" / "a.png")
    monkeypatch.setattr(files, "read_file", lambda *a, **k: pytest.fail("a file was read"))
    monkeypatch.setattr(Path, "read_bytes", lambda *a: pytest.fail("a file was read"))
    assert source_stamp(tmp_path) is not None
    assert source_stamp("builtin:300") is None
    assert source_stamp(tmp_path / "missing.csv") is None
