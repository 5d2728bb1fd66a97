"""Read a face dataset from any layout users have: the Kaggle challenge CSV, the homework CSV, a
class-folder tree (`tree`: FER2013's image export, RAF-DB, a user's own folders), FER+'s folders
with their crowd votes (`ferplus`), or the built-in faces.

CSV pixels are parsed with whole-array numpy operations, never one value at a time in Python: the
pixel fields of a block of rows are joined into one byte string, the tokens are located by their
terminating spaces, and each value is assembled from its last three digits. Validation is
vectorized too; only once a problem is found is the offending row parsed again in Python to say
what is wrong with it. Parsed arrays are cached by content fingerprint (see cache.py).

A message names the file, the line and what was expected, and says what kind of thing was found
(text, a number, an empty field), never the content itself: the dashboard shows these messages to
whoever typed the path. Files are read through files.py (regular files only, bounded sizes).
"""

import io
import os
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from .. import cache
from ..errors import DataError
from . import ferplus, files, tree
from .classes import CLASSES
from .classes import FER2013_SIZE as IMAGE_SIZE
from .dataset import SPLITS, FaceDataset, stratified_val_split
from .task import FER2013, Task

PIXELS = IMAGE_SIZE * IMAGE_SIZE
TRAIN, VAL, TEST = (SPLITS.index(s) for s in ("train", "val", "test"))
USAGES = {"Training": TRAIN, "PublicTest": VAL, "PrivateTest": TEST}
# Bump when the parsed arrays change meaning, so old cache entries are no longer used.
PARSE_VERSION = 2  # 2: images (N, 1, 48, 48)

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_PIECE = 1 << 22  # compressed bytes inflated per step
_GZIP_OUT = 1 << 24  # most bytes one inflate step may produce (a gzip bomb inflates 1000:1)
_CHUNK_ROWS = 512  # rows whose pixels are parsed in one set of numpy operations
_LABELS = {str(k).encode(): k for k in range(len(CLASSES))}
_USAGE_CODES = {name.encode(): code for name, code in USAGES.items()}
_BUILTIN = re.compile(r"builtin(?::(.*))?")
MAX_BUILTIN_FACES = 100_000  # drawn in the caller's thread: about 10 s and 230 MB


class _CsvColumns(NamedTuple):
    """A recognised CSV header: the layout, the column count and where each column is."""

    layout: str
    count: int
    pixels: int
    label: int | None
    usage: int | None


_HEADERS = {  # sorted, lower-cased header names -> layout
    ("emotion", "pixels", "usage"): "kaggle-csv",
    ("feature", "label"): "homework-csv",
    ("feature", "id"): "homework-csv",
}


def load_dataset(spec: str | os.PathLike, *, use_cache: bool = True, val_fraction: float = 0.1,
                 seed: int = 0, options: "tree.ReadOptions | None" = None,
                 report=None) -> FaceDataset:
    """Load 'builtin', 'builtin:N', a CSV (plain or gzipped) or a class-folder tree (`tree`;
    `options` say how where the tree does not, `report` hears its decoded size first).

    When the source has training rows but no validation rows, a stratified, seeded
    `val_fraction` of the training rows becomes the validation split.
    """
    options = options or tree.ReadOptions()
    path, name = Path(spec), str(spec)
    if options != tree.ReadOptions() and not (_BUILTIN.fullmatch(name) is None and path.is_dir()
                                              and not ferplus.is_ferplus(path)):
        if options.classes is not None:
            raise DataError(f"{name}: not a class-folder tree; --classes "
                            f"({options.describe()}) reads trees only")
        dataset = load_dataset(spec, use_cache=use_cache, val_fraction=val_fraction, seed=seed)
        return converted(dataset, options.size, options.channels)
    if isinstance(spec, str) and (match := _BUILTIN.fullmatch(spec)):
        return _load_builtin(spec, match.group(1))
    files.check_allowed(spec, name)
    if path.is_dir() and ferplus.is_ferplus(path) and options == tree.ReadOptions():
        return _load_ferplus(path, name, use_cache)
    if path.is_dir():
        return _load_tree(path, name, options, report, use_cache, val_fraction, seed)
    data = files.read_file(path, name)
    digest = cache.bytes_fingerprint(data)
    key = f"faces-v{PARSE_VERSION}-{digest}"
    arrays = _cached(key) if use_cache else None
    if arrays is None:
        arrays = _parse_csv(data, name)
        if use_cache:
            cache.save_arrays(key, arrays)
    dataset = _dataset(arrays, name, digest, val_fraction, seed)
    votes = path.with_name(ferplus.VOTE_FILE)
    if dataset.layout == "kaggle-csv" and votes.is_file():
        return ferplus.join_votes(dataset, arrays["split_codes"], votes,
                                  str(Path(name).with_name(ferplus.VOTE_FILE)))
    return dataset


