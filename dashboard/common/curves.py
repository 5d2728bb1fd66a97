"""Plotly figures for the training curves, as plain figure dicts.

Pure functions of the history records, so tests call them directly. They return dicts rather
than go.Figure objects because st.plotly_chart validates its input into a Figure anyway; building
the Figure here as well would double the cost of every 2-second refresh. Coordinates are float
arrays (NaN = a gap): plotly validates an array at once, where a list is checked item by item,
and sends it to the browser as compact binary.
"""

import numpy as np

from dashboard.common.history import RunHistory

TRAIN, RUNNING, VAL = "#0068c9", "#83c9ff", "#ff8700"
RUN_COLORS = ("#0068c9", "#ff8700", "#29b09d", "#7d353b", "#ff2b2b", "#6d3fc0", "#d5dae5",
              "#ffd16a", "#83c9ff", "#ffabab")
PANELS = (("loss", "Loss"), ("acc", "Accuracy"))


def training_figure(history: RunHistory) -> dict:
    """Loss and accuracy panels: train and validation per epoch, plus the running training
    mean within each epoch (one point per logged step, x = fractional epoch)."""
    data = []
    for panel, (metric, _) in enumerate(PANELS, start=1):
        first = panel == 1
        x, y = _running(history.steps, metric)
        data.append(_line(x, y, "train (running)", RUNNING, panel, first, width=1.5, marker=3))
        epochs = [e["epoch"] for e in history.epochs]
        data.append(_line(epochs, [e[f"train_{metric}"] for e in history.epochs], "train", TRAIN,
                          panel, first))
        data.append(_line(epochs, [e[f"val_{metric}"] for e in history.epochs], "validation", VAL,
                          panel, first))
    return {"data": data, "layout": _layout(revision=str(history.path))}


def overlay_figure(histories: dict[str, RunHistory]) -> dict:
    """Per-epoch curves of several runs on shared loss and accuracy panels: validation solid,
    training dotted, one colour per run."""
    data = []
    for i, (name, history) in enumerate(histories.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        epochs = [e["epoch"] for e in history.epochs]
        for panel, (metric, _) in enumerate(PANELS, start=1):
            first = panel == 1
            data.append(_line(epochs, [e[f"val_{metric}"] for e in history.epochs],
                              f"{name} (validation)", color, panel, first, group=name, marker=4))
            data.append(_line(epochs, [e[f"train_{metric}"] for e in history.epochs],
                              f"{name} (train)", color, panel, first, group=name, marker=4,
                              dash="dot"))
    return {"data": data, "layout": _layout(revision="overlay")}


def _running(steps: list[dict], metric: str) -> tuple[list, list]:
    """x, y of the running-mean step lines, with a gap (None) where a new epoch starts.

    The running mean restarts with every epoch, so joining epochs would draw a false jump."""
    x, y, epoch = [], [], None
    for s in steps:
        if epoch is not None and s["epoch"] != epoch:
            x.append(None)
            y.append(None)
        epoch = s["epoch"]
        x.append(s["progress"])
        y.append(s[metric])
    return x, y


def _line(x, y, name, color, panel, show_legend, *, width=2.0, marker=6, group=None,
          dash="solid") -> dict:
    suffix = "" if panel == 1 else str(panel)
    return {
        "type": "scatter", "x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float),
        "name": name, "mode": "lines+markers",
        "line": {"color": color, "width": width, "dash": dash}, "marker": {"size": marker},
        "legendgroup": group or name, "showlegend": show_legend,
        "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
        "hovertemplate": "%{y:.4f}" if panel == 1 else "%{y:.1%}",
    }


def _layout(revision: str) -> dict:
    axis = {"title": {"text": "epoch"}, "rangemode": "tozero", "zeroline": False}
    return {
        "height": 380,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "hovermode": "x unified",
        "uirevision": revision,  # keep the user's zoom across refreshes
        "xaxis": {**axis, "domain": [0, 0.46]},
        "xaxis2": {**axis, "domain": [0.54, 1], "anchor": "y2"},
        "yaxis": {"title": {"text": PANELS[0][1].lower()}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": PANELS[1][1].lower()}, "anchor": "x2", "range": [0, 1.02],
                   "tickformat": ".0%"},
        "annotations": [_title(PANELS[0][1], 0.23), _title(PANELS[1][1], 0.77)],
    }


def _title(text: str, x: float) -> dict:
    return {"text": f"<b>{text}</b>", "x": x, "y": 1.08, "xref": "paper", "yref": "paper",
            "showarrow": False, "xanchor": "center", "font": {"size": 15}}
