"""Data of one task seen by a model of another: classes matched by meaning, never by position,
and faces converted to the model's size and channels.

Names match case-insensitively, with the usual synonyms (anger/angry, happiness/happy...), so a
FER2013 model reads RAF-DB's `happiness` as its `Happy`. A face whose class the model lacks is
left out; the model's argmax still runs over all its classes, so a prediction of a class the data
lacks (contempt on FER2013) counts as wrong and has its own column in a confusion matrix.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cache import bytes_fingerprint
from ..errors import FerError
from .dataset import FaceDataset
from .pictures import luminance
from .task import CHANNEL_NAMES, Task

SYNONYMS = {
    "anger": "angry", "angry": "angry",
    "happiness": "happy", "happy": "happy",
    "sadness": "sad", "sad": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "fear": "fear", "fearful": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "contempt": "contempt", "contemptuous": "contempt",
    "neutral": "neutral",
}


def meaning(name: str) -> str:
    """The name a class is matched by: case-folded, synonyms made one."""
    folded = name.strip().casefold()
    return SYNONYMS.get(folded, folded)


@dataclass(frozen=True)
class ClassMatch:
    """For each data class, the model class of the same meaning (-1: none)."""

    data: Task
    model: Task
    to_model: np.ndarray

    @property
    def identical(self) -> bool:
        return self.data.classes == self.model.classes

    def data_only(self) -> list[str]:
        return [c for c, k in zip(self.data.classes, self.to_model) if k < 0]

    def model_only(self) -> list[str]:
        shared = set(self.to_model[self.to_model >= 0].tolist())
        return [c for k, c in enumerate(self.model.classes) if k not in shared]


def match_classes(data: Task, model: Task) -> ClassMatch:
    """The data's classes matched to the model's by meaning; a FerError when none is shared."""
    index = {meaning(c): k for k, c in enumerate(model.classes)}
    to_model = np.array([index.get(meaning(c), -1) for c in data.classes], dtype=np.int64)
    if (to_model < 0).all():
        raise FerError(f"the model's classes ({', '.join(model.classes)}) and the data's "
                       f"({', '.join(data.classes)}) share none")
    return ClassMatch(data, model, to_model)


def for_model(dataset: FaceDataset, model: Task) -> FaceDataset:
    """`dataset` as a model of task `model` sees it: labels as the model's class indices (faces
    of a class the model lacks left out), faces converted to its size and channels, and a line
    in `notes` for each thing that was done. The dataset itself when the tasks are the same."""
    if dataset.task == model:
        return dataset
    match = match_classes(dataset.task, model)
    notes = _class_notes(match)
    keep = np.flatnonzero((dataset.labels < 0) | (match.to_model[dataset.labels] >= 0))
    if len(keep) < len(dataset):
        notes.append(f"{len(dataset) - len(keep):,} face(s) of classes the model lacks left out")
    images = dataset.images[keep]
    if dataset.task.shape != model.shape:
        notes.append(f"faces converted from {_input(dataset.task)} to the model's "
                     f"{_input(model)}")
        images = convert_faces(images, model.size, model.channels)
    labels = dataset.labels[keep]
    labels = np.where(labels >= 0, match.to_model[labels], -1)
    suffix = bytes_fingerprint(repr((model, keep.tobytes())).encode())[:16]
    return dataclasses.replace(
        dataset, images=images, labels=labels, split_codes=dataset.split_codes[keep],
        sources=dataset.sources[keep], task=model,
        parts=None if dataset.parts is None or model.size != dataset.task.size
        else dataset.parts[keep], votes=None if dataset.votes is None else dataset.votes[keep],
        fer2013_labels=None if dataset.fer2013_labels is None else dataset.fer2013_labels[keep],
        fingerprint=f"{dataset.fingerprint}:for-{suffix}", notes=(*dataset.notes, *notes))


def _class_notes(match: ClassMatch) -> list[str]:
    if match.identical:
        return []
    notes = []
    if match.data_only():
        notes.append(f"classes only the data has: {', '.join(match.data_only())}")
    if match.model_only():
        notes.append(f"classes only the model has (predicting one is wrong): "
                     f"{', '.join(match.model_only())}")
    if not notes:
        notes.append("the data's classes matched to the model's by name")
    return notes


def _input(task: Task) -> str:
    return f"{task.size}x{task.size} {CHANNEL_NAMES[task.channels]}"


def convert_faces(images: np.ndarray, size: int, channels: int,
                  chunk: int = 1024) -> np.ndarray:
    """uint8 faces (N, C, H, W) at `size` (antialiased resize) with `channels`: colour to grey
    as luminance (`pictures.luminance`), grey to colour repeated. Converted `chunk` faces at a
    time, so the float copies stay small."""
    out = np.empty((len(images), channels, size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = _convert(images[start:start + chunk], size, channels)
    return out


def _convert(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if images.shape[1] == 3 and channels == 1:
        images = luminance(images)[:, None]
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.round().clamp_(0, 255).to(torch.uint8).numpy()  # round(): x may be expanded