def _load_tree(path: Path, name: str, options: "tree.ReadOptions", report, use_cache: bool,
               val_fraction: float, seed: int) -> FaceDataset:
    try:
        arrays, digest = tree.read_tree(path, name, options, report, use_cache)
    except OSError as exc:
        raise DataError(f"{exc.filename or name}: cannot read ({exc.strerror or exc})") from None
    arrays["layout"] = np.array("class-folders")
    return _dataset(arrays, name, digest, val_fraction, seed, tree.task_of(arrays),
                    tuple(arrays["notes"].tolist()))


def _load_ferplus(path: Path, name: str, use_cache: bool) -> FaceDataset:
    arrays, digest = ferplus.read_ferplus(path, name, use_cache)
    return FaceDataset(images=arrays["images"], labels=arrays["labels"],
                       split_codes=arrays["split_codes"], sources=arrays["sources"], name=name,
                       layout="ferplus-folders", fingerprint=digest, task=ferplus.FERPLUS,
                       notes=tuple(arrays["notes"].tolist()), votes=arrays["votes"])


def converted(dataset: FaceDataset, size: int | None, channels: int | None) -> FaceDataset:
    """`dataset`'s faces at `size` and with `channels` (None: as they are): --size and
    --channels on data other than a tree, e.g. FER2013's grey faces repeated for a 3-channel
    model (`matching.for_model`, which says what it did in the notes)."""
    from .matching import for_model

    task = dataset.task
    return for_model(dataset, Task(task.classes, size or task.size, channels or task.channels))


def _load_builtin(spec: str, count: str | None) -> FaceDataset:
    from .builtin import make_builtin_faces

    if count is not None and not (count.isdigit() and 0 < int(count) <= MAX_BUILTIN_FACES):
        raise DataError(f"{spec[:40]}: expected 'builtin' or 'builtin:N' with N from 1 to "
                        f"{MAX_BUILTIN_FACES:,}")
    return make_builtin_faces(n=int(count or 10000), seed=0)


def _cached(key: str) -> dict[str, np.ndarray] | None:
    """A cache entry, if it holds well-formed parsed arrays."""
    arrays = cache.load_arrays(key)
    if arrays is None or set(arrays) != {"images", "labels", "split_codes", "sources", "layout"}:
        return None
    images = arrays["images"]
    well_formed = (
        images.dtype == np.uint8 and images.shape[1:] == (1, IMAGE_SIZE, IMAGE_SIZE)
        and arrays["labels"].dtype == np.int64 and arrays["split_codes"].dtype == np.uint8
        and arrays["sources"].dtype.kind == "U" and arrays["layout"].dtype.kind == "U"
        and all(arrays[k].shape == (len(images),) for k in ("labels", "split_codes", "sources"))
    )
    return arrays if well_formed else None


def _dataset(arrays: dict[str, np.ndarray], name: str, digest: str, val_fraction: float,
             seed: int, task: Task = FER2013, notes: tuple[str, ...] = ()) -> FaceDataset:
    """The FaceDataset, with a validation split carved from train when the source has none."""
    labels, codes = arrays["labels"], arrays["split_codes"]
    train = np.flatnonzero(codes == TRAIN)
    fingerprint = digest
    if len(train) and not (codes == VAL).any() and val_fraction > 0:
        codes = codes.copy()
        codes[train[stratified_val_split(labels[train], val_fraction, seed)]] = VAL
        fingerprint = f"{digest}:val{val_fraction:g}-seed{seed}"
    return FaceDataset(images=arrays["images"], labels=labels, split_codes=codes,
                       sources=arrays["sources"], name=name, layout=str(arrays["layout"]),
                       fingerprint=fingerprint, task=task, notes=notes)


