"""Dataset readers and the parsed-array cache, on tiny seeded files written per test.

conftest.py points FER_CACHE_DIR at a fresh temporary folder for every test.
"""

import gzip
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from fer_core import cache
from fer_core.data import readers
from fer_core.data.dataset import stratified_val_split
from fer_core.data.readers import load_dataset
from fer_core.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2
USAGE_NAMES = ("Training", "PublicTest", "PrivateTest")


def random_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 1, 48, 48), dtype=np.uint8)
    images[0, 0, 0, :4] = (0, 7, 42, 255)  # one-, two- and three-digit values and both extremes
    return images, rng.integers(0, 7, size=n).astype(np.int64)


def pixel_text(image: np.ndarray) -> str:
    return " ".join(map(str, image.ravel().tolist()))


def kaggle_text(images, labels, splits, newline="\n") -> str:
    rows = ["emotion,pixels,Usage"]
    rows += [f"{y},{pixel_text(x)},{USAGE_NAMES[s]}" for x, y, s in zip(images, labels, splits)]
    return newline.join(rows) + newline


def write(path: Path, text: str, compress: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def kaggle_file(tmp_path: Path, name: str = "faces.csv", n: int = 21, compress: bool = False):
    images, labels = random_faces(n)
    splits = np.arange(n) % 3
    path = write(tmp_path / name, kaggle_text(images, labels, splits), compress)
    return path, images, labels, splits


def bad_kaggle_file(tmp_path: Path, line: int, replace) -> Path:
    """A 5-row Kaggle CSV whose given line (1 = header) is passed through `replace`."""
    images, labels = random_faces(5)
    rows = kaggle_text(images, labels, [TRAIN] * 5).splitlines()
    rows[line - 1] = replace(rows[line - 1])
    return write(tmp_path / "bad.csv", "\n".join(rows) + "\n")


# ------------------------------------------------------------------------------ Kaggle CSV


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_kaggle_csv_round_trips_values_labels_splits_and_sources(tmp_path, compress):
    name = "faces.csv.gz" if compress else "faces.csv"
    path, images, labels, splits = kaggle_file(tmp_path, name, compress=compress)
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.split_codes, splits)
    assert ds.sources.tolist() == [f"line {i}" for i in range(2, 23)]
    assert ds.sources.dtype.kind == "U"
    assert (ds.layout, ds.name) == ("kaggle-csv", str(path))
    assert ds.present_splits() == ["train", "val", "test"]
    assert ds.fingerprint == cache.file_fingerprint(path)  # val present: nothing carved


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    gzipped, images, _, _ = kaggle_file(tmp_path, "looks_plain.csv", compress=True)
    plain, _, _, _ = kaggle_file(tmp_path, "looks_gzipped.csv.gz", compress=False)
    np.testing.assert_array_equal(load_dataset(gzipped).images, images)
    np.testing.assert_array_equal(load_dataset(plain).images, images)


def test_lines_crossing_gzip_pieces_and_row_chunks_parse_the_same(tmp_path, monkeypatch):
    path, images, labels, _ = kaggle_file(tmp_path, "faces.csv.gz", n=40, compress=True)
    monkeypatch.setattr(readers, "_GZIP_PIECE", 999)
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 3)
    ds = load_dataset(path, use_cache=False)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.sources[-1] == "line 41"


def test_concatenated_gzip_members_are_all_read(tmp_path):
    images, labels = random_faces(6)
    text = kaggle_text(images, labels, [TRAIN, VAL, TEST] * 2)
    lines = text.splitlines(keepends=True)
    members = [gzip.compress("".join(part).encode()) for part in (lines[:4], lines[4:])]
    (tmp_path / "two.csv.gz").write_bytes(b"".join(members) + b"\0" * 8)
    np.testing.assert_array_equal(load_dataset(tmp_path / "two.csv.gz").images, images)


def test_crlf_line_ends_and_blank_lines_keep_line_numbers(tmp_path):
    images, labels = random_faces(3)
    rows = kaggle_text(images, labels, [TRAIN, VAL, TEST], newline="\r\n").split("\r\n")
    path = write(tmp_path / "crlf.csv", "\r\n".join(rows[:2] + ["", ""] + rows[2:]))
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.images, images)
    assert ds.sources.tolist() == ["line 2", "line 5", "line 6"]


