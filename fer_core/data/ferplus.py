"""FER+ (Barsoum et al. 2016): every FER2013 face labelled by 10 annotators, in the folder layout
Microsoft's `generate_training_data.py` writes:

    ROOT/FER2013Train/ferNNNNNNN.png ... label.csv      -> train
    ROOT/FER2013Valid/...                               -> val
    ROOT/FER2013Test/...                                -> test

Each `label.csv` has no header: image name, face box, then 10 vote counts in VOTE_NAMES order.
The task is FER+'s 8 emotions (FERPLUS); every face keeps its 10 counts (`FaceDataset.votes`),
and its label is the majority label of the paper and of Microsoft's reader (`majority_labels`),
or -1 (left out of accuracy) where there is none. The images are decoded as a tree's are
(`decode`, into the cache file) and the parsed arrays cached under the label files' content and
the images' names, sizes and modification times.
"""

import csv
import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from .. import cache
from ..choices import SPLITS
from ..errors import DataError
from . import decode, files
from .task import Task

VOTE_NAMES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
              "contempt", "unknown", "NF")
FERPLUS = Task(VOTE_NAMES[:8], 48, 1)
SPLIT_FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
LABELS = "label.csv"
VOTE_FILE = "fer2013new.csv"  # Microsoft's votes for Kaggle's CSV, read from beside it
VOTE_HEADER = ("Usage", "Image name", *VOTE_NAMES)
USAGES = ("Training", "PublicTest", "PrivateTest")  # Kaggle's Usage of each split, SPLITS order
MAX_VOTES = 255  # what a uint8 count holds (FER+ has 10 annotators a face)
VERSION = 1  # bump when the cached arrays change meaning


def is_ferplus(root: Path) -> bool:
    """Whether `root` holds a FER+ folder (FER2013Train/, FER2013Valid/ or FER2013Test/ with
    its label.csv)."""
    return any((root / folder / LABELS).is_file() for folder in SPLIT_FOLDERS)


def listing_stamp(root: Path) -> str:
    """A hash of the label files' and images' names, sizes and modification times (no file is
    opened): the dashboard's cheap test that the data changed."""
    entries = []
    for folder in SPLIT_FOLDERS:
        if (root / folder).is_dir():
            for entry in sorted(os.scandir(root / folder), key=lambda e: e.name):
                info = entry.stat(follow_symlinks=False)
                entries.append((folder, entry.name, info.st_size, info.st_mtime_ns))
    return cache.bytes_fingerprint(repr(entries).encode())


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """Each face's majority label (N x 10 vote counts -> N labels), as FER+'s paper and
    Microsoft's FERPlusReader define it: single votes are dropped as noise; the label is the
    class holding more than half of the remaining votes (unknown and NF included); -1 where that
    class is unknown or NF, or no class does."""
    kept = np.where(votes > 1, votes, 0).astype(np.int64)
    top = kept.argmax(1)
    has_majority = kept.max(1) > 0.5 * kept.sum(1)
    return np.where(has_majority & (top < FERPLUS.num_classes), top, -1).astype(np.int64)