# ----------------------------------------------------------------------------------------- CSV


def _parse_csv(data: bytes, name: str) -> dict[str, np.ndarray]:
    """Parse a Kaggle or homework CSV (plain or gzipped) into the cached arrays."""
    columns, line = None, 2
    images, labels, codes, lines = [], [], [], []
    with closing(_text_pieces(data, name)) as pieces:  # on an error, stop inflating at once
        for text, start, stop in _line_ranges(pieces):
            if columns is None:
                columns, start = _header(text, start, stop, name)
            spans, numbers, line = _rows(text, start, stop, line, columns.count, name)
            for row in range(0, len(numbers), _CHUNK_ROWS):
                chunk, chunk_lines = spans[row:row + _CHUNK_ROWS], numbers[row:row + _CHUNK_ROWS]
                images.append(_pixels(text, chunk[:, columns.pixels], chunk_lines, name))
                labels.append(_labels(text, chunk, columns, chunk_lines, name))
                codes.append(_split_codes(text, chunk, columns, chunk_lines, name))
            lines.append(numbers)
    if columns is None:
        raise DataError(f"{name}: file is empty")
    if not images:
        raise DataError(f"{name}: no faces after the header")
    numbers = np.concatenate(lines)
    return {
        "images": np.concatenate(images),
        "labels": np.concatenate(labels),
        "split_codes": np.concatenate(codes),
        "sources": np.char.add("line ", numbers.astype(str)),
        "layout": np.array(columns.layout),
    }


def _text_pieces(data: bytes, name: str) -> Iterator[bytes]:
    """The file's text: inflated piece by piece in a worker thread when gzipped, else whole."""
    if data[:2] == _GZIP_MAGIC:
        yield from _read_ahead(_gunzip(data, name))
    else:
        yield data


def _gunzip(data: bytes, name: str) -> Iterator[bytes]:
    """Decompressed pieces of gzip data (one or more members), so parsing starts early; no more
    than files.MAX_DATA_BYTES in all, each step producing at most _GZIP_OUT bytes."""
    view, start, total = memoryview(data), 0, 0
    while start < len(data):
        inflater = zlib.decompressobj(wbits=31)
        try:
            for piece in range(start, len(data), _GZIP_PIECE):
                pending = view[piece:piece + _GZIP_PIECE]
                while pending and not inflater.eof:
                    out = inflater.decompress(pending, _GZIP_OUT)
                    pending = inflater.unconsumed_tail
                    total += len(out)
                    if total > files.MAX_DATA_BYTES:
                        raise files.TooLarge(name, "inflates to more than")
                    if out:
                        yield out
                if inflater.eof:
                    break
        except zlib.error as exc:
            raise DataError(f"{name}: damaged gzip data ({exc})") from None
        if not inflater.eof:
            raise DataError(f"{name}: gzip data ends early (truncated file?)")
        start = min(piece + _GZIP_PIECE, len(data)) - len(inflater.unused_data)
        while start < len(data) and data[start] == 0:  # zero padding after a member is allowed
            start += 1


