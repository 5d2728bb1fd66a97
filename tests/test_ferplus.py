"""FER+'s folder layout: the 8-emotion task, each face's 10 votes kept, the majority label of the
paper and of Microsoft's reader (checked against a line-by-line port of that reader's rule), bad
label files in one line; and, when the data is here, the real FER2013Train/FER2013Valid."""

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import microsoft_target, write_ferplus

from fer_core.cli.main import main
from fer_core.data import decode, ferplus
from fer_core.data.readers import load_dataset, source_stamp
from fer_core.errors import DataError

TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / \
    "ferplus_train_valid.tar.gz"

# votes in VOTE_NAMES order (neutral, happiness, surprise, sadness, anger, disgust, fear,
# contempt, unknown, NF) and the majority label each must give
CASES = [
    ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0),   # unanimous neutral
    ([1, 6, 1, 1, 1, 0, 0, 0, 0, 0], 1),    # single votes dropped: 6 of 6
    ([0, 4, 4, 0, 0, 0, 0, 2, 0, 0], -1),   # split: 4 of 10 is not more than half
    ([0, 0, 0, 0, 0, 0, 0, 6, 4, 0], 7),    # contempt, 6 of 10
    ([0, 0, 0, 0, 0, 0, 0, 0, 8, 2], -1),   # unknown
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], -1),  # not a face
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], -1),   # every vote single: none left
    ([0, 0, 3, 0, 2, 0, 0, 0, 0, 0], 2),    # 3 of 5 remaining
]


def microsoft_majority(raw: list[int]) -> int:
    """Microsoft's reader in majority mode (`microsoft_target`): the label, or -1 where the
    face is dropped."""
    target = microsoft_target(raw, "majority")
    return -1 if target is None else int(np.argmax(target))


def test_majority_labels_follow_the_paper_and_microsofts_reader():
    votes = np.array([v for v, _ in CASES])
    assert ferplus.majority_labels(votes).tolist() == [label for _, label in CASES]
    assert [microsoft_majority(v) for v, _ in CASES] == [label for _, label in CASES]


def test_the_folder_layout_reads_as_the_ferplus_task_with_its_votes(tmp_path, monkeypatch):
    faces = write_ferplus(tmp_path, [v for v, _ in CASES])
    ds = load_dataset(tmp_path)
    assert ds.task == ferplus.FERPLUS and ds.layout == "ferplus-folders"
    assert ds.task.classes[7] == "contempt"
    order = np.argsort([s.rsplit("/", 1)[1] for s in ds.sources])  # fer0000000 (train), ...01 (val)
    np.testing.assert_array_equal(ds.votes[order], np.array([v for v, _ in CASES]))
    assert ds.labels[order].tolist() == [label for _, label in CASES]
    assert ds.split_codes[order].tolist() == [0, 1] * 4
    np.testing.assert_array_equal(ds.images[order], faces.images)
    assert any(n.startswith("4 of 8 faces have no majority emotion") for n in ds.notes)
    monkeypatch.setattr(decode, "open_image", None)  # a cached read opens no image
    np.testing.assert_array_equal(load_dataset(tmp_path).votes, ds.votes)


def test_a_missing_image_is_noted_and_a_changed_label_file_is_read_again(tmp_path):
    write_ferplus(tmp_path, [v for v, _ in CASES])
    stamp = source_stamp(tmp_path)
    (tmp_path / "FER2013Train" / "fer0000002.png").unlink()
    assert source_stamp(tmp_path) != stamp
    ds = load_dataset(tmp_path)
    assert len(ds) == 7 and "1 image(s) listed in label.csv are missing" in ds.notes


@pytest.mark.parametrize("line, message", [
    ('fer0000000.png,"(0, 0, 48, 48)",1,2,3', "line 1: expected an image name, a face box and "
                                             "10 vote counts"),
    ('fer0000000.png,"(0, 0, 48, 48)",1,2,3,4,5,6,7,8,9,x', "line 1: expected"),
    ('../secret.png,"(0, 0, 48, 48)",1,2,3,4,5,6,7,8,9,0',
     "line 1: '../secret.png' is not an image file name"),
])
def test_a_bad_label_file_is_one_line_naming_it(tmp_path, line, message):
    (tmp_path / "FER2013Valid").mkdir()
    (tmp_path / "FER2013Valid" / "label.csv").write_text(line + "\n")
    with pytest.raises(DataError, match=f"FER2013Valid/label.csv {message}"):
        load_dataset(tmp_path)