def test_private_test_rows_alone_are_a_test_set(tmp_path):
    images, labels = random_faces(4)
    ds = load_dataset(write(tmp_path / "private.csv", kaggle_text(images, labels, [TEST] * 4)))
    assert ds.present_splits() == ["test"]
    np.testing.assert_array_equal(ds.images, images)


def test_training_rows_alone_get_a_stratified_seeded_val_split(tmp_path):
    images, _ = random_faces(60)
    labels = np.repeat([0, 3, 6], 20)
    path = write(tmp_path / "train.csv", kaggle_text(images, labels, [TRAIN] * 60))
    ds = load_dataset(path, val_fraction=0.1, seed=5)
    val = ds.split_codes == VAL
    np.testing.assert_array_equal(val, stratified_val_split(labels, 0.1, 5))
    assert np.bincount(labels[val], minlength=7).tolist() == [2, 0, 0, 2, 0, 0, 2]
    assert set(ds.split_codes[~val].tolist()) == {TRAIN}
    np.testing.assert_array_equal(load_dataset(path, val_fraction=0.1, seed=5).split_codes,
                                  ds.split_codes)
    other = load_dataset(path, val_fraction=0.2, seed=6)
    assert ds.fingerprint == f"{cache.file_fingerprint(path)}:val0.1-seed5"
    assert other.fingerprint != ds.fingerprint
    assert load_dataset(path, val_fraction=0).present_splits() == ["train"]


# ---------------------------------------------------------------------------- homework CSV


def test_homework_labelled_csv_is_training_data_with_carved_val(tmp_path):
    images, labels = random_faces(30)
    text = "label,feature\n" + "".join(f"{y},{pixel_text(x)}\n" for x, y in zip(images, labels))
    ds = load_dataset(write(tmp_path / "train.csv", text))
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.layout == "homework-csv"
    assert ds.present_splits() == ["train", "val"]


def test_homework_unlabelled_csv_is_an_unlabelled_test_set(tmp_path):
    images, _ = random_faces(4)
    text = "id,feature\n" + "".join(f"{i},{pixel_text(x)}\n" for i, x in enumerate(images))
    ds = load_dataset(write(tmp_path / "test.csv", text))
    np.testing.assert_array_equal(ds.images, images)
    assert ds.labels.tolist() == [-1] * 4
    assert ds.present_splits() == ["test"]
    assert ds.sources.tolist() == ["line 2", "line 3", "line 4", "line 5"]


# ---------------------------------------------------------------------------------- caching


