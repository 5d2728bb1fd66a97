"""Reading dataset files safely: the dashboard is a web server, and a visitor can type any path.

- Only regular files are read: a FIFO would block the reader, a device such as /dev/zero never
  ends, and files under /proc and /sys report sizes that mean nothing (and hold secrets).
- What is read is bounded: a file's bytes, an image folder's bytes in all, and what gzip data
  inflates to, each at MAX_DATA_BYTES.
- With FER_DATA_ROOTS set (folders separated by os.pathsep), a path whose real location is
  outside them is refused before anything about it is looked up, so the message is the same
  whether or not it exists.
"""

import os
import stat
from pathlib import Path

from ..errors import DataError

MAX_DATA_BYTES = 1 << 30  # FER2013's CSV is 296 MB; its images about 60 MB
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def data_roots() -> list[Path] | None:
    """The folders of FER_DATA_ROOTS (their real locations), or None when it is unset."""
    configured = os.environ.get("FER_DATA_ROOTS", "")
    folders = [f for f in configured.split(os.pathsep) if f.strip()]
    return [Path(os.path.realpath(os.path.expanduser(f))) for f in folders] or None


def check_allowed(path: str | os.PathLike, name: str) -> None:
    """Refuse a path that is not a valid path, lies outside FER_DATA_ROOTS, or is a system file.

    Symbolic links are followed first, so a link inside an allowed folder cannot lead out of it.
    """
    if "\0" in os.fspath(path):
        raise DataError(f"{name!r}: not a valid path (it holds a NUL character)")
    real = Path(os.path.realpath(path))
    roots = data_roots()
    if roots is not None and not any(real.is_relative_to(root) for root in roots):
        raise DataError(f"{name}: outside the data folders this server reads (FER_DATA_ROOTS: "
                        f"{', '.join(map(str, roots))})")
    for folder in SYSTEM_FOLDERS:
        if real.is_relative_to(folder):
            raise DataError(f"{name}: a system file under {folder}, not a dataset")


def read_file(path: str | os.PathLike, name: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` (default MAX_DATA_BYTES) bytes; TooLarge
    when it holds more.

    The file is opened without blocking (a FIFO would otherwise wait for a writer) and its type
    is checked on the open descriptor, so it cannot be swapped between check and read.
    """
    limit = MAX_DATA_BYTES if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{name}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{name}: {file_kind(info.st_mode)}, not a regular file")
        # Reading the size the file has (+ 1, to see it grow past the limit) with os.read, not
        # limit + 1 bytes through a file object: that allocates the limit (1 GiB) for every
        # file, and a 5 kB JPEG of a 15,000-file tree would spend more time there than decoding.
        data = _read_up_to(fd, min(limit, info.st_size) + 1)
        if len(data) > info.st_size:  # it grew since: read on, up to the limit
            data += _read_up_to(fd, limit + 1 - len(data))
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TooLarge(name, "larger than")
    return data


class TooLarge(DataError):
    """Data over MAX_DATA_BYTES: `name: <what> the N-byte limit for data`."""

    def __init__(self, name: str, what: str):
        super().__init__(f"{name}: {what} the {MAX_DATA_BYTES:,}-byte limit for data")


def _read_up_to(fd: int, n: int) -> bytes:
    """Up to n bytes from fd: fewer only at the end of the file."""
    parts, left = [], n
    while left > 0:
        part = os.read(fd, left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def file_kind(mode: int) -> str:
    """'a FIFO', 'a device'... for a stat mode that is not a regular file's."""
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")