def test_the_data_command_prints_the_ferplus_task(tmp_path, capsys):
    write_ferplus(tmp_path, [v for v, _ in CASES])
    assert main(["data", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "8 classes, 48x48 grey" in out and "contempt" in out


@pytest.fixture(scope="module")
def real_ferplus(tmp_path_factory):
    if not TAR.is_file():
        pytest.skip(f"{TAR} is not here")
    root = tmp_path_factory.mktemp("ferplus")
    with tarfile.open(TAR) as archive:
        archive.extractall(root, filter="data")
    found = [p.parent for p in root.rglob("label.csv")]
    return found[0].parent


def test_the_real_ferplus_folders_agree_with_microsofts_rule_row_by_row(real_ferplus):
    import csv

    ds = load_dataset(real_ferplus)
    assert len(ds) == 28_558 + 3_579
    for folder, split in (("FER2013Train", 0), ("FER2013Valid", 1)):
        with open(real_ferplus / folder / "label.csv", newline="") as f:
            expected = {f"{folder}/{row[0]}": microsoft_majority([int(v) for v in row[2:]])
                        for row in csv.reader(f) if row}
        rows = np.flatnonzero(ds.split_codes == split)
        ours = dict(zip(ds.sources[rows].tolist(), ds.labels[rows].tolist()))
        assert ours == expected
    assert 0.05 < (ds.labels < 0).mean() < 0.2  # unknown, not a face or split: a minority


def test_a_ferplus_source_stamp_changes_with_its_files(tmp_path):
    write_ferplus(tmp_path, [v for v, _ in CASES])
    before = source_stamp(tmp_path)
    label = tmp_path / "FER2013Valid" / "label.csv"
    os.utime(label, ns=(1, 1))
    assert source_stamp(tmp_path) != before


PAGES = ("views/home.py", "views/model.py", "views/confusions/page.py", "views/saliency/page.py",
         "views/filters/page.py", "views/embeddings/page.py")


@pytest.fixture(scope="module")
def ferplus_folder(tmp_path_factory):
    """200 built-in faces as FER+ folders, each with one clear majority (its class) and some
    faces without one."""
    from fer_core.data.builtin import make_builtin_faces
    from fer_core.data.classes import CLASSES
    from fer_core.data.matching import meaning

    root = tmp_path_factory.mktemp("ferplus_pages")
    faces = make_builtin_faces(n=200, seed=3)
    votes = []
    for i, label in enumerate(faces.labels):
        row = [0] * 10
        k = next(j for j, c in enumerate(ferplus.VOTE_NAMES) if meaning(c) == meaning(
            CLASSES[label]))
        row[k], row[8 if i % 10 == 0 else 7] = 7, 3
        votes.append(row)
    write_ferplus(root, votes)
    return root


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_ferplus_with_a_fer2013_model(ferplus_folder, tmp_path, monkeypatch,
                                                          page):
    import shutil

    import apptest_helpers

    root = tmp_path / "checkpoints"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "fer2013-cnn3",
                    root / "fer2013-cnn3")
    apptest_helpers.serve(monkeypatch, root)
    at = apptest_helpers.open_page(page, data=str(ferplus_folder), run="fer2013-cnn3")
    assert not at.error, [e.value for e in at.error]
    if page not in ("views/home.py",):
        [note] = [i.value for i in at.main.info if "Shown as the model sees" in i.value]
        assert "classes only the data has: contempt" in note


# ---- Kaggle's CSV with Microsoft's fer2013new.csv beside it -----------------------------------

USAGE_ROWS = ["Training", "Training", "Training", "Training", "PublicTest", "PublicTest"]


def write_kaggle_with_votes(root: Path, votes: list[list[int]], usages=USAGE_ROWS,
                            vote_usages=None) -> list[int]:
    """A Kaggle CSV of len(usages) built-in faces and fer2013new.csv beside it; returns the
    FER2013 labels written."""
    from fer_core.data.builtin import make_builtin_faces

    faces = make_builtin_faces(n=len(usages), seed=2)
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"{label},{' '.join(map(str, image.ravel()))},{usage}"
            for label, image, usage in zip(faces.labels, faces.images, usages)]
    (root / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    lines = [",".join(ferplus.VOTE_HEADER)] + [
        f"{usage},fer{i:07d}.png," + ",".join(map(str, row))
        for i, (usage, row) in enumerate(zip(vote_usages or usages, votes))]
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    return faces.labels.tolist()


def test_kaggles_csv_with_the_vote_file_beside_it_joins_row_by_row(tmp_path):
    votes = [row for row, _ in CASES[:6]]
    fer2013 = write_kaggle_with_votes(tmp_path, votes)
    data = load_dataset(tmp_path / "fer2013.csv", use_cache=False)
    assert data.task == ferplus.FERPLUS and data.layout == "kaggle-csv+ferplus"
    assert data.votes.tolist() == votes and data.fer2013_labels.tolist() == fer2013
    assert data.labels.tolist() == [label for _, label in CASES[:6]]
    assert data.split_codes.tolist() == [0, 0, 0, 0, 1, 1]
    assert any("joined row by row" in note for note in data.notes)


@pytest.mark.parametrize("change, message", [
    ({"vote_usages": ["Training"] * 3 + ["PublicTest"] * 3},
     r"fer2013new.csv line 5 is PublicTest but .*fer2013.csv line 5 is Training: the files part"),
    ({"votes": [[10] + [0] * 9] * 5}, "has 5 vote rows and .* 6 faces"),
    ({"votes": [[10] + [0] * 9] * 5 + [[0] * 10]}, r"line 7: vote counts .* not all 0"),
    ({"votes": [[10] + [0] * 9] * 5 + [[-1, 11] + [0] * 8]}, r"line 7: vote counts must be"),
])
def test_a_vote_file_that_does_not_fit_is_one_line_naming_where(tmp_path, change, message):
    votes = change.get("votes", [[10] + [0] * 9] * 6)
    write_kaggle_with_votes(tmp_path, votes, vote_usages=change.get("vote_usages"))
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "fer2013.csv", use_cache=False)


