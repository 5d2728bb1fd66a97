"""Class-folder trees: `train/<class>/*`, `test/<class>/*` and `val/` or `valid/` where present
(torchvision's ImageFolder convention), of any emotions, any size, grey or colour, in any format
Pillow reads.

The task comes from the tree:
- classes: the folder names as written, sorted (case-insensitively); FER2013's image export (its
  seven emotion folders) keeps FER2013's names and order; numeric folders (RAF-DB copies use
  1..7) take their names, in numeric order, from `classes` or a `classes.txt` beside the split
  folders (one name per line), which also orders named folders when given;
- channels: grey when every image is stored grey or has R = G = B everywhere, else colour;
  `channels` overrides;
- size: images are centre-cropped to squares; a tree of mixed sizes is resized (antialiased) to
  its most common size, or every image to `size` when given.

Reading opens each file once, on every core (`decode`), at the size and channels a sample of
headers suggests; that decoded size is checked against the memory budget before a single image
is decoded. The parsed arrays are cached under a key made of the file names, sizes and
modification times and the options: no file is opened to find a cached read, and the images
are mapped from the cache file, not read whole.
"""

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import cache
from ..choices import SPLITS
from ..errors import DataError
from . import decode, files
from .classes import CLASSES, FOLDER_NAMES
from .task import CHANNEL_NAMES, Task, task_problem

SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
CLASSES_FILE = "classes.txt"
FER2013_PREFIXES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
TREE_VERSION = 2  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class ReadOptions:
    """How to read a tree where it does not say: class names (for numeric folders, or an order),
    the image size and the channels; None: from the tree."""

    classes: tuple[str, ...] | None = None
    size: int | None = None
    channels: int | None = None

    def describe(self) -> str:
        given = [f"{k}={v}" for k, v in (("size", self.size), ("channels", self.channels)) if v]
        return ", ".join(given + ([f"classes={','.join(self.classes)}"] if self.classes else []))


@dataclass(frozen=True)
class Listing:
    """The image files of a tree, sorted: each one's path relative to the root, split code,
    class folder, size in bytes and modification time."""

    root: Path
    relatives: list[str]
    splits: np.ndarray
    folders: list[str]
    stamps: list[tuple[int, int]]


def list_tree(root: Path, name: str) -> Listing:
    """Every image under root/<split>/<class>/, sorted; none of them is opened. A DataError for
    a tree without class folders, an empty class folder, or class names that collide."""
    suffixes = decode.image_suffixes()
    relatives, splits, folders, stamps = [], [], [], []
    for split_dir in _split_dirs(root, name):
        class_dirs = sorted((d for d in os.scandir(split_dir) if _visible_dir(d)),
                            key=lambda d: d.name)
        _check_collisions(split_dir, [d.name for d in class_dirs], root)
        for class_dir in class_dirs:
            images = sorted((f for f in os.scandir(class_dir.path)
                             if not f.is_dir() and not f.name.startswith(".")
                             and os.path.splitext(f.name)[1].lower() in suffixes),
                            key=lambda f: f.name)
            if not images:
                raise DataError(f"{_shown(root, name, class_dir.path)}: empty class folder (no "
                                f"image files)")
            folder = f"{split_dir.name}/{class_dir.name}/"
            for entry in images:
                info = entry.stat(follow_symlinks=False)
                relatives.append(folder + entry.name)
                splits.append(SPLITS.index(SPLIT_FOLDERS[split_dir.name.lower()]))
                folders.append(class_dir.name)
                stamps.append((info.st_size, info.st_mtime_ns))
    if not relatives:
        raise DataError(f"{name}: no class folders in its {'/, '.join(SPLIT_FOLDERS)}/ folders")
    return Listing(root, relatives, np.array(splits, dtype=np.uint8), folders, stamps)


