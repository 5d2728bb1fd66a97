"""Class-folder trees of any emotions, size and colour (`fer_core.data.tree`), built from the
built-in faces: RAF-DB's names, colour, 64 or 96 px, numeric folders, FER2013's export."""

import os
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import RAF_DB_NAMES, in_other_task, write_tree
from PIL import Image

from fer_core.cli.main import main
from fer_core.data import decode
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.classes import CLASSES
from fer_core.data.pictures import pil_image
from fer_core.data.readers import load_dataset
from fer_core.data.tree import ReadOptions
from fer_core.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2


@pytest.fixture(scope="module")
def faces():
    return make_builtin_faces(n=70, seed=5)


def by_source(dataset, relatives):
    """The dataset's rows in the order of `relatives`."""
    index = {s: i for i, s in enumerate(dataset.sources)}
    return np.array([index[r] for r in relatives])


def test_a_colour_tree_with_raf_db_names_gives_its_own_task(tmp_path, faces):
    raf = in_other_task(faces, size=96)
    written = write_tree(tmp_path, raf)
    ds = load_dataset(tmp_path)
    assert ds.task.classes == tuple(sorted(RAF_DB_NAMES))
    assert (ds.task.size, ds.task.channels) == (96, 3)
    rows = by_source(ds, written)
    np.testing.assert_array_equal(ds.images[rows], raf.images)  # PNG: lossless
    names = [ds.task.classes[k] for k in ds.labels[rows]]
    assert names == [RAF_DB_NAMES[k] for k in raf.labels]
    assert set(ds.present_splits()) == {"train", "val", "test"}
    assert ds.layout == "class-folders" and ds.notes == ()


def test_grey_images_stored_as_rgb_jpeg_read_as_one_channel(tmp_path, faces):
    grey = in_other_task(faces, size=64, channels=1)
    for i, image in enumerate(grey.images[:6]):
        folder = tmp_path / "train" / grey.task.classes[grey.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).convert("RGB").save(folder / f"{i}.jpg", quality=95)
    ds = load_dataset(tmp_path)
    assert ds.task.channels == 1 and ds.images.shape[1:] == (1, 64, 64)
    assert load_dataset(tmp_path, options=ReadOptions(channels=3)).task.channels == 3


def test_channels_one_turns_colour_into_luminance(tmp_path, faces):
    write_tree(tmp_path, in_other_task(faces, size=64))
    ds = load_dataset(tmp_path, options=ReadOptions(channels=1))
    assert ds.task.channels == 1 and ds.images.shape[1] == 1


def test_numeric_folders_take_names_from_classes_txt_or_the_option(tmp_path, faces):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path, raf, folder_of=lambda k: str(k + 1))
    with pytest.raises(DataError, match=r"numbers \(1, 2, 3, 4, 5, 6, 7\).*--classes"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="3 class names given for 7 numeric"):
        load_dataset(tmp_path, options=ReadOptions(classes=("a", "b", "c")))
    (tmp_path / "classes.txt").write_text("\n".join(RAF_DB_NAMES) + "\n")
    ds = load_dataset(tmp_path)
    assert ds.task.classes == RAF_DB_NAMES
    assert [ds.sources[i].split("/")[1] for i in range(len(ds))] == \
        [str(k + 1) for k in ds.labels]
    named = load_dataset(tmp_path, options=ReadOptions(classes=tuple("ABCDEFG")))
    assert named.task.classes == tuple("ABCDEFG")


def test_classes_order_named_folders_and_must_name_them_all(tmp_path, faces):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path, raf)
    ds = load_dataset(tmp_path, options=ReadOptions(classes=tuple(n.upper() for n in RAF_DB_NAMES)))
    assert ds.task.classes == RAF_DB_NAMES  # the folders' spelling, the option's order
    with pytest.raises(DataError, match="are not the class folders"):
        load_dataset(tmp_path, options=ReadOptions(classes=RAF_DB_NAMES[:6] + ("contempt",)))


def test_mixed_sizes_are_resized_to_the_most_common_and_non_squares_cropped(tmp_path, faces):
    raf = in_other_task(faces, size=96)
    written = write_tree(tmp_path, raf)
    pil_image(raf.images[0]).resize((64, 64)).save(tmp_path / written[0])
    wide = np.zeros((96, 120, 3), np.uint8)
    wide[:, 12:108] = np.moveaxis(raf.images[1], 0, -1)
    Image.fromarray(wide).save(tmp_path / written[1])
    ds = load_dataset(tmp_path)
    assert ds.task.size == 96
    assert ds.notes == ("1 non-square image(s) centre-cropped to squares",
                        "1 image(s) resized to 96x96 (the most common size)")
    rows = by_source(ds, written)
    np.testing.assert_array_equal(ds.images[rows[1]], raf.images[1])
    small = load_dataset(tmp_path, options=ReadOptions(size=48))
    assert small.task.size == 48 and small.images.shape[2:] == (48, 48)
    assert "70 image(s) resized to 48x48 (--size)" in small.notes


