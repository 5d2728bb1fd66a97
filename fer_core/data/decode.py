"""Decoding a tree's image files into one uint8 array, on every core, with Pillow.

Pillow only: torchvision's decoders are twice as fast on a small JPEG, but they crash the whole
process (a segmentation fault, not an exception) on some damaged PNGs, and the dashboard is a
server. Pillow's Python work per image outweighs its decoding on a 100x100 face, so threads
would take turns; a large tree is decoded by worker processes instead, a small one in this
process.

Each file is opened once: its header (size, mode) and its pixels are read in the same opening,
and the pixels are written straight into a .npy file (the cache entry in the making: see
`tree.read_tree`), so the array is neither sent between processes nor copied to be cached. The
size and channels to decode to are guessed from a sample of headers first; the caller decodes
again in the rare tree where the whole disagrees with its sample.

A file that cannot be read is skipped and reported, never fatal: one damaged JPEG in 15,000
should not stop a dataset from loading.
"""

import dataclasses
import functools
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import cache
from ..errors import DataError
from . import files
from .pictures import is_grey_mode

CHUNK = 512  # files decoded into a buffer before it is written
PROCESS_FILES = 2000  # trees of fewer files are decoded in this process (no start-up cost)
FLUSH_EVERY_S = 0.25


SAMPLE = 64  # headers read to guess a tree's size and channels


@dataclass
class Facts:
    """What one file turned out to be: its size, whether Pillow stores it grey, whether its
    pixels are grey (stored grey, or R = G = B everywhere), or why it cannot be read."""

    width: int = 0
    height: int = 0
    stored_grey: bool = False
    plain_grey: bool = False
    problem: str | None = None

    @property
    def side(self) -> int:
        return min(self.width, self.height)


@functools.cache
def suffix_formats() -> dict[str, str]:
    """Pillow's format for each file name ending it reads ('.jpg': 'JPEG', '.png': 'PNG'...)."""
    Image.init()
    return {ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def image_suffixes() -> frozenset[str]:
    """The file name endings of every format Pillow reads ('.jpg', '.png', '.webp'...)."""
    return frozenset(suffix_formats())


def open_image(path: str) -> Image.Image:
    """The image in file `path` (a regular file, read whole through `files.read_file`), opened
    as the format its name says first: Pillow otherwise tries its plugins in turn, which took
    3/4 of a 100x100 JPEG's header time. A file named for another format is still opened."""
    data = io.BytesIO(files.read_file(path, path))
    named = suffix_formats().get(os.path.splitext(path)[1].lower())
    try:
        return Image.open(data, formats=[named] if named else None)
    except Image.UnidentifiedImageError:
        if named is None:
            raise
        data.seek(0)
        return Image.open(data)


def workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def sample_headers(root: Path, relatives: list[str]) -> list[Facts]:
    """The headers (size, stored grey) of up to SAMPLE files spread evenly over the tree."""
    step = max(1, len(relatives) // SAMPLE)
    return [_header(str(root / relative)) for relative in relatives[::step][:SAMPLE]]


def decode_all(root: Path, relatives: list[str], size: int, channels: int,
               target: Path) -> list[Facts]:
    """Every file, centre-cropped to a square and resized (antialiased) to `size`, with
    `channels` channels (colour to grey as luminance, grey to colour repeated), written to row i
    of a new uint8 .npy file `target` (N x C x size x size; a file that cannot be read leaves
    its row zero): what each file turned out to be."""
    shape = (len(relatives), channels, size, size)
    offset = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape).offset
    paths = [str(root / r) for r in relatives]
    if len(paths) < PROCESS_FILES or workers() == 1:
        return _decode_range(str(target), offset, shape[1:], 0, paths)
    return _in_workers(target, offset, shape[1:], paths)


def kept_images(target: Path, kept: np.ndarray, channels: int | None = None) -> np.ndarray:
    """The faces `decode_all` wrote to `target` of the files that could be read (`kept`), in
    `channels` channels when given (a colour decode of a tree that turned out grey keeps one),
    mapped from the file; it is rewritten to hold just those when that drops anything (rare),
    so that it can be cached as it is."""
    images = cache.map_array(target)
    channels = channels or images.shape[1]
    if kept.all() and images.shape[1] == channels:
        return images
    images = np.ascontiguousarray(images[kept][:, :channels])
    target.unlink()  # a new file: the old one's mapping stays valid
    with open(target, "wb") as f:
        np.save(f, images)
    return images


def _decode_range(target: str, offset: int, face_shape: tuple, start: int,
                  paths: list[str]) -> list[Facts]:
    """Decode `paths` into rows start.. of `target`, CHUNK files at a time."""
    facts = []
    for at in range(0, len(paths), CHUNK):
        facts += _decode_into(target, offset, face_shape, start + at, paths[at:at + CHUNK],
                              colour_seen=any(not (f.plain_grey or f.problem) for f in facts))
    return facts


def _in_workers(target: Path, offset: int, face_shape: tuple, paths: list[str]) -> list[Facts]:
    """Decode `paths` in `workers()` processes, each a contiguous part. They are new
    interpreters running this module (`python -m fer_core.data.decode`), not multiprocessing's
    workers: those import the parent's main module first, which for the CLI, a benchmark or
    the dashboard means torch or streamlit, seconds per worker. A worker that fails has its part
    decoded here."""
    bounds = np.linspace(0, len(paths), workers() + 1).astype(int)
    with tempfile.TemporaryDirectory() as folder:
        parts = [(Path(folder) / f"part-{k}", int(begin), paths[begin:end])
                 for k, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:]))]
        procs = [_start_worker(target, offset, face_shape, begin, part, listed)
                 for part, begin, listed in parts]
        _flush_while(procs, target)
        facts = []
        for proc, (part, begin, listed) in zip(procs, parts):
            facts += _worker_facts(proc, part) or _decode_range(str(target), offset, face_shape,
                                                                begin, listed)
    return facts


