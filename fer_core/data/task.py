"""What a model is asked to do: the class names in output order, the image size and the channels.

Every dataset and every checkpoint carries one. FER2013's (seven emotions, 48 x 48, grey) is the
default that needs no flag; a checkpoint written before tasks existed reads as FER2013's, and one
without `channels` reads as grey. Nothing outside the FER2013 readers, the built-in faces and this
default knows 7, 48 or one channel: everything else asks the dataset's or the checkpoint's task.
"""

from dataclasses import dataclass

from ..errors import FerError
from .classes import CLASSES, FER2013_SIZE

CHANNEL_NAMES = {1: "grey", 3: "colour"}
MIN_SIZE = 8  # three 2x poolings leave a 1x1 map
MAX_SIZE = 1024


@dataclass(frozen=True)
class Task:
    """The class names in output order, the (square) image size in pixels, and the channels
    (1 grey, 3 colour). Input to a model is float N x channels x size x size in [0, 1]."""

    classes: tuple[str, ...]
    size: int = 48
    channels: int = 1

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        problem = task_problem(self.classes, self.size, self.channels)
        if problem:
            raise FerError(problem)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """One face's shape (C, H, W)."""
        return self.channels, self.size, self.size

    @property
    def colour(self) -> bool:
        return self.channels == 3

    def describe(self) -> str:
        """'7 classes, 48x48 grey'."""
        return f"{self.num_classes} classes, {self.size}x{self.size} {CHANNEL_NAMES[self.channels]}"

    def named(self) -> str:
        """'7 classes, 48x48 grey: Angry, Disgust, ...': the description with the class names
        (two tasks may differ in those alone)."""
        return f"{self.describe()}: {', '.join(self.classes)}"

    def to_meta(self) -> dict:
        """The checkpoint metadata fields that record this task."""
        return {"classes": list(self.classes), "input_size": self.size, "channels": self.channels}

    @classmethod
    def from_meta(cls, meta: dict) -> "Task":
        """The task recorded in checkpoint metadata; missing fields take FER2013's values (a
        checkpoint saved before `channels` existed is grey)."""
        return cls(classes=tuple(meta.get("classes", CLASSES)),
                   size=int(meta.get("input_size", FER2013.size)),
                   channels=int(meta.get("channels", FER2013.channels)))

    def with_input(self, size: int | None = None, channels: int | None = None) -> "Task":
        """The same classes at another size or channel count (None keeps this task's)."""
        return Task(self.classes, self.size if size is None else size,
                    self.channels if channels is None else channels)


def task_problem(classes, size, channels) -> str | None:
    """Why (classes, size, channels) cannot make a task, or None."""
    if not all(isinstance(name, str) and name.strip() for name in classes):
        return "class names must be non-empty text"
    if not classes:
        return "a task needs at least one class"
    folded = [name.casefold() for name in classes]
    repeated = sorted({name for name in classes if folded.count(name.casefold()) > 1})
    if repeated:
        return f"class names repeat (ignoring case): {', '.join(repeated)}"
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        return f"image size must be a whole number from {MIN_SIZE} to {MAX_SIZE}, got {size!r}"
    if channels not in CHANNEL_NAMES:
        return f"channels must be 1 (grey) or 3 (colour), got {channels!r}"
    return None


FER2013 = Task(CLASSES, FER2013_SIZE, 1)
