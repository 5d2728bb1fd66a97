"""Property tests (Hypothesis): random and mutated inputs to the CSV readers, the image-folder
reader and the checkpoint loader either load or raise the project's own error (a FerError) with
a one-line message; never another exception, and never a hang (each load has an alarm).

Derandomized (the same inputs on every run) and bounded to a few hundred examples in all;
`pytest --hypothesis-show-statistics` reports how many each property tried.
"""

import gzip
import io
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fer_core.data.classes import FOLDER_NAMES
from fer_core.data.dataset import FaceDataset
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013
from fer_core.errors import FerError
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint, make_payload, save_atomic

QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


def fuzz(examples: int) -> settings:
    """Derandomized (the same inputs every run), no example database, no per-example deadline
    (the alarm guards against hangs), `examples` inputs."""
    return settings(derandomize=True, deadline=None, database=None, max_examples=examples,
                    suppress_health_check=QUIET)


SECONDS_PER_LOAD = 10
SPECIAL_BYTES = b" ,\n\r-09x\0\xff\x1f\x8b"


@contextmanager
def alarm(seconds: int):
    """Fail the example instead of hanging when a load takes longer than `seconds`."""
    def hang(*_):
        raise TimeoutError(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def loads_or_fails_cleanly(load) -> object | None:
    """`load()`'s result, or None when it raised a FerError with a one-line message."""
    try:
        with alarm(SECONDS_PER_LOAD):
            return load()
    except FerError as error:
        text = str(error)
        assert text.strip() and "\n" not in text, repr(text)
        return None


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """`base` with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        byte = draw(st.sampled_from(SPECIAL_BYTES) | st.integers(0, 255))
        operation = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        if operation == "replace":
            data[at] = byte
        elif operation == "insert":
            data.insert(at, byte)
        elif operation == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


# ---- CSV ---------------------------------------------------------------------------------------

def pixels(seed: int) -> str:
    return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 256, 2304))


KAGGLE = ("emotion,pixels,Usage\n" + "".join(
    f"{k},{pixels(k)},{usage}\n" for k, usage in enumerate(["Training", "PublicTest",
                                                              "PrivateTest"]))).encode()
HOMEWORK = ("label,feature\n" + "".join(f"{k},{pixels(k)}\n" for k in range(3))).encode()
UNLABELLED = ("id,feature\n" + "".join(f"{k},{pixels(k)}\n" for k in range(2))).encode()


def csv_inputs():
    texts = st.sampled_from([KAGGLE, HOMEWORK, UNLABELLED])
    return st.one_of(
        st.binary(max_size=400),
        texts.flatmap(mutated),
        texts.flatmap(mutated).map(lambda data: gzip.compress(data, mtime=0)),
        texts.map(lambda data: gzip.compress(data, mtime=0)).flatmap(mutated),
    )


@fuzz(250)
@given(data=csv_inputs())
def test_csv_readers_load_or_raise_a_one_line_fer_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "faces.csv"
        path.write_bytes(data)
        dataset = loads_or_fails_cleanly(lambda: load_dataset(path, use_cache=False))
    if dataset is not None:
        assert isinstance(dataset, FaceDataset) and len(dataset) > 0


# ---- image folders -----------------------------------------------------------------------------

def png(size=(48, 48), value: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 48), 30, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


IMAGES = [png(), png(value=200), jpeg(), png((64, 48)), png((4800, 4800))]
TOPS = ["train", "test", "val", ".hidden"]
EMOTIONS = [*FOLDER_NAMES, "Happy", "contempt", ".cache"]
NAMES = ["a.png", "Training_1.png", "PublicTest_2.jpg", "PrivateTest_3.jpeg", "b.txt", ".c.png"]


def image_files():
    content = st.one_of(st.sampled_from(IMAGES), st.sampled_from(IMAGES).flatmap(mutated),
                        st.binary(max_size=200))
    return st.lists(st.tuples(st.sampled_from(TOPS), st.sampled_from(EMOTIONS),
                              st.sampled_from(NAMES), content), max_size=6)


@fuzz(150)
@given(entries=image_files())
def test_the_image_folder_reader_loads_or_raises_a_one_line_fer_error(entries):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for top, emotion, name, content in entries:
            (root / top / emotion).mkdir(parents=True, exist_ok=True)
            (root / top / emotion / name).write_bytes(content)
        dataset = loads_or_fails_cleanly(lambda: load_dataset(root, use_cache=False))
    if dataset is not None:
        assert dataset.images.shape[1:] == dataset.task.shape and len(dataset) > 0


# ---- checkpoints -------------------------------------------------------------------------------

def checkpoint_bytes(arch: str = "cnn3") -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(make_payload(build_model(arch), arch=arch, arch_options={}, task=FER2013, epoch=1,
                            dataset={"name": "builtin"}, metrics={}, config={}), buffer)
    return buffer.getvalue()


CHECKPOINT = checkpoint_bytes()
EDGE = 4096  # the zip's first entry (data.pkl) and its central directory


def damage():
    """Byte changes near the checkpoint's start or end, where the pickle and the zip directory
    live (changes inside tensor data only load as other weights), and maybe a cut: (changes,
    cut), applied by `damaged` (a small description keeps a failing example readable)."""
    near_an_edge = st.integers(0, EDGE) | st.integers(len(CHECKPOINT) - EDGE, len(CHECKPOINT) - 1)
    changes = st.lists(st.tuples(near_an_edge, st.sampled_from(SPECIAL_BYTES)
                                 | st.integers(0, 255)), min_size=1, max_size=4)
    return st.tuples(changes, st.none() | st.integers(0, len(CHECKPOINT) - 1))


def damaged(changes: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(CHECKPOINT)
    for at, byte in changes:
        data[at] = byte
    return bytes(data[:cut])


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
FIELDS = {
    "format": st.just("fer_core.models.checkpoint") | values,
    "version": st.just(1) | values,
    "arch": st.sampled_from(["cnn3", "resnet18"]) | values,
    "arch_options": st.dictionaries(st.sampled_from(["dropout", "head", "mean", "std",
                                                     "small_input", "width"]), scalars,
                                    max_size=3) | values,
    "classes": values,
    "input_size": st.just(48) | values,
    "channels": st.just(1) | values,
    "model": st.just("weights") | values,
    "dataset": values,
    "epoch": values,
    "metrics": values,
    "config": values,
}


@st.composite
def odd_payloads(draw) -> dict:
    """A real cnn3 checkpoint whose metadata fields are dropped or replaced by odd values."""
    payload = torch.load(io.BytesIO(CHECKPOINT), weights_only=True)
    for key, strategy in FIELDS.items():
        choice = draw(st.sampled_from(["keep", "drop", "replace"]))
        if choice == "drop":
            del payload[key]
        elif choice == "replace":
            payload[key] = draw(strategy)
    return payload


@fuzz(100)
@given(damage=damage())
def test_damaged_checkpoint_files_load_or_raise_a_one_line_fer_error(tmp_path, damage):
    path = tmp_path / "best.pt"
    path.write_bytes(damaged(*damage))
    loads_or_fails_cleanly(lambda: load_checkpoint(path))


@fuzz(100)
@given(payload=odd_payloads())
def test_checkpoints_with_odd_metadata_load_or_raise_a_one_line_fer_error(tmp_path, payload):
    path = tmp_path / "best.pt"
    save_atomic(payload, path)
    ckpt = loads_or_fails_cleanly(lambda: load_checkpoint(path))
    if ckpt is not None:
        with torch.no_grad():
            assert ckpt.model(torch.rand(2, *ckpt.task.shape)).shape == (2, ckpt.task.num_classes)