def test_a_label_file_with_no_vote_at_all_is_refused(tmp_path):
    write_ferplus(tmp_path, [[10] + [0] * 9, [0] * 10])
    with pytest.raises(DataError, match=r"FER2013Valid/label.csv line 1: .* not all 0"):
        load_dataset(tmp_path, use_cache=False)


PAIR = TAR.parent / "publictest_pair"


@pytest.mark.skipif(not PAIR.is_dir(), reason="the FER+ PublicTest pair is not here")
def test_the_real_publictest_pair_joins_with_every_row_its_own_votes():
    import csv
    import gzip

    data = load_dataset(PAIR / "fer2013.csv.gz")
    with open(PAIR / "fer2013new.csv") as f:
        rows = list(csv.reader(f))[1:]
    with gzip.open(PAIR / "fer2013.csv.gz", "rt") as f:
        fer2013 = [int(row[0]) for row in list(csv.reader(f))[1:]]
    assert len(data) == len(rows) == 3589 and (data.split_codes == 1).all()
    assert data.votes.tolist() == [[int(v) for v in row[2:]] for row in rows]
    assert data.fer2013_labels.tolist() == fer2013
    assert data.labels.tolist() == [microsoft_majority([int(v) for v in row[2:]])
                                    for row in rows]
    assert int((data.labels >= 0).sum()) == 3199


def test_the_crowd_line_names_the_votes_and_a_fer2013_label_the_crowd_rejects():
    from dashboard.common.votes import crowd_line
    from fer_core.data.classes import CLASSES

    votes = np.array([3, 7, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint8)
    happy, sad = CLASSES.index("Happy"), CLASSES.index("Sad")
    assert crowd_line(votes, None) == "Crowd: happiness 7, neutral 3 (majority happiness)"
    assert crowd_line(votes, happy).endswith("FER2013 label Happy, the crowd's too")
    assert crowd_line(votes, sad, markdown=False).endswith("FER2013 label Sad: no vote for it")
    assert ":orange[**FER2013 label Sad: no vote for it**]" in crowd_line(votes, sad)
    split = np.array([0, 4, 4, 2, 0, 0, 0, 0, 0, 0], dtype=np.uint8)
    assert crowd_line(split, happy, markdown=False) == (
        "Crowd: happiness 4, surprise 4, sadness 2 (no majority) · FER2013 label Happy: 4 "
        "vote(s) for it")


def test_the_saliency_page_shows_a_dataset_faces_votes_and_its_fer2013_label(tmp_path,
                                                                              monkeypatch):
    import shutil

    import apptest_helpers

    from fer_core.data.classes import CLASSES as FER2013

    labels = write_kaggle_with_votes(tmp_path / "data", [[10] + [0] * 9] * 6)
    other = "happiness" if FER2013[labels[4]] != "Happy" else "surprise"
    votes = [[10] + [0] * 9] * 4 + [[0] * 10, [10] + [0] * 9]
    votes[4][ferplus.VOTE_NAMES.index(other)] = 9
    write_kaggle_with_votes(tmp_path / "data", votes)
    root = tmp_path / "checkpoints"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "fer2013-cnn3",
                    root / "fer2013-cnn3")
    apptest_helpers.serve(monkeypatch, root)
    at = apptest_helpers.open_page("views/saliency/page.py", data=str(tmp_path / "data" /
                                   "fer2013.csv"), run="fer2013-cnn3")
    assert not at.error, [e.value for e in at.error]
    [line] = [m.value for m in at.main.markdown if m.value.startswith("Crowd:")]
    assert line.startswith(f"Crowd: {other} 9 (majority {other})")
    assert f"FER2013 label **{FER2013[labels[4]]}**" not in line  # marked as a whole
    assert f"FER2013 label {FER2013[labels[4]]}: no vote for it" in line