def _start_worker(target: Path, offset: int, face_shape: tuple, begin: int, part: Path,
                  listed: list[str]) -> subprocess.Popen | None:
    """A worker decoding the files `listed` (written to `part`, NUL-separated) into rows
    begin.. of `target`; it writes what it found to `part`.json."""
    part.write_bytes(b"\0".join(os.fsencode(p) for p in listed))
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", __name__, str(target), str(offset),
               ",".join(map(str, face_shape)), str(begin), str(part)]
    try:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
    except OSError:
        return None


def _flush_while(procs: list, target: Path) -> None:
    """Wait for the workers, meanwhile flushing what they have written to disk: this process
    is otherwise idle, and making the file durable afterwards (`cache.save_entry`) then has
    little left to do (a fsync of 460 MB written at once took 0.7 s here; after this, 0.03 s)."""
    fd = os.open(target, os.O_RDONLY)
    try:
        while any(proc is not None and proc.poll() is None for proc in procs):
            os.fdatasync(fd)
            time.sleep(FLUSH_EVERY_S)
    finally:
        os.close(fd)


def _worker_facts(proc: subprocess.Popen | None, part: Path) -> list[Facts] | None:
    """What a worker found, or None when it failed (it could not start, crashed or was
    killed)."""
    if proc is None or proc.wait() != 0:
        return None
    return [Facts(*fields) for fields in json.loads(part.with_suffix(".json").read_text())]


def _worker_main(argv: list[str]) -> None:
    target, offset, face_shape, begin, part = argv
    paths = [os.fsdecode(p) for p in Path(part).read_bytes().split(b"\0")]
    shape = tuple(int(n) for n in face_shape.split(","))
    facts = _decode_range(target, int(offset), shape, int(begin), paths)
    Path(part).with_suffix(".json").write_text(
        json.dumps([dataclasses.astuple(f) for f in facts]))


def _header(path: str) -> Facts:
    try:
        with open_image(path) as image:
            return Facts(image.width, image.height, is_grey_mode(image.mode))
    except (OSError, ValueError, SyntaxError, DataError, Image.DecompressionBombError) as exc:
        return Facts(problem=_problem(exc))


def _problem(exc: Exception) -> str:
    if isinstance(exc, DataError):
        return str(exc).rsplit(": ", 1)[-1]
    if isinstance(exc, Image.DecompressionBombError):
        return "far larger than a face"
    return "truncated" if "truncated" in str(exc).lower() else "not an image Pillow reads"


def _decode_into(target: str, offset: int, face_shape: tuple, start: int, paths: list[str],
                 colour_seen: bool = False) -> list[Facts]:
    """Decode `paths` into rows start.. of the .npy file `target` (its data `offset` bytes in):
    into a buffer first, written with one call, since writing through a memory map costs a page
    fault per 4 kB (a fifth of a 100x100 JPEG's decoding time)."""
    out = np.zeros((len(paths), *face_shape), dtype=np.uint8)
    facts = []
    for j, path in enumerate(paths):
        facts.append(_decode_one(path, out, j, check_grey=not colour_seen))
        colour_seen = colour_seen or not (facts[-1].plain_grey or facts[-1].problem)
    fd = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data, at = memoryview(out).cast("B"), offset + start * out[0].nbytes
        while data:
            written = os.pwrite(fd, data, at)
            data, at = data[written:], at + written
    finally:
        os.close(fd)
    return facts


def _decode_one(path: str, out: np.ndarray, row: int, check_grey: bool = True) -> Facts:
    """Header and pixels of one file, in one opening. Whether a colour file's pixels are grey
    is checked only when `check_grey` (once one colour face is seen, the tree is colour);
    unchecked, it reads as colour."""
    try:
        with open_image(path) as image:
            facts = Facts(image.width, image.height, is_grey_mode(image.mode))
            mode = "L" if facts.stored_grey else "RGB"
            image = image if image.mode == mode else image.convert(mode)
            pixels = np.asarray(_square(image, out.shape[2]))
    except (OSError, ValueError, SyntaxError, DataError, Image.DecompressionBombError) as exc:
        return Facts(problem=_problem(exc))
    if facts.stored_grey:
        facts.plain_grey = True
        out[row] = pixels
        return facts
    facts.plain_grey = check_grey and bool((pixels[..., 1:] == pixels[..., :1]).all())
    if out.shape[1] == 3:
        out[row] = pixels.transpose(2, 0, 1)
    elif facts.plain_grey:
        out[row, 0] = pixels[..., 0]
    else:
        out[row, 0] = np.asarray(Image.fromarray(pixels).convert("L"))
    return facts


def _square(image: Image.Image, size: int) -> Image.Image:
    """The centred square of `image`, resized (Pillow's bilinear filter, antialiased when it
    shrinks) to size x size."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    if side != image.width or side != image.height:
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.BILINEAR)
    return image


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