def _read_ahead(items: Iterator[bytes]) -> Iterator[bytes]:
    """Yield `items`, producing the next one in a worker thread while the caller handles the
    current one (zlib releases the GIL, so inflating overlaps with parsing)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = worker.submit(next, items, None)
            yield item


def _line_ranges(pieces) -> Iterator[tuple[bytes, int, int]]:
    """(text, start, stop) ranges of whole lines: each piece's complete lines in place, and each
    line cut by a piece boundary joined into a small text of its own."""
    carry = b""
    for piece in pieces:
        first = piece.find(b"\n") + 1
        if first == 0:
            carry += piece
            continue
        yield carry + piece[:first], 0, len(carry) + first
        last = piece.rfind(b"\n") + 1
        yield piece, first, last
        carry = piece[last:]
    if carry:
        yield carry, 0, len(carry)


def _header(text: bytes, start: int, stop: int, name: str) -> tuple[_CsvColumns, int]:
    """The columns named by the header line, and where the next line starts."""
    end = text.find(b"\n", start, stop)
    end = stop if end < 0 else end
    header = text[start:end].removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").strip()
    fields = [f.strip().lower() for f in header.split(",")]
    layout = _HEADERS.get(tuple(sorted(fields)))
    if layout is None:
        problem = _header_problem(text[start:end])
        raise DataError(f"{name} line 1: {problem}; expected a CSV whose first line is the "
                        "header 'emotion,pixels,Usage', 'label,feature' or 'id,feature'")
    index = {field: i for i, field in enumerate(fields)}
    label = index.get("emotion", index.get("label"))
    columns = _CsvColumns(layout, len(fields), index.get("pixels", index.get("feature")), label,
                          index.get("usage"))
    return columns, end + 1


def _header_problem(line: bytes) -> str:
    """What kind of first line this is, in words that quote none of it."""
    line = line.removeprefix(b"\xef\xbb\xbf").strip()
    if not line:
        return "the line is blank"
    if b"\0" in line or not _is_utf8(line):
        return "a binary file, not a CSV"
    if line[:1].isdigit():
        return "found a data row, the header is missing"
    return "a text file whose first line is not a FER2013 header"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _field_kind(value: bytes) -> str:
    """What kind of value a field holds, without quoting it."""
    if not value:
        return "an empty field"
    if value.removeprefix(b"-").isdigit():
        return "a number outside the range"
    if value.replace(b".", b"", 1).removeprefix(b"-").isdigit():
        return "a decimal number"
    return "text"


def _rows(text: bytes, start: int, stop: int, line: int, count: int,
          name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Field spans (rows, count, 2) of the non-blank lines in text[start:stop], their line numbers,
    and the number of the line after them."""
    spans, numbers = [], []
    while start < stop:
        end = text.find(b"\n", start, stop)
        end = stop if end < 0 else end
        row_end = end - 1 if end > start and text[end - 1] == 13 else end  # drop a CR of CRLF
        cuts = [start - 1]
        while (cut := text.find(b",", cuts[-1] + 1, row_end)) >= 0:
            cuts.append(cut)
        cuts.append(row_end)
        if len(cuts) - 1 == count:
            spans.append([(a + 1, b) for a, b in pairwise(cuts)])
            numbers.append(line)
        elif text[start:row_end].strip():
            raise DataError(f"{name} line {line}: expected {count} comma-separated fields, "
                            f"found {len(cuts) - 1}")
        start, line = end + 1, line + 1
    spans = np.array(spans, dtype=np.int64).reshape(-1, count, 2)
    return spans, np.array(numbers, dtype=np.int64), line


def _labels(text: bytes, spans: np.ndarray, columns: _CsvColumns, lines: np.ndarray,
            name: str) -> np.ndarray:
    if columns.label is None:
        return np.full(len(spans), -1, dtype=np.int64)
    fields = _field_values(text, spans[:, columns.label])
    labels = np.array([_LABELS.get(f, -1) for f in fields], dtype=np.int64)
    if (bad := np.flatnonzero(labels < 0)).size:
        raise DataError(f"{name} line {lines[bad[0]]}: label is not an integer 0-6 (found "
                        f"{_field_kind(fields[bad[0]])})")
    return labels


def _split_codes(text: bytes, spans: np.ndarray, columns: _CsvColumns, lines: np.ndarray,
                 name: str) -> np.ndarray:
    """Usage -> split for the Kaggle layout; homework files are all train (labelled) or test."""
    if columns.usage is None:
        return np.full(len(spans), TRAIN if columns.label is not None else TEST, dtype=np.uint8)
    fields = _field_values(text, spans[:, columns.usage])
    codes = np.array([_USAGE_CODES.get(f, 255) for f in fields], dtype=np.uint8)
    if (bad := np.flatnonzero(codes == 255)).size:
        raise DataError(f"{name} line {lines[bad[0]]}: Usage is not Training, PublicTest or "
                        f"PrivateTest (found {_field_kind(fields[bad[0]])})")
    return codes


def _field_values(text: bytes, spans: np.ndarray) -> list[bytes]:
    """One column's fields, without surrounding blanks."""
    return [text[a:b].strip() for a, b in spans.tolist()]