def _split_dirs(root: Path, name: str) -> list[os.DirEntry]:
    found = [d for d in os.scandir(root) if d.is_dir() and d.name.lower() in SPLIT_FOLDERS]
    if not found:
        raise DataError(f"{name}: no train/, val/, valid/ or test/ folder with class sub-folders")
    return sorted(found, key=lambda d: list(SPLIT_FOLDERS).index(d.name.lower()))


def _visible_dir(entry: os.DirEntry) -> bool:
    return entry.is_dir() and not entry.name.startswith(".")


def _check_collisions(split_dir: os.DirEntry, names: list[str], root: Path) -> None:
    seen = {}
    for folder in names:
        other = seen.setdefault(folder.casefold(), folder)
        if other != folder:
            raise DataError(f"{_shown(root, str(root), split_dir.path)}: class folders {other!r} "
                            f"and {folder!r} differ only in case")


def _shown(root: Path, name: str, path: str) -> str:
    """`path` as the user named it: under `name` (the spec they typed)."""
    return f"{name.rstrip('/')}/{Path(path).relative_to(root).as_posix()}"


def class_names(listing: Listing, classes: tuple[str, ...] | None, name: str) -> tuple[str, ...]:
    """The task's class names in output order (see the module docstring)."""
    by_fold = {}
    for folder in listing.folders:
        by_fold.setdefault(folder.casefold(), folder)
    classes = classes or _classes_file(listing.root, name)
    if all(folder.isdigit() for folder in by_fold):
        return _numeric_names(sorted(by_fold.values(), key=int), classes, name)
    if classes is not None:
        return _ordered_by(classes, by_fold, name)
    if set(by_fold) == set(FOLDER_NAMES):
        return CLASSES
    return tuple(by_fold[k] for k in sorted(by_fold))


def _classes_file(root: Path, name: str) -> tuple[str, ...] | None:
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    text = files.read_file(path, f"{name.rstrip('/')}/{CLASSES_FILE}", 1 << 16)
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{name.rstrip('/')}/{CLASSES_FILE}: not UTF-8 text") from None
    return tuple(line.strip() for line in lines if line.strip())


def _numeric_names(folders: list[str], classes, name: str) -> tuple[str, ...]:
    if classes is None:
        raise DataError(f"{name}: class folders are numbers ({', '.join(folders)}): name them "
                        f"with --classes or a {CLASSES_FILE} beside the split folders")
    if len(classes) != len(folders):
        raise DataError(f"{name}: {len(classes)} class names given for {len(folders)} numeric "
                        f"class folders ({', '.join(folders)})")
    return tuple(classes)


def _ordered_by(classes: tuple[str, ...], by_fold: dict[str, str], name: str) -> tuple[str, ...]:
    given = {c.casefold() for c in classes}
    if len(classes) != len(by_fold) or given != set(by_fold):
        raise DataError(f"{name}: class names given ({', '.join(classes)}) are not the class "
                        f"folders ({', '.join(sorted(by_fold.values()))})")
    return tuple(by_fold[c.casefold()] for c in classes)