def vote_targets(votes: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Each face's training target over the 8 emotions (N x 10 vote counts -> N x 8 float32
    rows summing to 1) for a vote mode of the FER+ paper, as Microsoft's FERPlusReader builds
    it, and which faces it keeps (the target's top class is an emotion, not unknown or NF).

    Single votes are dropped as noise. 'majority': the majority class alone (see
    `majority_labels`). 'crossentropy' and 'probability': the top classes, one after another,
    until they hold 3/4 of the votes (at most 3, stopping at unknown or NF), valid when they
    hold more than half. 'multi_target': every class with at least 30% of the votes, valid
    when they hold more than half. Dropped faces get a row of zeros.
    """
    kept = np.where(votes > 1, votes, 0).astype(np.float64)
    pick = {"majority": _majority_part, "crossentropy": _top_part, "probability": _top_part,
            "multi_target": _multi_part}[mode]
    parts = np.zeros_like(kept)
    for i, row in enumerate(kept):
        if row.sum() > 0:
            parts[i] = pick(row)
    keep = (parts.sum(1) > 0) & (parts.argmax(1) < FERPLUS.num_classes)
    emotions = parts[:, :FERPLUS.num_classes] * keep[:, None]
    sums = emotions.sum(1, keepdims=True)
    return (emotions / np.where(sums > 0, sums, 1)).astype(np.float32), keep


def _majority_part(row: np.ndarray) -> np.ndarray:
    part = np.zeros_like(row)
    if row.max() > 0.5 * row.sum():
        part[row.argmax()] = row.max()
    return part


def _top_part(row: np.ndarray) -> np.ndarray:
    """Microsoft's loop: take the first class with the most votes left until 3/4 are taken, 3
    classes are, or unknown/NF is (which is then dropped when an emotion was taken before)."""
    total, left, part = row.sum(), row.copy(), np.zeros_like(row)
    while part.sum() < 0.75 * total and np.count_nonzero(part) < 3:
        top = int(left.argmax())
        part[top], left[top] = left[top], 0
        if top >= FERPLUS.num_classes:
            if part.sum() > part[top]:
                part[top] = 0
            break
    return part if part.sum() > 0.5 * total else np.zeros_like(row)


def _multi_part(row: np.ndarray) -> np.ndarray:
    part = np.where(row >= 0.3 * row.sum(), row, 0)
    return part if part.sum() > 0.5 * row.sum() else np.zeros_like(row)


def read_ferplus(root: Path, name: str, use_cache: bool = True) -> tuple[dict, str]:
    """The parsed arrays (images, labels, split_codes, sources, votes, notes) and their cache
    key (the dataset's fingerprint)."""
    rows, label_bytes = _read_labels(root, name)
    stamps = _stamps(root, [relative for relative, _, _ in rows])
    key = f"ferplus-v{VERSION}-" + cache.bytes_fingerprint(repr((label_bytes, stamps)).encode())
    arrays = _cached(key) if use_cache else None
    if arrays is None:
        with cache.scratch_array(key if use_cache else None, "images") as scratch:
            arrays = _parse(root, rows, stamps, scratch)
            if use_cache:
                cache.save_entry(key, {k: v for k, v in arrays.items() if k != "images"},
                                 {"images": scratch})
    return arrays, key


def _read_labels(root: Path, name: str) -> tuple[list[tuple[str, int, list[int]]], list[bytes]]:
    """(relative image path, split code, 10 votes) of every label.csv row, and the files' bytes."""
    rows, contents = [], []
    for folder, split in SPLIT_FOLDERS.items():
        path = root / folder / LABELS
        if not path.is_file():
            continue
        shown = f"{name.rstrip('/')}/{folder}/{LABELS}"
        data = files.read_file(path, shown)
        contents.append(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{shown}: not UTF-8 text") from None
        for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
            if fields:
                rows.append((f"{folder}/{_image(fields, shown, number)}", SPLITS.index(split),
                             _votes(fields, shown, number)))
    if not rows:
        raise DataError(f"{name}: its label.csv files list no faces")
    return rows, contents


def _image(fields: list[str], shown: str, number: int) -> str:
    image = fields[0].strip()
    if not image or "/" in image or "\\" in image or image.startswith("."):
        raise DataError(f"{shown} line {number}: {image!r} is not an image file name")
    return image


def _votes(fields: list[str], shown: str, number: int, before: str = "an image name, a face "
           "box") -> list[int]:
    """The 10 vote counts that end a row of 12 fields (`before`: what the first two are)."""
    try:
        votes = [int(v) for v in fields[2:]]
    except ValueError:
        votes = []
    if len(fields) != 12 or len(votes) != 10:
        raise DataError(f"{shown} line {number}: expected {before} and 10 vote counts "
                        f"({', '.join(VOTE_NAMES)}), got {len(fields)} fields")
    if not all(0 <= v <= MAX_VOTES for v in votes) or not any(votes):
        raise DataError(f"{shown} line {number}: vote counts must be whole numbers from 0 to "
                        f"{MAX_VOTES}, not all 0; got {','.join(fields[2:])}")
    return votes


def join_votes(dataset, codes: np.ndarray, path: Path, shown: str):
    """Kaggle's FER2013 CSV `dataset` (its rows' own split `codes`) with Microsoft's vote file
    `path` (fer2013new.csv: one row per row of Kaggle's original file, in its order) joined row
    by row: the FER+ task, each face's votes and majority label, its FER2013 label kept beside
    them (`FaceDataset.fer2013_labels`). The two files must have as many rows, with the same
    Usage row by row; that is all a positional join can check (see the README)."""
    usages, votes = read_vote_file(path, shown)
    if len(votes) != len(dataset):
        raise DataError(f"{shown} has {len(votes):,} vote rows and {dataset.name} "
                        f"{len(dataset):,} faces: the votes join Kaggle's original fer2013.csv "
                        f"row by row")
    parted = np.flatnonzero(usages != codes)
    if len(parted):
        i = int(parted[0])
        raise DataError(f"{shown} line {i + 2} is {USAGES[usages[i]]} but {dataset.name} "
                        f"{dataset.sources[i]} is {USAGES[codes[i]]}: the files part there (the "
                        f"votes join Kaggle's original, unshuffled fer2013.csv row by row)")
    labels = majority_labels(votes)
    notes = [f"crowd votes joined row by row from {shown}: FER+'s 8 emotions, each face's "
             f"label the crowd's majority, its FER2013 label kept beside it"]
    without = int((labels < 0).sum())
    if without:
        notes.append(f"{without:,} of {len(labels):,} faces have no majority emotion: kept with "
                     f"their votes, left out of accuracy")
    digest = cache.bytes_fingerprint(files.read_file(path, shown))
    return dataclasses.replace(
        dataset, task=FERPLUS, labels=labels, votes=votes, fer2013_labels=dataset.labels,
        layout="kaggle-csv+ferplus", fingerprint=f"{dataset.fingerprint}+votes-{digest}",
        notes=(*dataset.notes, *notes))


def read_vote_file(path: Path, shown: str) -> tuple[np.ndarray, np.ndarray]:
    """fer2013new.csv's rows: each one's split code (from its Usage) and 10 vote counts."""
    text = files.read_file(path, shown).decode("utf-8", errors="replace")
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    if header != [h.lower() for h in VOTE_HEADER]:
        raise DataError(f"{shown} line 1: expected the header {','.join(VOTE_HEADER)}")
    usages, votes = [], []
    for number, fields in enumerate(rows, start=2):
        if not fields:
            continue
        usage = fields[0].strip()
        if usage not in USAGES:
            raise DataError(f"{shown} line {number}: Usage {usage!r} is not one of "
                            f"{', '.join(USAGES)}")
        usages.append(USAGES.index(usage))
        votes.append(_votes(fields, shown, number, "a Usage, an image name"))
    return np.array(usages, dtype=np.uint8), np.array(votes, dtype=np.uint8).reshape(-1, 10)


def _stamps(root: Path, relatives: list[str]) -> list[tuple[int, int] | None]:
    """Each listed image's size and modification time, None where it is missing."""
    stamps = []
    for relative in relatives:
        try:
            info = os.stat(root / relative)
            stamps.append((info.st_size, info.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return stamps


def _cached(key: str) -> dict | None:
    arrays = cache.load_with_array(key, "images")
    if arrays is None or set(arrays) != {"images", "labels", "split_codes", "sources", "votes",
                                         "notes"}:
        return None
    images = arrays["images"]
    well_formed = images.shape[1:] == FERPLUS.shape and arrays["votes"].shape == (len(images), 10)
    return arrays if well_formed else None


def _parse(root: Path, rows: list, stamps: list, scratch: Path) -> dict:
    """Decode the listed images (48x48 grey) and keep each one's votes and majority label."""
    present = [j for j, stamp in enumerate(stamps) if stamp is not None]
    relatives = [rows[j][0] for j in present]
    facts = decode.decode_all(root, relatives, FERPLUS.size, 1, scratch)
    ok = np.array([f.problem is None for f in facts], dtype=bool)
    read = [present[k] for k in np.flatnonzero(ok)]
    images = decode.kept_images(scratch, ok)
    votes = np.array([rows[j][2] for j in read], dtype=np.uint8).reshape(-1, 10)
    labels = majority_labels(votes)
    notes = _notes(rows, present, read, facts, labels)
    return {"images": images, "labels": labels,
            "split_codes": np.array([rows[j][1] for j in read], dtype=np.uint8),
            "sources": np.array([rows[j][0] for j in read], dtype=str), "votes": votes,
            "notes": np.array(notes, dtype=str)}


def _notes(rows, present, read, facts, labels) -> list[str]:
    notes = []
    missing = len(rows) - len(present)
    if missing:
        notes.append(f"{missing:,} image(s) listed in label.csv are missing")
    unread = [f"{rows[present[k]][0]} ({f.problem})" for k, f in enumerate(facts) if f.problem]
    if unread:
        notes.append(f"{len(unread):,} image file(s) skipped: {'; '.join(unread[:5])}")
    resized = sum(f.problem is None and (f.width, f.height) != (48, 48) for f in facts)
    if resized:
        notes.append(f"{resized:,} image(s) not 48x48, resized")
    without = int((labels < 0).sum())
    if without:
        notes.append(f"{without:,} of {len(labels):,} faces have no majority emotion (unknown, "
                     f"not a face, or votes split): kept with their votes, left out of accuracy")
    return notes
