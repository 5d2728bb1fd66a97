"""A face's crowd votes (FER+), shown beside its label wherever a page opens one face: the 10
counts as a small bar chart, the crowd's majority, and the FER2013 label where the data has one
and it is not the crowd's."""

import numpy as np
import streamlit as st

from fer_core.data.classes import CLASSES
from fer_core.data.ferplus import VOTE_NAMES, majority_labels
from fer_core.data.matching import meaning

CROWD = "#0068c9"
MAJORITY = "#ff4b4b"


def crowd_line(votes: np.ndarray, fer2013_label: int | None, markdown: bool = True) -> str:
    """'Crowd: happiness 7, neutral 3 (majority happiness)', and the FER2013 label after it,
    marked (in Streamlit markdown, else plain) when it is not the crowd's majority (no vote for
    it, or outvoted)."""
    counts = sorted(((int(n), name) for n, name in zip(votes, VOTE_NAMES) if n),
                    key=lambda count: -count[0])  # ties in VOTE_NAMES' order
    majority = int(majority_labels(votes[None])[0])
    said = ", ".join(f"{name} {n}" for n, name in counts)
    line = f"Crowd: {said} ({'majority ' + VOTE_NAMES[majority] if majority >= 0 else 'no majority'})"
    if fer2013_label is None or fer2013_label < 0:
        return line
    name = CLASSES[fer2013_label]
    if majority >= 0 and meaning(name) == meaning(VOTE_NAMES[majority]):
        return line + f" · FER2013 label {name}, the crowd's too"
    votes_for = sum(int(n) for n, v in zip(votes, VOTE_NAMES) if meaning(v) == meaning(name))
    why = "no vote for it" if votes_for == 0 else f"{votes_for} vote(s) for it"
    disagreement = f"FER2013 label {name}: {why}"
    return line + " · " + (f":orange[**{disagreement}**]" if markdown else disagreement)


def vote_figure(votes: np.ndarray) -> dict:
    """The 10 counts as horizontal bars, the majority red."""
    majority = int(majority_labels(votes[None])[0])
    bars = {"type": "bar", "orientation": "h", "x": votes.tolist(), "y": list(VOTE_NAMES),
            "marker": {"color": [MAJORITY if k == majority else CROWD
                                 for k in range(len(VOTE_NAMES))]},
            "hovertemplate": "%{y}: %{x} vote(s)<extra></extra>"}
    layout = {"height": 40 + 16 * len(VOTE_NAMES), "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
              "xaxis": {"dtick": 2, "fixedrange": True, "title": {"text": "votes"}},
              "yaxis": {"autorange": "reversed", "fixedrange": True, "tickfont": {"size": 10}},
              "bargap": 0.15}
    return {"data": [bars], "layout": layout}


def show_votes(votes: np.ndarray | None, fer2013_label: int | None, key: str) -> None:
    """A face's votes (None: the data has none, nothing is shown)."""
    if votes is None:
        return
    st.markdown(crowd_line(votes, fer2013_label))
    st.plotly_chart(vote_figure(votes), config={"displayModeBar": False}, key=key)


def face_votes(dataset, row: int) -> tuple[np.ndarray | None, int | None]:
    """Row `row`'s votes and FER2013 label, None where the data has none."""
    votes = None if dataset.votes is None else dataset.votes[row]
    fer2013 = None if dataset.fer2013_labels is None else int(dataset.fer2013_labels[row])
    return votes, fer2013