def _pixels(text: bytes, spans: np.ndarray, lines: np.ndarray, name: str) -> np.ndarray:
    """Pixel fields text[a:b] -> uint8 (rows, 1, 48, 48), checking every value with numpy.

    The fields are joined by single spaces after three sentinel spaces, so every value ends at a
    space and its units, tens and hundreds digits sit 1, 2 and 3 bytes before that space.
    """
    view = memoryview(text)
    fields = [view[a:b] for a, b in spans.tolist()]
    buffer = np.frombuffer(b" ".join([b"  ", *fields, b""]), dtype=np.uint8)
    row_ends = 2 + np.cumsum(spans[:, 1] - spans[:, 0] + 1)  # the space after each row
    digits = buffer - np.uint8(ord("0"))  # a space becomes 240, anything but a digit > 9
    is_space = buffer == ord(" ")
    ends = np.flatnonzero(is_space)[3:]
    before = ends - 4  # gathering from shifted views with one index array is twice as fast
    thousands, hundreds, tens, units = (digits[k:][before] for k in range(4))
    has_tens = tens < 10
    has_hundreds = has_tens & (hundreds < 10)
    values = (hundreds * has_hundreds).astype(np.uint16) * 100
    values += (tens * has_tens) * np.uint8(10)
    values += units
    only_digits_and_spaces = np.count_nonzero(digits < 10) + len(ends) + 3 == len(buffer)
    bad_value = (units > 9) | (has_hundreds & (thousands < 10)) | (values > 255)
    counts = np.diff(np.searchsorted(ends, row_ends, side="right"), prepend=0)
    if not only_digits_and_spaces or bad_value.any() or (counts != PIXELS).any():
        bad_char = (digits > 9) & ~is_space
        first_bad = min(np.flatnonzero(bad_char)[:1].tolist() + ends[bad_value][:1].tolist()
                        + row_ends[counts != PIXELS][:1].tolist())
        row = int(np.searchsorted(row_ends, first_bad))
        raise DataError(f"{name} line {lines[row]}: {_pixel_problem(bytes(fields[row]))}")
    return values.astype(np.uint8).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def _pixel_problem(field: bytes) -> str:
    """What is wrong with one row's pixel field (only called once a problem has been found);
    a bad value is named by its position (1 = top left), not quoted."""
    values = [value for value in field.split(b" ") if value]
    for position, value in enumerate(values, 1):
        if not value.removeprefix(b"-").isdigit():
            return f"pixel {position} is not a number (found {_field_kind(value)})"
    if len(values) != PIXELS:
        return f"expected {PIXELS} pixel values, found {len(values)}"
    for position, value in enumerate(values, 1):
        if value.startswith(b"-") or len(value) > 3 or int(value) > 255:
            return f"pixel {position} is outside 0-255"
    if len(values) != field.count(b" ") + 1:
        return "empty pixel value (an extra space)"
    return "malformed pixel values"


def is_builtin_spec(spec: str | os.PathLike) -> bool:
    """Whether `spec` names the built-in faces ('builtin' or 'builtin:N'), not a file."""
    return isinstance(spec, str) and _BUILTIN.fullmatch(spec) is not None


def _with_votes(path: Path) -> list[Path]:
    """A CSV and, when it lies beside it, the vote file joined to it."""
    votes = path.with_name(ferplus.VOTE_FILE)
    return [path, votes] if votes.is_file() and votes != path else [path]


def source_stamp(spec: str | os.PathLike) -> tuple | None:
    """A cheap stamp of what `load_dataset(spec)` reads, which changes whenever it does: a file's
    identity, size and mtime; for an image folder, the names, sizes and mtimes of its images
    (no file is opened). None for the built-in faces and for a path that cannot be read or is
    not allowed (nothing about such a path is looked up)."""
    if is_builtin_spec(spec):
        return None
    try:
        files.check_allowed(spec, str(spec))
        path = Path(spec)
        if not path.is_dir():
            return tuple((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
                         for info in map(os.stat, _with_votes(path)))
        if ferplus.is_ferplus(path):
            return "folder", ferplus.listing_stamp(path)
        return "folder", tree.listing_key(tree.list_tree(path, str(spec)))
    except (DataError, OSError):
        return None