def read_tree(root: Path, name: str, options: ReadOptions, report=None,
              use_cache: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """The tree's parsed arrays (images N x C x S x S, labels, split codes, sources, classes,
    notes), from the cache when the listing and options are unchanged, and that cache key (the
    dataset's fingerprint). `report(line)`, when given, hears the decoded size before decoding
    starts."""
    listing = list_tree(root, name)
    classes = class_names(listing, options.classes, name)
    _check_task(classes, options, name)
    key = f"tree-v{TREE_VERSION}-" + cache.bytes_fingerprint(
        repr((listing_key(listing), options, _classes_stamp(root))).encode())
    arrays = _cached(key) if use_cache else None
    if arrays is None:
        with cache.scratch_array(key if use_cache else None, "images") as scratch:
            arrays = _parse(listing, classes, options, name, report, scratch)
            if use_cache:
                cache.save_entry(key, {k: v for k, v in arrays.items() if k != "images"},
                                 {"images": scratch})
    return arrays, key


def _cached(key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays: the images kept beside the entry (mapped, not read), the rest in it."""
    arrays = cache.load_with_array(key, "images")
    return arrays if arrays is not None and _well_formed(arrays) else None


def _check_task(classes, options: ReadOptions, name: str) -> None:
    problem = task_problem(classes, options.size or 48, options.channels or 1)
    if problem:
        raise DataError(f"{name}: {problem}")


def listing_key(listing: Listing) -> str:
    """A hash of the tree's file names, sizes and modification times: it changes whenever a
    file does, and no file is opened to make it."""
    return cache.bytes_fingerprint(repr((listing.relatives, listing.stamps)).encode())


def _classes_stamp(root: Path) -> tuple | None:
    try:
        info = (root / CLASSES_FILE).stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _well_formed(arrays: dict[str, np.ndarray]) -> bool:
    names = {"images", "labels", "split_codes", "sources", "classes", "notes"}
    if set(arrays) != names:
        return False
    images, n = arrays["images"], len(arrays["images"])
    return (images.dtype == np.uint8 and images.ndim == 4 and images.shape[1] in (1, 3)
            and images.shape[2] == images.shape[3]
            and all(arrays[k].shape == (n,) for k in ("labels", "split_codes", "sources")))


def _parse(listing: Listing, classes: tuple[str, ...], options: ReadOptions, name: str,
           report, scratch: Path) -> dict[str, np.ndarray]:
    """Decode the tree into `scratch` at the size and channels its sample suggests, and again in
    the rare tree where the whole disagrees (see the module docstring of `decode`)."""
    size, channels = _guess(decode.sample_headers(listing.root, listing.relatives), options)
    check_memory(len(listing.relatives), size, channels, name)
    if report is not None:
        report(f"{name}: decoding {len(listing.relatives):,} images as {size}x{size} "
               f"{CHANNEL_NAMES[channels]}: "
               f"{human_bytes(len(listing.relatives) * size * size * channels)}")
    facts = decode.decode_all(listing.root, listing.relatives, size, channels, scratch)
    kept = np.array([f.problem is None for f in facts], dtype=bool)
    if not kept.any():
        raise DataError(f"{name}: none of its {len(facts):,} image files could be read "
                        f"({listing.relatives[0]}: {facts[0].problem})")
    found = _found(facts, kept, options)
    if found[0] != size or found[1] > channels:
        check_memory(len(listing.relatives), *found, name)
        facts = decode.decode_all(listing.root, listing.relatives, *found, scratch)
        kept = np.array([f.problem is None for f in facts], dtype=bool)
    images = decode.kept_images(scratch, kept, found[1])
    notes = _notes(listing, facts, kept, found[0], options)
    return _arrays(listing, classes, images, np.flatnonzero(kept), notes)


def _guess(sample: list[decode.Facts], options: ReadOptions) -> tuple[int, int]:
    """The size and channels a sample of headers suggests (or the options fix)."""
    readable = [f for f in sample if f.problem is None] or [decode.Facts(48, 48, True)]
    size = options.size or Counter(f.side for f in readable).most_common(1)[0][0]
    return size, options.channels or (1 if all(f.stored_grey for f in readable) else 3)


def _found(facts: list[decode.Facts], kept: np.ndarray, options: ReadOptions) -> tuple[int, int]:
    """The size and channels of the whole tree (or the options): its most common side; grey
    when every image's pixels are."""
    readable = [f for f, ok in zip(facts, kept) if ok]
    size = options.size or Counter(f.side for f in readable).most_common(1)[0][0]
    return size, options.channels or (1 if all(f.plain_grey for f in readable) else 3)


def _notes(listing, facts, kept, size, options) -> list[str]:
    notes = []
    skipped = np.flatnonzero(~kept).tolist()
    if skipped:
        shown = "; ".join(f"{listing.relatives[i]} ({facts[i].problem})" for i in skipped[:5])
        more = f" and {len(skipped) - 5:,} more" if len(skipped) > 5 else ""
        notes.append(f"{len(skipped):,} image file(s) skipped: {shown}{more}")
    readable = [f for f, ok in zip(facts, kept) if ok]
    cropped = sum(f.width != f.height for f in readable)
    if cropped:
        notes.append(f"{cropped:,} non-square image(s) centre-cropped to squares")
    resized = sum(f.side != size for f in readable)
    if resized:
        why = "--size" if options.size else "the most common size"
        notes.append(f"{resized:,} image(s) resized to {size}x{size} ({why})")
    return notes


def _arrays(listing: Listing, classes, images, kept, notes) -> dict[str, np.ndarray]:
    index = _label_of_folder(listing, classes)
    labels = np.array([index[listing.folders[i].casefold()] for i in kept], dtype=np.int64)
    splits = listing.splits[kept].copy()
    if tuple(classes) == CLASSES:
        splits = _fer2013_splits(listing, kept, splits)
    return {"images": images, "labels": labels, "split_codes": splits,
            "sources": np.array([listing.relatives[i] for i in kept], dtype=str),
            "classes": np.array(classes, dtype=str), "notes": np.array(notes, dtype=str)}


def _label_of_folder(listing: Listing, classes) -> dict[str, int]:
    """Each class folder's label (by its case-folded name): numeric folders in numeric order,
    named ones by the class they name."""
    folders = {f.casefold() for f in listing.folders}
    if all(f.isdigit() for f in folders):
        return {f: k for k, f in enumerate(sorted(folders, key=int))}
    return {c.casefold(): k for k, c in enumerate(classes)}


def _fer2013_splits(listing: Listing, kept: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """FER2013's image export names each file's Kaggle usage (Training_, PublicTest_,
    PrivateTest_): that, not the folder, is the face's split."""
    for j, i in enumerate(kept):
        prefix = listing.relatives[i].rsplit("/", 1)[-1].split("_", 1)[0]
        if prefix in FER2013_PREFIXES:
            splits[j] = SPLITS.index(FER2013_PREFIXES[prefix])
    return splits


def task_of(arrays: dict[str, np.ndarray]) -> Task:
    """The task of a parsed tree."""
    images = arrays["images"]
    return Task(tuple(arrays["classes"].tolist()), images.shape[2], images.shape[1])


def human_bytes(n: int) -> str:
    """'460 MB', '43.7 GB'."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def memory_budget() -> int:
    """Bytes a decoded dataset may take: FER_MEMORY_BUDGET (bytes, or a number with K, M or G)
    when set, else half of this machine's memory."""
    configured = os.environ.get("FER_MEMORY_BUDGET", "").strip()
    if configured:
        return _parse_bytes(configured)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _parse_bytes(text: str) -> int:
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1].upper(), 1)
    number = text[:-1] if text[-1].upper() in "KMG" else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise DataError(f"FER_MEMORY_BUDGET={text!r}: expected bytes, e.g. 8G or 500M") from None


def check_memory(n: int, size: int, channels: int, name: str) -> None:
    """Refuse a dataset whose decoded faces would pass the memory budget, suggesting a size."""
    need, budget = n * size * size * channels, memory_budget()
    if need <= budget:
        return
    fits = int((budget / (n * channels)) ** 0.5)
    hint = (f"; pass --size {fits} or less" if fits >= 8
            else "; it is too many faces for this machine")
    whose = ("FER_MEMORY_BUDGET" if os.environ.get("FER_MEMORY_BUDGET", "").strip()
             else "half this machine's memory; FER_MEMORY_BUDGET sets it")
    raise DataError(f"{name}: {n:,} faces at {size}x{size} {'grey' if channels == 1 else 'colour'} "
                    f"need {human_bytes(need)}, over the memory budget of {human_bytes(budget)} "
                    f"({whose}){hint}")
