"""How the model learned to look, beside the curves: the run's probe faces (a fixed set of val
faces, `fer_core.training.probes`) each with its gradient map and Grad-CAM and the prediction at
one epoch, as one composed picture. A live run shows its latest epoch, redrawn with the curves;
a finished one gets a slider over its epochs. A run without probes (made before they existed,
or with --probes 0) shows the curves alone.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from dashboard.common import state
from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from dashboard.common.runs import RunInfo
from fer_core.data.pictures import picture
from fer_core.errors import FerError
from fer_core.explain.contact_sheet import LABEL_COLOR
from fer_core.explain.heatmap import colorize, overlay
from fer_core.training.probes import FACES, PROBES, Timeline, read_timeline

SCALE, GAP, CAPTION, PER_ROW = 2, 4, 20, 2
RIGHT, WRONG = (30, 150, 70), (210, 50, 50)
TILES = ("face", "gradient", "Grad-CAM")

TIMELINES: Memo[Timeline | None] = Memo("probe timelines", budget=32 * MB)  # 60 epochs: 5 MB


def has_probes(path: Path) -> bool:
    return (Path(path) / PROBES / FACES).is_file()


def beside(path: Path):
    """(where the curves go, where the strip goes): two columns for a run with probes, else
    (a plain container, None)."""
    if not has_probes(path):
        return st.container(), None
    return st.columns([3, 2], gap="medium")


def timeline(path: Path) -> Timeline | None:
    """The probe maps written so far, read again when the probes folder changes."""
    folder = Path(path) / PROBES
    return TIMELINES.get(memo_key(folder), lambda report: read_timeline(path))


def show(box, info: RunInfo) -> None:
    """The strip in `box` (nothing when None): the latest epoch while the run is live, else the
    epoch its slider chooses."""
    if box is None:
        return
    with box:
        found = timeline(info.path)
        if found is None:
            st.caption("The probe faces' maps appear here as each epoch ends.")
            return
        at = len(found.epochs) - 1 if info.live else epoch_slider(info.name, found.epochs)
        st.image(strip(found, at, class_names(info, found.probs.shape[-1])), width="stretch",
                 output_format="PNG")
        when = "the latest epoch, redrawn as epochs end" if info.live else "the chosen epoch"
        st.caption(f"Epoch {found.epochs[at]}: {len(found.rows)} val faces with the gradient "
                   f"map and Grad-CAM ({found.layer}) of their predicted class at {when}; "
                   f"the prediction green when right, red when wrong.")


def epoch_slider(run: str, epochs: list[int]) -> int:
    """The index of the epoch chosen by the run's slider (its last epoch at first). The value
    lives in session state, set here before the widget (see the Training form)."""
    key = f"probe_epoch-{run}"
    if st.session_state.get(key) not in epochs:
        st.session_state[key] = epochs[-1]
    if len(epochs) == 1:
        return 0
    chosen = st.select_slider("Probe maps at epoch", options=epochs, key=key)
    return epochs.index(chosen)


def class_names(info: RunInfo, count: int) -> Sequence[str]:
    """The run's class names (its checkpoint's task), or their numbers while it has no
    checkpoint that loads."""
    try:
        return state.checkpoint(info.path).task.classes
    except FerError:
        return [str(k) for k in range(count)]


def strip(found: Timeline, at: int, classes: Sequence[str]) -> Image.Image:
    """One RGBA picture, PER_ROW probes a row: each the face, its gradient map and its Grad-CAM
    over it, under a line "true -> predicted probability" (`classes` naming them;
    plain grey faces when their pixels cannot be read)."""
    side = found.gradient.shape[-1] * SCALE
    cell = (3 * side + 2 * GAP, side + CAPTION)
    rows = -(-len(found.rows) // PER_ROW)
    sheet = Image.new("RGBA", (PER_ROW * (cell[0] + 3 * GAP), 18 + rows * (cell[1] + GAP)),
                      (0, 0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(15)
    for column in range(PER_ROW):
        for t, name in enumerate(TILES):
            draw.text((column * (cell[0] + 3 * GAP) + t * (side + GAP), 0), name,
                      fill=LABEL_COLOR, font=font)
    for i, label in enumerate(found.labels.tolist()):
        x = (i % PER_ROW) * (cell[0] + 3 * GAP)
        y = 18 + (i // PER_ROW) * (cell[1] + GAP)
        face = (np.full(found.gradient.shape[-2:], 128, np.uint8) if found.images is None
                else picture(found.images[i]))
        tiles = [face, overlay(face, colorize(found.gradient[at, i], False)),
                 overlay(face, colorize(found.gradcam[at, i], False))]
        for t, tile in enumerate(tiles):
            image = Image.fromarray(tile).resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(image, (x + t * (side + GAP), y))
        probs = found.probs[at, i]
        predicted = int(probs.argmax())
        draw.text((x, y + side + 2),
                  f"{classes[label]} -> {classes[predicted]} {probs[predicted]:.2f}",
                  fill=RIGHT if predicted == label else WRONG, font=font)
    return sheet
