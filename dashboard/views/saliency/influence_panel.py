"""Which training faces made this prediction: the proponents (training faces whose steps pushed
the shown face toward its predicted class) and opponents (against it), by TracIn on the last
layer over the run's snapshots (`fer_core.explain.influence`). Each face opens here on a click,
or in a new tab from its link."""

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
import torch

from dashboard.common import state
from dashboard.common.clicks import face_from_state
from dashboard.common.gallery import clickable_faces, face_link
from dashboard.common.influence import influence_index, snapshot_note
from dashboard.common.tables import content_height
from fer_core.explain.influence import TRAIN, top_positions

COLUMNS = 5
FORMULA = ("TracIn (Pruthi et al. 2020) on the last layer: score = sum over snapshots k of "
           "lr_k (e_k · e'_k)(a_k · a'_k + 1), with a the penultimate features and e = softmax − "
           "one-hot (the training face's label; this face's predicted class)")


def open_training_face(key: str) -> None:
    """A click on a training face opens it on this page."""
    position = face_from_state(st.session_state.get(key))
    if position is not None:
        st.session_state.update(sa_source="dataset", sa_split=TRAIN, sa_idx=position)


def show_faces(dataset, index, positions: np.ndarray, scores: np.ndarray, key: str,
               choice) -> None:
    """The faces as one clickable picture (label, named by the dataset's classes, and score
    under each), then their links."""
    if not len(positions):
        st.caption("None: no training face scores on this side.")
        return
    classes = dataset.task.classes
    labels = [classes[c] if c >= 0 else "?" for c in index.labels[positions]]
    captions = [(f"#{p}", label, f"{scores[p]:+.3g}") for p, label in zip(positions, labels)]
    hover = [f"train #{p}, labelled <b>{label}</b><br>score {scores[p]:+.4g}"
             for p, label in zip(positions, labels)]
    clickable_faces(dataset, [int(r) for r in index.rows[positions]], captions, hover,
                    [int(p) for p in positions], COLUMNS, key=key,
                    on_select=partial(open_training_face, key))
    table = pd.DataFrame({"face": [int(p) for p in positions], "label": labels,
                          "score": [float(scores[p]) for p in positions],
                          "link": [face_link(choice, TRAIN, int(p)) for p in positions]})
    st.dataframe(table, hide_index=True, height=content_height(len(table)), column_config={
        "score": st.column_config.NumberColumn(format="%+.4g"),
        "link": st.column_config.LinkColumn("explain", display_text="open")})


def show_section(choice, ckpt, dataset, chosen, result) -> None:
    """The proponents and opponents of the shown face's prediction, once asked for (the first
    time, each snapshot's view of the training faces is computed with a progress bar)."""
    st.subheader("Which training faces made this prediction?")
    if not len(dataset.indices(TRAIN)):
        st.caption("This dataset has no training faces to search.")
        return
    if not st.toggle("Show the training faces behind it", key="sa_influence",
                     persist_state="session",
                     help="The training faces that pushed most toward this prediction "
                          "(proponents) and against it (opponents). " + FORMULA):
        return
    top = st.slider("Faces per list", 5, 50, 10, 5, key="sa_influence_top",
                    persist_state="session")
    index = influence_index(ckpt, dataset)
    predicted = int(np.asarray(result.probs).argmax())
    scores = index.scores(torch.from_numpy(np.array(chosen.face))[None], [predicted],
                          state.checkpoint)[0]
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown(f"**Proponents**: pushed toward {ckpt.task.classes[predicted]}")
        show_faces(dataset, index, top_positions(scores, top, 1), scores, "sa_proponents",
                   choice)
    with right:
        st.markdown(f"**Opponents**: pushed against {ckpt.task.classes[predicted]}")
        show_faces(dataset, index, top_positions(scores, top, -1), scores, "sa_opponents",
                   choice)
    st.caption(f"{FORMULA}, over {snapshot_note(index)}. Click a face to explain it here, or "
               f"open its link in a new tab.")