def test_unreadable_and_truncated_files_are_skipped_and_named(tmp_path, faces, monkeypatch):
    raf = in_other_task(faces, size=64)
    written = write_tree(tmp_path, raf, suffix=".jpg")
    data = (tmp_path / written[3]).read_bytes()
    (tmp_path / written[3]).write_bytes(data[:len(data) // 2])
    (tmp_path / written[5]).write_bytes(b"not an image at all")
    ds = load_dataset(tmp_path)
    assert len(ds) == len(written) - 2
    assert ds.notes[0].startswith("2 image file(s) skipped: ")
    assert f"{written[3]} (truncated)" in ds.notes[0]
    assert f"{written[5]} (not an image Pillow reads)" in ds.notes[0]
    monkeypatch.setattr(decode, "open_image", None)  # cached: the kept rows, no file opened
    np.testing.assert_array_equal(load_dataset(tmp_path).images, ds.images)


@pytest.mark.parametrize("executable", [None, "/bin/false"])
def test_worker_processes_decode_as_this_process_does_and_a_failed_one_is_redone(
        tmp_path, faces, monkeypatch, executable):
    written = write_tree(tmp_path, in_other_task(faces, size=64), suffix=".jpg")
    (tmp_path / written[5]).write_bytes(b"not an image at all")
    here = load_dataset(tmp_path, use_cache=False)
    monkeypatch.setattr(decode, "PROCESS_FILES", 10)
    monkeypatch.setattr(decode, "workers", lambda: 3)
    if executable:
        monkeypatch.setattr(decode.sys, "executable", executable)
    started = []
    start_worker = decode._start_worker
    monkeypatch.setattr(decode, "_start_worker", lambda *a: started.append(a) or start_worker(*a))
    ds = load_dataset(tmp_path, use_cache=False)
    assert len(started) == 3
    np.testing.assert_array_equal(ds.images, here.images)
    assert list(ds.notes) == list(here.notes) and len(ds) == len(written) - 1


def test_a_sample_that_misleads_is_decoded_again_as_the_whole_tree_is(tmp_path, faces,
                                                                       monkeypatch):
    write_tree(tmp_path, in_other_task(faces, size=64))
    expected = load_dataset(tmp_path, use_cache=False)
    monkeypatch.setattr(decode, "sample_headers", lambda *_: [decode.Facts(96, 96, True)])
    decodes = []
    decode_all = decode.decode_all
    monkeypatch.setattr(decode, "decode_all", lambda *a: decodes.append(a[2:4]) or decode_all(*a))
    ds = load_dataset(tmp_path, use_cache=False)
    assert decodes == [(96, 1), (64, 3)]
    assert ds.task.shape == (3, 64, 64) and not ds.notes
    np.testing.assert_array_equal(ds.images, expected.images)


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "other" / "anger").mkdir(parents=True),
     "no train/, val/, valid/ or test/ folder"),
    (lambda root: (root / "train").mkdir(), "no class folders"),
    (lambda root: (root / "train" / "anger").mkdir(parents=True), "train/anger: empty class"),
    (lambda root: [(root / "train" / n).mkdir(parents=True) for n in ("Happy", "happy")],
     "'Happy' and 'happy' differ only in case"),
])
def test_bad_trees_are_one_line_naming_where(tmp_path, make, message):
    make(tmp_path)
    for folder in tmp_path.glob("*/*"):
        if folder.name == "happy":
            Image.new("L", (8, 8)).save(folder / "a.png")
            Image.new("L", (8, 8)).save(folder.parent / "Happy" / "a.png")
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path)


def test_fer2013_image_export_keeps_fer2013_task_and_file_name_splits(tmp_path, faces):
    files = {"train/angry/Training_7.png": 0, "test/happy/PublicTest_8.png": 3,
             "test/neutral/PrivateTest_9.png": 6, "train/disgust/x.png": 1,
             "train/fear/y.png": 2, "train/sad/z.png": 4, "train/surprise/w.png": 5}
    for i, relative in enumerate(files):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        pil_image(faces.images[i]).save(tmp_path / relative)
    ds = load_dataset(tmp_path)
    assert ds.task.classes == CLASSES and ds.task.shape == (1, 48, 48)
    rows = by_source(ds, list(files))
    assert ds.labels[rows].tolist() == list(files.values())
    assert ds.split_codes[rows][:3].tolist() == [TRAIN, VAL, TEST]
    np.testing.assert_array_equal(ds.images[rows], faces.images[:7])


def test_val_or_valid_folders_are_the_validation_split(tmp_path, faces):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path, raf, tops=("train", "valid"))
    ds = load_dataset(tmp_path)
    assert ds.present_splits() == ["train", "val"]
    assert (ds.split_codes == VAL).sum() == (raf.split_codes == TEST).sum()


