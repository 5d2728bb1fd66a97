"""Across training: the chosen face's map (the page's method, parameters and target) and its
class probabilities at each of the run's snapshots (`fer_core.training.snapshots`), as one picture,
with the snapshot where its prediction became right (or stopped being right) framed. Behind a
toggle, so nothing is computed until asked; each snapshot is loaded once per process (the
shared checkpoint store) and each timeline kept in memory.
"""

from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.common import state
from dashboard.common.face_picker import ChosenFace
from dashboard.common.keys import memo_key
from dashboard.common.paths import run_path
from fer_core.explain.attribution import Target
from fer_core.explain.timeline import (
    BECAME_RIGHT,
    STOPPED_BEING_RIGHT,
    FaceTimeline,
    face_timeline,
    strip_image,
)
from fer_core.models.checkpoint import snapshot_lr
from fer_core.training.snapshots import saved_snapshots


@st.cache_data(max_entries=32, show_spinner=False)
def across_training(snapshots: tuple, classes: tuple[str, ...], face: np.ndarray,
                    label: int | None, method: str, target: str, params: tuple) -> FaceTimeline:
    """The face at each snapshot, given as (epoch, (path, disk version)) (`memo_key`: the
    version keys a rewritten file); `classes` are the run's."""
    loaded = ((epoch, state.checkpoint(path)) for epoch, (path, _version) in snapshots)
    models = ((epoch, snapshot_lr(ckpt.meta), ckpt.model) for epoch, ckpt in loaded)
    return face_timeline(models, face, label, method, Target.parse(target, classes),
                         classes=classes, **dict(params))


def show(run: str, classes: tuple[str, ...], chosen: ChosenFace, method: str, params: dict,
         target: Target) -> None:
    st.divider()
    if not st.toggle("Across training", key="sa_timeline", persist_state="session",
                     help="This face's map and probabilities at each snapshot the run kept"):
        return
    snapshots = saved_snapshots(run_path(run))
    if not snapshots:
        st.info(f"**{run}** kept no snapshots of its weights. Train with `--snapshots N` (the "
                f"Training form's \"Snapshots of the weights\", 4 by default) to see how its "
                f"maps changed over training.", icon=":material/history:")
        return
    keys = memo_key(*((s.epoch, Path(s.path)) for s in snapshots))
    with st.spinner(f"Explaining the face at {len(snapshots)} snapshots..."):
        timeline = across_training(keys, classes, chosen.face, chosen.label, method,
                                   target.text(classes), tuple(sorted(params.items())))
    cmap = st.session_state.get(f"sa_cmap_{'signed' if timeline.signed else 'unsigned'}")
    picture = strip_image(timeline, chosen.face, cmap, st.session_state.get("sa_opacity", 0.5))
    st.image(picture, output_format="PNG")
    st.caption(f"{timeline.title} of the {target.describe(classes)} at each of the "
               f"{len(snapshots)} snapshots (epochs {', '.join(map(str, timeline.epochs))}), "
               f"each map on its own scale. {verdict(timeline)}")


def verdict(timeline: FaceTimeline) -> str:
    """When the prediction became right or stopped being right, in words."""
    correct = timeline.correct
    if correct is None:
        return "The face's class is unknown: no snapshot is right or wrong."
    changes = {kind: epoch for epoch, kind in timeline.changes().items()}
    said = []
    if BECAME_RIGHT in changes:
        said.append(f"The prediction became right at epoch {changes[BECAME_RIGHT]} (framed in "
                    f"green).")
    if STOPPED_BEING_RIGHT in changes:
        said.append(f"It stopped being right at epoch {changes[STOPPED_BEING_RIGHT]} (framed "
                    f"in red).")
    if not said:
        said.append("Right at every snapshot." if all(correct) else "Wrong at every snapshot.")
    return " ".join(said)
