"""Decoding a tree's image files into one uint8 array, on every core, with Pillow.

Pillow only: torchvision's decoders are twice as fast on a small JPEG, but they crash the whole
process (a segmentation fault, not an exception) on some damaged PNGs, and the dashboard is a
server. Pillow's Python work per image outweighs its decoding on a 100x100 face, so threads
would take turns; a large tree is decoded by worker processes instead (each file read and
decoded by one of them, written straight into shared memory), a small one in this process.
Both passes (headers, then pixels) go through `_run`.

A file that cannot be read is skipped and reported, never fatal: one damaged JPEG in 15,000
should not stop a dataset from loading.
"""

import functools
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from . import files
from .pictures import is_grey_mode

CHUNK = 512  # files per task handed to a worker
PROCESS_FILES = 2000  # trees of fewer files are decoded in this process (no start-up cost)


@dataclass
class Header:
    """One file's size and whether it is stored grey, or why it cannot be read."""

    width: int = 0
    height: int = 0
    grey: bool = False
    problem: str | None = None


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


def read_headers(root: Path, relatives: list[str]) -> list[Header]:
    """Each file's header (size, stored grey or not), or why it cannot be read."""
    paths = [str(root / r) for r in relatives]
    parts = _run(_headers, [(chunk,) for chunk in _chunks(paths)], len(paths))
    return [h for part in parts for h in part]


def decode_all(root: Path, relatives: list[str], rows: list[int], size: int,
               channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Files `rows` decoded, centre-cropped to squares and resized (antialiased) to `size`, with
    `channels` channels (colour to grey as luminance, grey to colour repeated): (uint8 images
    N x C x size x size, the rows that decoded, whether each was grey (R = G = B), and why each
    of the others did not)."""
    shape = (len(rows), channels, size, size)
    memory = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(shape))))
    try:
        jobs = [(memory.name, shape, start, [str(root / relatives[i]) for i in chunk])
                for start, chunk in _starts(rows)]
        results = [r for part in _run(_decode_into, jobs, len(rows)) for r in part]
        out = np.ndarray(shape, dtype=np.uint8, buffer=memory.buf)
        ok = np.array([problem is None for problem, _ in results], dtype=bool)
        images = out.copy() if ok.all() else out[ok]  # a copy either way: the memory goes
        del out
    finally:
        memory.close()
        memory.unlink()
    grey = np.array([g for problem, g in results if problem is None], dtype=bool)
    problems = {rows[j]: problem for j, (problem, _) in enumerate(results) if problem}
    return images, np.asarray(rows, dtype=np.int64)[ok], grey, problems


def _chunks(items: list) -> list[list]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _starts(rows: list[int]):
    return [(start, rows[start:start + CHUNK]) for start in range(0, len(rows), CHUNK)]


def _run(function, jobs: list[tuple], files_count: int) -> list:
    """function(*job) for every job: in worker processes for a large tree, else here. A pool
    that cannot start (no /dev/shm, a sandbox) falls back to this process."""
    if files_count < PROCESS_FILES or workers() == 1:
        return [function(*job) for job in jobs]
    try:
        with ProcessPoolExecutor(workers(), mp_context=_context()) as pool:
            return list(pool.map(function, *zip(*jobs)))
    except (BrokenProcessPool, OSError):
        return [function(*job) for job in jobs]


@functools.cache
def _context():
    """A forkserver: workers start from a clean process that has imported this module (not
    forked from a server's threads), and later reads reuse it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _headers(paths: list[str]) -> list[Header]:
    return [_header(path) for path in paths]


def _header(path: str) -> Header:
    try:
        with open_image(path) as image:
            return Header(image.width, image.height, is_grey_mode(image.mode))
    except DataError as exc:
        return Header(problem=str(exc).rsplit(": ", 1)[-1])
    except Image.DecompressionBombError:
        return Header(problem="far larger than a face")
    except (OSError, ValueError, SyntaxError):
        return Header(problem="not an image Pillow reads")


def _decode_into(memory_name: str, shape: tuple, start: int,
                 paths: list[str]) -> list[tuple[str | None, bool]]:
    """Decode `paths` into rows start.. of the shared array; (problem or None, grey) each."""
    memory = shared_memory.SharedMemory(name=memory_name)
    try:
        out = np.ndarray(shape, dtype=np.uint8, buffer=memory.buf)
        results = [_decode_one(path, out, start + j) for j, path in enumerate(paths)]
        del out
    finally:
        memory.close()
    return results


def _decode_one(path: str, out: np.ndarray, row: int) -> tuple[str | None, bool]:
    channels, size = out.shape[1], out.shape[2]
    try:
        with open_image(path) as image:
            face = _square(image.convert("L" if channels == 1 else "RGB"), size)
            pixels = np.asarray(face)
    except (OSError, ValueError, SyntaxError, DataError, Image.DecompressionBombError) as exc:
        return ("truncated" if "truncated" in str(exc).lower() else "cannot decode"), False
    if channels == 1:
        out[row, 0] = pixels
        return None, True
    out[row] = pixels.transpose(2, 0, 1)
    return None, bool((pixels[..., 0] == pixels[..., 1]).all()
                      and (pixels[..., 1] == pixels[..., 2]).all())


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