def test_second_load_is_served_from_the_cache_without_parsing(tmp_path, monkeypatch):
    path = kaggle_file(tmp_path)[0]
    first = load_dataset(path)

    def no_parse(*_):
        raise AssertionError("parsed again")

    monkeypatch.setattr(readers, "_parse_csv", no_parse)
    second = load_dataset(path)
    for field in ("images", "labels", "split_codes", "sources"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert (second.layout, second.fingerprint) == (first.layout, first.fingerprint)


def test_cache_is_keyed_on_content(tmp_path):
    path, images, labels, splits = kaggle_file(tmp_path)
    load_dataset(path)
    os.utime(path, (1, 1))
    load_dataset(path)
    assert len(list(cache.cache_dir().glob("*.npz"))) == 1
    write(path, kaggle_text(images[::-1], labels[::-1], splits))
    np.testing.assert_array_equal(load_dataset(path).images, images[::-1])
    assert len(list(cache.cache_dir().glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", [b"", b"garbage", b"PK\x03\x04 half a zip"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, damage):
    path, images, _, _ = kaggle_file(tmp_path)
    load_dataset(path)
    (entry,) = cache.cache_dir().glob("*.npz")
    entry.write_bytes(damage)
    np.testing.assert_array_equal(load_dataset(path).images, images)
    assert cache.load_arrays(entry.stem) is not None


def test_a_cache_entry_with_wrong_arrays_is_rebuilt(tmp_path):
    path, images, _, _ = kaggle_file(tmp_path)
    load_dataset(path)
    (entry,) = cache.cache_dir().glob("*.npz")
    cache.save_arrays(entry.stem, {"images": np.zeros(3)})
    np.testing.assert_array_equal(load_dataset(path).images, images)


def test_use_cache_false_neither_reads_nor_writes(tmp_path):
    path, _, _, _ = kaggle_file(tmp_path)
    load_dataset(path, use_cache=False)
    assert not cache.cache_dir().exists() or not any(cache.cache_dir().iterdir())


def test_cache_entries_hold_no_pickles_and_leave_no_temporary_files(tmp_path):
    load_dataset(kaggle_file(tmp_path)[0])
    (entry,) = cache.cache_dir().iterdir()
    with np.load(entry, allow_pickle=False) as stored:
        assert stored["sources"].dtype.kind == "U"


def test_cache_dir_and_fingerprints(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("FER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "fer_core"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "fer_core"
    (tmp_path / "a").write_bytes(b"abc" * 100_000)
    assert cache.file_fingerprint(tmp_path / "a") == cache.bytes_fingerprint(b"abc" * 100_000)
    assert cache.tree_fingerprint([("a", b"bc")]) != cache.tree_fingerprint([("ab", b"c")])


# --------------------------------------------------------------------------------- bad input


def expect_error(path, *fragments: str) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert not cache.cache_dir().exists() or not any(cache.cache_dir().iterdir())


def drop_last_value(row: str) -> str:
    label, pixels, usage = row.split(",")
    return ",".join([label, pixels.rsplit(" ", 1)[0], usage])


def set_value(index: int, value: str):
    def replace(row: str) -> str:
        label, pixels, usage = row.split(",")
        values = pixels.split(" ")
        values[index] = value
        return ",".join([label, " ".join(values), usage])

    return replace


def test_missing_path(tmp_path):
    expect_error(tmp_path / "nowhere.csv", "nowhere.csv", "no such file")


def test_empty_file(tmp_path):
    expect_error(write(tmp_path / "empty.csv", ""), "empty.csv", "empty")


def test_header_only(tmp_path):
    expect_error(write(tmp_path / "h.csv", "emotion,pixels,Usage\n"), "h.csv", "no faces")


def test_unknown_header(tmp_path):
    expect_error(write(tmp_path / "odd.csv", "a,b,c\n1,2,3\n"), "odd.csv line 1",
                 "a text file whose first line is not a FER2013 header", "emotion,pixels,Usage")


def test_missing_header(tmp_path):
    path = bad_kaggle_file(tmp_path, 1, lambda row: "0,1 2 3,Training")
    expect_error(path, "bad.csv line 1", "header is missing")


@pytest.mark.parametrize("line, replace, problem", [
    (3, drop_last_value, "expected 2304 pixel values, found 2303"),
    (4, set_value(-1, "1 2"), "expected 2304 pixel values, found 2305"),
    (2, set_value(0, "256"), "pixel 1 is outside 0-255"),
    (6, set_value(100, "1000"), "pixel 101 is outside 0-255"),
    (5, set_value(2303, "-3"), "pixel 2304 is outside 0-255"),
    (5, set_value(12, "-0"), "pixel 13 is outside 0-255"),
    (3, set_value(7, "x1"), "pixel 8 is not a number (found text)"),
    (3, set_value(7, "1.5"), "pixel 8 is not a number (found a decimal number)"),
    (4, set_value(9, " 9"), "empty pixel value"),
    (6, set_value(0, " 5"), "empty pixel value"),
    (2, lambda row: "0,,Training", "expected 2304 pixel values, found 0"),
])
def test_bad_pixel_rows(tmp_path, line, replace, problem):
    expect_error(bad_kaggle_file(tmp_path, line, replace), f"bad.csv line {line}: {problem}")


def test_the_first_bad_row_is_reported(tmp_path):
    images, labels = random_faces(8)
    rows = kaggle_text(images, labels, [TRAIN] * 8).splitlines()
    rows[7] = set_value(0, "999")(rows[7])
    rows[5] = drop_last_value(rows[5])
    expect_error(write(tmp_path / "bad.csv", "\n".join(rows)), "bad.csv line 6: expected 2304")


def test_a_failing_gzip_load_leaves_no_thread_behind(tmp_path):
    images, labels = random_faces(30)
    rows = kaggle_text(images, labels, [TRAIN] * 30).splitlines()
    rows[3] = set_value(5, "300")(rows[3])
    path = write(tmp_path / "bad.csv.gz", "\n".join(rows), compress=True)
    threads = threading.active_count()
    expect_error(path, "bad.csv.gz line 4: pixel 6 is outside 0-255")
    assert threading.active_count() == threads


def test_mangled_files_load_exactly_or_fail_with_a_data_error(tmp_path):
    """Seeded random damage: every outcome is an exact parse or a DataError naming the file."""
    images, labels = random_faces(3)
    good = kaggle_text(images, labels, [TRAIN, VAL, TEST]).encode()
    rng = random.Random(7)
    for attempt in range(200):
        data = bytearray(good)
        position = rng.randrange(len(data))
        data[position:position + rng.randrange(2)] = bytes([rng.choice(b" ,\n-09x\0")])
        path = tmp_path / f"m{attempt}.csv"
        path.write_bytes(data)
        try:
            ds = load_dataset(path, use_cache=False)
        except DataError as error:
            assert str(error).startswith(str(path)) and "malformed" not in str(error)
            continue
        rows = [line.split(b",") for line in bytes(data).splitlines()[1:] if line.strip()]
        expected = [[int(v) for v in pixels.split(b" ")] for _, pixels, _ in rows]
        np.testing.assert_array_equal(ds.images.reshape(len(rows), -1), expected)
        assert ds.labels.tolist() == [int(label) for label, _, _ in rows]


@pytest.mark.parametrize("label, found", [
    ("7", "a number outside the range"), ("-1", "a number outside the range"), ("x", "text"),
    ("", "an empty field"), ("1.0", "a decimal number")])
def test_bad_label(tmp_path, label, found):
    path = bad_kaggle_file(tmp_path, 4, lambda row: label + row[1:])
    expect_error(path, f"bad.csv line 4: label is not an integer 0-6 (found {found})")


def test_unknown_usage(tmp_path):
    path = bad_kaggle_file(tmp_path, 5, lambda row: row.replace("Training", "Holdout"))
    expect_error(path, "bad.csv line 5: Usage is not Training, PublicTest or PrivateTest "
                       "(found text)")


def test_wrong_field_count(tmp_path):
    path = bad_kaggle_file(tmp_path, 3, lambda row: row + ",extra")
    expect_error(path, "bad.csv line 3: expected 3 comma-separated fields, found 4")


def test_damaged_gzip(tmp_path):
    path, _, _, _ = kaggle_file(tmp_path, "cut.csv.gz", compress=True)
    path.write_bytes(path.read_bytes()[:-100])
    expect_error(path, "cut.csv.gz", "ends early")
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    expect_error(path, "cut.csv.gz", "damaged gzip")


# ---------------------------------------------------------------------------------- builtin


def test_builtin_specs_call_the_generator(monkeypatch):
    import fer_core.data.builtin

    calls = []
    monkeypatch.setattr(fer_core.data.builtin, "make_builtin_faces",
                        lambda n, seed: calls.append((n, seed)) or "faces")
    assert load_dataset("builtin") == "faces"
    assert load_dataset("builtin:250") == "faces"
    assert calls == [(10000, 0), (250, 0)]
    with pytest.raises(DataError, match="builtin:N"):
        load_dataset("builtin:lots")


# -------------------------------------------------------------------------------- real data

REAL_CSV = os.environ.get("FER2013_CSV")
TRAINING_COUNTS = [3995, 436, 4097, 7215, 4830, 3171, 4965]
PUBLIC_TEST_COUNTS = [467, 56, 496, 895, 653, 415, 607]


@pytest.mark.skipif(not REAL_CSV, reason="FER2013_CSV is not set")
def test_real_fer2013_csv():
    ds = load_dataset(REAL_CSV)
    assert ds.images.shape == (len(ds), 1, 48, 48) and len(ds) in (32298, 35887)
    assert ds.labels.min() == 0 and ds.labels.max() == 6
    assert ds.layout == "kaggle-csv" and ds.sources[0] == "line 2"
    if len(ds) == 32298:
        counts = ds.counts()
        assert list(counts) == ["train", "val"]
        assert list(counts["train"].values()) == TRAINING_COUNTS
        assert list(counts["val"].values()) == PUBLIC_TEST_COUNTS
    cached = load_dataset(REAL_CSV)
    np.testing.assert_array_equal(cached.images, ds.images)
