"""The Embeddings page's scatter, as a plain figure dict (why: common/curves.py).

One WebGL trace per (true, predicted) pair, so every trace's hover text is fixed and each point
carries only numbers: customdata = [position within the split, confidence], x and y as float32
arrays that plotly sends as binary. Traces are grouped into legend groups by the colouring (true
class, predicted class, correct/wrong), so a click on a legend entry toggles a whole class and a
double click isolates it. Likely label errors and the chosen face are drawn as extra traces on
top, with the same customdata, so a click on them picks the face beneath (WebGL draws an open
symbol's outline in the marker colour, so theirs is set there, not in marker.line).

The drag mode starts at zoom: Streamlit turns click-selection off while the lasso or box tool is
active (clickmode "event"), so a click picks a face only in zoom or pan mode.
"""

import functools
from collections.abc import Sequence

import numpy as np

from fer_core.data.matching import meaning
from fer_core.explain.embeddings import Embedding
from fer_core.explain.settings import PROJECTIONS

COLOURINGS = ("true", "pred", "correct", "confidence")
COLOURING_NAMES = {"true": "True class", "pred": "Predicted class", "correct": "Correct / wrong",
                   "confidence": "Confidence"}
# each emotion's colour by meaning, so RAF-DB's "happiness" is FER2013's "Happy" yellow
EMOTION_COLOURS = {"angry": "#d62728", "disgust": "#2ca02c", "fear": "#9467bd",
                   "happy": "#e6b800", "sad": "#1f77b4", "surprise": "#ff7f0e",
                   "neutral": "#7f7f7f", "contempt": "#8c564b"}
OTHER_COLOURS = ("#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39")
UNKNOWN_COLOUR = "#c7c7c7"
OUTCOME = {"correct": ("correct", "#29b09d"), "wrong": ("wrong", "#ff2b2b"),
           "unknown": ("no label", UNKNOWN_COLOUR)}
HIGHLIGHT = "#ff2b2b"
CHOSEN = "#ff00ff"  # magenta: unlike any class colour, seen on light and dark themes
POINT_SIZE = 5


@functools.cache
def class_colours(classes: tuple[str, ...]) -> tuple[str, ...]:
    """A colour per class: an emotion's own (by meaning), the other classes the unused colours
    in turn (reused from the start when they run out)."""
    others = iter(OTHER_COLOURS * (len(classes) // len(OTHER_COLOURS) + 1))
    return tuple(EMOTION_COLOURS.get(meaning(c)) or next(others) for c in classes)


def _class_name(k: int, classes: Sequence[str]) -> str:
    return classes[k] if k >= 0 else "unknown"


def _group(colouring: str, classes: Sequence[str], true: int,
           pred: int) -> tuple[str, str, str, tuple]:
    """A (true, pred) trace's legend group id, legend name, colour and legend order key."""
    by = pred if colouring == "pred" else true
    if colouring == "correct":
        outcome = "unknown" if true < 0 else "correct" if true == pred else "wrong"
        name, colour = OUTCOME[outcome]
        return outcome, name, colour, (list(OUTCOME).index(outcome),)
    colour = class_colours(tuple(classes))[by] if by >= 0 else UNKNOWN_COLOUR
    return f"class{by}", _class_name(by, classes), colour, (by if by >= 0 else len(classes),)


def _points(embedding: Embedding, positions: np.ndarray) -> dict:
    probs = embedding.predictions.probs
    custom = np.stack([positions, probs[positions].max(1)], 1).astype(np.float32)
    xy = embedding.xy[positions]
    return {"x": xy[:, 0], "y": xy[:, 1], "customdata": custom}


def pair_traces(embedding: Embedding, colouring: str, classes: Sequence[str]) -> list[dict]:
    """One scattergl trace per (true, predicted) pair present, legend-grouped by `colouring`,
    classes named by `classes`."""
    preds = embedding.predictions
    true, pred = preds.labels, preds.predicted
    pairs = sorted({(int(t), int(p)) for t, p in zip(true.tolist(), pred.tolist())},
                   key=lambda tp: (_group(colouring, classes, *tp)[3], tp))
    traces, shown = [], set()
    for t, p in pairs:
        positions = np.flatnonzero((true == t) & (pred == p))
        group, name, colour, _ = _group(colouring, classes, t, p)
        marker = {"size": POINT_SIZE, "color": colour, "opacity": 0.8}
        if colouring == "confidence":
            marker = {**marker, "color": preds.probs[positions].max(1), "coloraxis": "coloraxis"}
        traces.append({
            "type": "scattergl", "mode": "markers", "name": name, "legendgroup": group,
            "showlegend": group not in shown, "marker": marker, **_points(embedding, positions),
            "hovertemplate": f"#%{{customdata[0]}}: true <b>{_class_name(t, classes)}</b>, "
                             f"predicted <b>{classes[p]}</b> (p %{{customdata[1]:.2f}})"
                             f"<extra>click or lasso</extra>",
        })
        shown.add(group)
    return traces


def highlight_trace(embedding: Embedding, positions: np.ndarray, threshold: float) -> dict:
    """Rings around the likely label errors (wrong with confidence >= threshold)."""
    return {
        "type": "scattergl", "mode": "markers", "name": f"likely label errors (≥ {threshold:.2f})",
        "marker": {"size": 11, "color": HIGHLIGHT, "symbol": "circle-open", "line": {"width": 2}},
        **_points(embedding, np.asarray(positions, dtype=np.int64)),
        "hovertemplate": "#%{customdata[0]}: likely label error (p %{customdata[1]:.2f})"
                         "<extra></extra>",
    }


def chosen_trace(embedding: Embedding, position: int) -> dict:
    return {
        "type": "scattergl", "mode": "markers", "name": f"face #{position}",
        "marker": {"size": 16, "color": CHOSEN, "symbol": "diamond-open", "line": {"width": 3}},
        **_points(embedding, np.asarray([position], dtype=np.int64)),
        "hovertemplate": "#%{customdata[0]}: the chosen face<extra></extra>",
    }


def scatter_figure(embedding: Embedding, colouring: str, classes: Sequence[str],
                   errors: np.ndarray | None = None, threshold: float = 0.9,
                   chosen: int | None = None) -> dict:
    """The split's faces in 2-D, coloured by `colouring` (classes named by `classes`), with the
    likely label `errors` ringed and the `chosen` face marked."""
    data = pair_traces(embedding, colouring, classes)
    if errors is not None and len(errors):
        data.append(highlight_trace(embedding, errors, threshold))
    if chosen is not None:
        data.append(chosen_trace(embedding, chosen))
    method = PROJECTIONS[embedding.method]
    layout = {
        "height": 640, "margin": {"l": 10, "r": 10, "t": 36, "b": 10},
        "xaxis": {"title": {"text": f"{method} 1"}, "showticklabels": False, "zeroline": False},
        "yaxis": {"title": {"text": f"{method} 2"}, "showticklabels": False, "zeroline": False},
        "legend": {"itemsizing": "constant", "title": {"text": COLOURING_NAMES[colouring]}},
        "dragmode": "zoom", "hovermode": "closest",
        "uirevision": f"{embedding.split}-{embedding.method}",
    }
    if colouring == "confidence":
        layout["coloraxis"] = {"colorscale": "Viridis", "cmin": 0, "cmax": 1,
                               "colorbar": {"title": {"text": "confidence"}, "thickness": 14,
                                            "x": 1.02}}
    return {"data": data, "layout": layout}
