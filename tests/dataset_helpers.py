"""Datasets that tests build from others."""

import dataclasses
import hashlib
import sys

import numpy as np

from fer_core.data.dataset import FaceDataset


def subset_of(dataset: FaceDataset, rows: np.ndarray) -> FaceDataset:
    """A dataset of the given rows; the fingerprint records the selection, so caches keyed by it
    tell the subset from the whole."""
    rows = np.asarray(rows, dtype=np.int64)
    digest = hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()
    return dataclasses.replace(
        dataset, images=dataset.images[rows], labels=dataset.labels[rows],
        split_codes=dataset.split_codes[rows], sources=dataset.sources[rows],
        fingerprint=f"{dataset.fingerprint}:{digest}",
        parts=None if dataset.parts is None else dataset.parts[rows],
        votes=None if dataset.votes is None else dataset.votes[rows],
        fer2013_labels=None if dataset.fer2013_labels is None else dataset.fer2013_labels[rows])


# RAF-DB's seven basic emotions in its label order (1 surprise ... 7 neutral), as folder names.
RAF_DB_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")


def in_other_task(dataset: FaceDataset, size: int = 64, channels: int = 3,
                  classes: tuple[str, ...] = RAF_DB_NAMES) -> FaceDataset:
    """The faces of a FER2013-task dataset as another task would hold them: resized to `size`
    (antialiased), tinted into colour when `channels` is 3 (R, G and B differ), and relabelled to
    `classes`, names matched to FER2013's by meaning (RAF-DB's names in RAF-DB's order by
    default), so that a test can tell matching by name from matching by position."""
    import torch
    import torch.nn.functional as F

    from fer_core.data.classes import CLASSES
    from fer_core.data.task import Task

    synonyms = {"surprise": "Surprise", "fear": "Fear", "disgust": "Disgust", "happiness": "Happy",
                "sadness": "Sad", "anger": "Angry", "neutral": "Neutral"}
    new_index = {CLASSES.index(synonyms.get(name, name)): k for k, name in enumerate(classes)}
    labels = np.array([new_index.get(int(k), -1) if k >= 0 else -1 for k in dataset.labels],
                      dtype=np.int64)
    x = F.interpolate(torch.from_numpy(dataset.images).float(), size=(size, size),
                      mode="bilinear", antialias=True, align_corners=False)
    if channels == 3:
        x = torch.cat([x, x * 0.85, x * 0.7 + 20], dim=1)
    images = x.round().clamp(0, 255).to(torch.uint8).numpy()
    return dataclasses.replace(
        dataset, images=images, labels=labels, parts=None,
        task=Task(tuple(classes), size, channels),
        fingerprint=f"{dataset.fingerprint}:task-{size}-{channels}-{'-'.join(classes)}")


def write_tree(root, dataset: FaceDataset, folder_of=None, suffix=".png", tops=("train", "test")):
    """Each face as an image under <top>/<class folder>/ of folder `root`, train and test by its
    split (val faces go to train); returns the relative paths in dataset order."""
    from fer_core.data.dataset import SPLITS
    from fer_core.data.pictures import pil_image

    folder_of = folder_of or (lambda k: dataset.task.classes[k])
    written = []
    for i, (label, split) in enumerate(zip(dataset.labels, dataset.split_codes)):
        top = tops[1] if split == SPLITS.index("test") else tops[0]
        relative = f"{top}/{folder_of(label)}/{i:03d}{suffix}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        pil_image(dataset.images[i]).save(root / relative)
        written.append(relative)
    return written


def write_ferplus(root, votes: list[list[int]], folders=("FER2013Train", "FER2013Valid")):
    """Built-in faces as FER+ PNGs with these votes, alternating between `folders`."""
    from fer_core.data.builtin import make_builtin_faces
    from fer_core.data.pictures import pil_image

    faces = make_builtin_faces(n=len(votes), seed=3)
    lines = {folder: [] for folder in folders}
    for i, row in enumerate(votes):
        folder = folders[i % len(folders)]
        (root / folder).mkdir(parents=True, exist_ok=True)
        name = f"fer{i:07d}.png"
        pil_image(faces.images[i]).save(root / folder / name)
        lines[folder].append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, row)))
    for folder, rows in lines.items():
        (root / folder / "label.csv").write_text("\n".join(rows) + "\n")
    return faces


def microsoft_target(raw: list[int], mode: str) -> np.ndarray | None:
    """A line-by-line port of FERPlusReader._process_data (Microsoft's FERPlus repository,
    src/ferplus.py), then the reader's keep test (`idx < emotion_count`) and its cut to the 8
    emotions; None where the reader drops the face."""
    emotion_raw = [float(v) for v in raw]
    size = len(emotion_raw)
    emotion_unknown = [0.0] * size
    emotion_unknown[-2] = 1.0
    for i in range(size):
        if emotion_raw[i] < 1.0 + sys.float_info.epsilon:
            emotion_raw[i] = 0.0
    sum_list = sum(emotion_raw)
    if sum_list == 0:
        return None  # Microsoft's code divides by zero here
    emotion = [0.0] * size
    if mode == "majority":
        maxval = max(emotion_raw)
        if maxval > 0.5 * sum_list:
            emotion[int(np.argmax(emotion_raw))] = maxval
        else:
            emotion = emotion_unknown
    elif mode in ("probability", "crossentropy"):
        sum_part, count, valid_emotion = 0, 0, True
        while sum_part < 0.75 * sum_list and count < 3 and valid_emotion:
            maxval = max(emotion_raw)
            for i in range(size):
                if emotion_raw[i] == maxval:
                    emotion[i] = maxval
                    emotion_raw[i] = 0
                    sum_part += emotion[i]
                    count += 1
                    if i >= 8:
                        valid_emotion = False
                        if sum(emotion) > maxval:
                            emotion[i] = 0
                            count -= 1
                    break
        if sum(emotion) <= 0.5 * sum_list or count > 3:
            emotion = emotion_unknown
    else:
        for i in range(size):
            if emotion_raw[i] >= 0.3 * sum_list:
                emotion[i] = emotion_raw[i]
        if sum(emotion) <= 0.5 * sum_list:
            emotion = emotion_unknown
    emotion = [e / sum(emotion) for e in emotion]
    if int(np.argmax(emotion)) >= 8:
        return None
    kept = np.array(emotion[:8])
    return kept / kept.sum()
