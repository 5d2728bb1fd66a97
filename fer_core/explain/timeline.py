"""How the model learned to look at one face: its saliency map and class probabilities at each of
a run's snapshots (`fer_core.training.snapshots`), and the snapshots where its prediction became
right or stopped being right. Shared by `python -m fer_core timeline` and the Saliency page.

The caller hands the snapshots in as (epoch, learning rate, model) triples, oldest first; a
generator that loads each model when asked keeps one in memory at a time.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from ..data.pictures import picture
from .attribution import Target, explain
from .contact_sheet import LABEL_COLOR
from .heatmap import colorize, overlay

BECAME_RIGHT, STOPPED_BEING_RIGHT = "became right", "stopped being right"


@dataclass(frozen=True)
class Moment:
    """The face at one snapshot: the map (float32 H x W) of the explained output and the
    probabilities (float32, one per class)."""

    epoch: int
    lr: float
    probs: np.ndarray
    values: np.ndarray
    target: str

    @property
    def predicted(self) -> int:
        return int(self.probs.argmax())


@dataclass(frozen=True)
class FaceTimeline:
    """One face across a run's snapshots (oldest first), explained with one method; `classes`
    are the run's (its checkpoints' task's)."""

    moments: list[Moment]
    label: int | None
    method: str
    title: str
    signed: bool
    params: dict
    classes: tuple[str, ...]

    @property
    def epochs(self) -> list[int]:
        return [m.epoch for m in self.moments]

    @property
    def correct(self) -> list[bool] | None:
        """Whether each snapshot predicts the true class; None when the class is unknown."""
        return None if self.label is None else [m.predicted == self.label for m in self.moments]

    def changes(self) -> dict[int, str]:
        """{epoch: BECAME_RIGHT or STOPPED_BEING_RIGHT} for the last snapshot of each kind."""
        return turning_points(self.epochs, self.correct)

    def report(self) -> dict:
        """The JSON of the CLI: per snapshot its epoch, lr, prediction, probabilities and
        whether it is right; the epochs where the prediction last became right and last stopped
        being right (null when it never did)."""
        correct = self.correct or [None] * len(self.moments)
        changes = {kind: epoch for epoch, kind in self.changes().items()}
        return {"method": self.method, "params": self.params,
                "true": None if self.label is None else self.classes[self.label],
                "snapshots": [{"epoch": m.epoch, "lr": m.lr, "pred": self.classes[m.predicted],
                               "probs": m.probs.tolist(), "correct": right, "target": m.target}
                              for m, right in zip(self.moments, correct)],
                "became_right": changes.get(BECAME_RIGHT),
                "stopped_being_right": changes.get(STOPPED_BEING_RIGHT)}


def turning_points(epochs: list[int], correct: list[bool] | None) -> dict[int, str]:
    """The snapshot where the prediction became right (wrong at the one before, right at it) and
    the one where it stopped being right, the last of each kind when it changed more than once:
    {epoch: kind}. Right (or wrong) at every snapshot, or an unknown class: no change, {}."""
    if not correct:
        return {}
    found = {}
    for before, epoch, now in zip(correct, epochs[1:], correct[1:]):
        if now != before:
            found[BECAME_RIGHT if now else STOPPED_BEING_RIGHT] = epoch
    return {epoch: kind for kind, epoch in sorted(found.items(), key=lambda item: item[1])}


def face_timeline(snapshots: Iterable[tuple[int, float, nn.Module]], face: np.ndarray,
                  label: int | None, method: str, target: Target, *,
                  classes: tuple[str, ...], seed: int = 0, **params) -> FaceTimeline:
    """The face (uint8 C x H x W as the models take it, or H x W grey) explained by each
    snapshot's model, oldest first; `classes` are the run's, in output order."""
    labels = None if label is None else torch.tensor([label])
    moments, result = [], None
    for epoch, lr, model in snapshots:
        result = explain(model, torch.from_numpy(np.array(face))[None], method, target,
                         labels=labels, seed=seed, **params)
        moments.append(Moment(epoch=epoch, lr=float(lr),
                              probs=result.probs[0].detach().cpu().numpy().astype(np.float32),
                              values=result.maps[0].cpu().numpy().astype(np.float32),
                              target=result.target_names(classes)[0]))
    if result is None:
        raise ValueError("a timeline needs at least one snapshot")
    return FaceTimeline(moments=moments, label=label, method=result.method, title=result.title,
                        signed=result.signed, params=result.params, classes=tuple(classes))


# ---- the picture ------------------------------------------------------------------------------

ZOOM, GAP, BAR_H = 3, 6, 9
MARKS = {BECAME_RIGHT: (22, 140, 60), STOPPED_BEING_RIGHT: (200, 40, 40)}
RIGHT, WRONG = (30, 150, 70), (210, 50, 50)
PREDICTED_BAR, OTHER_BAR = (31, 119, 180), (150, 150, 150)


def strip_image(timeline: FaceTimeline, face: np.ndarray, cmap: str | None = None,
                opacity: float = 0.5, zoom: int = ZOOM) -> Image.Image:
    """One RGBA picture, transparent around (readable on a light or a dark page): a column per
    snapshot (its epoch and learning rate, the map over the face, the probabilities as bars,
    the prediction), a snapshot where the prediction became right framed in green, one where it
    stopped being right in red. `face` is uint8 C x H x W or H x W (`heatmap.overlay` lays
    each map over its grey)."""
    face = picture(np.asarray(face))
    side = face.shape[0] * zoom
    font = ImageFont.load_default(10)
    top, bars = 30, len(timeline.classes) * BAR_H + 4
    height = top + side + bars + 18
    sheet = Image.new("RGBA", (len(timeline.moments) * (side + GAP) + GAP, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    changes = timeline.changes()
    correct = timeline.correct
    for i, moment in enumerate(timeline.moments):
        x = GAP + i * (side + GAP)
        draw.text((x, 2), f"epoch {moment.epoch}, lr {moment.lr:.2g}", fill=LABEL_COLOR,
                  font=font)
        if kind := changes.get(moment.epoch):
            draw.text((x, 15), kind, fill=MARKS[kind], font=font)
            draw.rectangle((x - 3, top - 3, x + side + 2, height - 2), outline=MARKS[kind],
                           width=3)
        coloured = colorize(moment.values, timeline.signed, cmap)
        tile = Image.fromarray(overlay(face, coloured, opacity))
        sheet.paste(tile.resize((side, side), Image.Resampling.NEAREST), (x, top))
        _probability_bars(draw, timeline.classes, moment.probs, timeline.label, x,
                          top + side + 3, side, font)
        fill = LABEL_COLOR if correct is None else RIGHT if correct[i] else WRONG
        draw.text((x, height - 16),
                  f"{timeline.classes[moment.predicted]} {moment.probs.max():.2f}",
                  fill=fill, font=font)
    return sheet


def _probability_bars(draw: ImageDraw.ImageDraw, classes: tuple[str, ...], probs: np.ndarray,
                      label: int | None, x: int, y: int, width: int, font) -> None:
    """One bar per class (its first three letters beside it): the predicted class blue, the
    true class's name in green."""
    predicted, start = int(probs.argmax()), x + 24
    for k, (name, p) in enumerate(zip(classes, probs)):
        row = y + k * BAR_H
        draw.text((x, row - 1), name[:3], fill=RIGHT if k == label else LABEL_COLOR, font=font)
        length = round(float(p) * (width - 26))
        if length:
            draw.rectangle((start, row, start + length, row + BAR_H - 3),
                           fill=PREDICTED_BAR if k == predicted else OTHER_BAR)