def test_over_the_memory_budget_is_refused_before_decoding(tmp_path, faces, monkeypatch):
    write_tree(tmp_path, in_other_task(faces, size=96))
    monkeypatch.setenv("FER_MEMORY_BUDGET", "500K")
    monkeypatch.setattr(decode, "decode_all", None)
    with pytest.raises(DataError, match=r"70 faces at 96x96 colour need 1.9 MB, over the memory "
                                        r"budget of 0.5 MB \(FER_MEMORY_BUDGET\); pass --size 49 "
                                        r"or less"):
        load_dataset(tmp_path)
    monkeypatch.setenv("FER_MEMORY_BUDGET", "lots")
    with pytest.raises(DataError, match="FER_MEMORY_BUDGET='lots'"):
        load_dataset(tmp_path)


def test_a_cached_read_opens_no_image_and_a_changed_file_is_read_again(tmp_path, faces,
                                                                     monkeypatch):
    written = write_tree(tmp_path, in_other_task(faces, size=64))
    first = load_dataset(tmp_path)
    monkeypatch.setattr(decode, "open_image", None)
    second = load_dataset(tmp_path)
    np.testing.assert_array_equal(second.images, first.images)
    assert second.fingerprint == first.fingerprint
    os.utime(tmp_path / written[0], ns=(1, 1))
    with pytest.raises(TypeError):  # read again: open_image is gone
        load_dataset(tmp_path)


def test_data_cli_prints_the_task_notes_and_counts(tmp_path, faces, capsys):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path, raf, folder_of=lambda k: str(k + 1))
    assert main(["data", "--data", str(tmp_path), "--classes", ",".join(RAF_DB_NAMES)]) == 0
    out, err = capsys.readouterr()
    assert "task: 7 classes, 64x64 colour" in out
    assert "decoding 70 images as 64x64 colour" in err
    header = next(line for line in out.splitlines() if line.startswith("split"))
    assert header.split()[1:3] == ["surprise", "fear"]


def test_data_cli_bad_tree_is_exit_2_and_one_line(tmp_path, faces, capsys):
    write_tree(tmp_path, in_other_task(faces, size=64), folder_of=lambda k: str(k + 1))
    assert main(["data", "--data", str(tmp_path), "--classes", "a,b"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 class names given for 7 numeric" in err


def test_image_suffixes_are_what_pillow_reads():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif"} <= decode.image_suffixes()


def test_classes_on_a_csv_or_the_built_in_faces_are_refused_and_size_and_channels_convert(
        tmp_path):
    csv = tmp_path / "faces.csv"
    csv.write_text("emotion,pixels,Usage\n")
    for spec in (str(csv), "builtin:70"):
        with pytest.raises(DataError, match=r"not a class-folder tree; .*\(size=64, classes=a"):
            load_dataset(spec, options=ReadOptions(size=64, classes=("a", "b")))
    grey = load_dataset("builtin:70")
    colour = load_dataset("builtin:70", options=ReadOptions(channels=3))
    assert colour.task.shape == (3, 48, 48) and colour.task.classes == grey.task.classes
    assert (colour.images == grey.images).all() and np.array_equal(colour.labels, grey.labels)
    assert "faces converted from 48x48 grey to the model's 48x48 colour" in colour.notes
    assert load_dataset("builtin:70", options=ReadOptions(size=64)).task.shape == (1, 64, 64)


def test_worker_processes_decode_the_same_faces_as_this_process(tmp_path, faces, monkeypatch):
    raf = in_other_task(faces, size=64)
    written = write_tree(tmp_path, raf, suffix=".jpg")
    (tmp_path / written[2]).write_bytes(b"broken")
    here = load_dataset(tmp_path, use_cache=False)
    monkeypatch.setattr(decode, "PROCESS_FILES", 10)
    monkeypatch.setattr(decode, "CHUNK", 16)
    monkeypatch.setattr(decode, "workers", lambda: 2)
    pooled = load_dataset(tmp_path, use_cache=False)
    np.testing.assert_array_equal(pooled.images, here.images)
    assert pooled.notes == here.notes and len(pooled) == len(written) - 1


def test_a_tree_of_one_test_folder_is_a_test_set_and_train_alone_gets_a_val_split(tmp_path,
                                                                                  faces):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path / "only_test", raf, tops=("test", "test"))
    assert load_dataset(tmp_path / "only_test").present_splits() == ["test"]
    write_tree(tmp_path / "only_train", raf, tops=("train", "train"))
    ds = load_dataset(tmp_path / "only_train")
    assert ds.present_splits() == ["train", "val"]
    assert ds.fingerprint.endswith(":val0.1-seed0")


def test_a_folder_named_by_a_number_among_named_ones_is_a_class_of_that_name(tmp_path, faces):
    raf = in_other_task(faces, size=64)
    write_tree(tmp_path, raf, folder_of=lambda k: "7" if k == 6 else RAF_DB_NAMES[k])
    ds = load_dataset(tmp_path)
    assert ds.task.classes == ("7", *sorted(RAF_DB_NAMES[:6]))
    assert all(ds.task.classes[k] == s.split("/")[1] for k, s in zip(ds.labels, ds.sources))
