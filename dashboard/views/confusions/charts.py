"""Plotly figures of the Confusions page, as plain figure dicts (why: views/training/charts.py).

Streamlit delivers no click on a heatmap cell (its issue 8760), so the matrix and the face
gallery carry an invisible scatter overlay, one square marker per cell or face, whose
`customdata` says what was clicked; `dashboard.common.clicks` reads it back.
"""

import numpy as np

from dashboard.common.gallery import SELECTED
from fer_core.data.classes import CLASSES

NAMES = list(CLASSES)
AXIS_FONT = {"size": 13}


def matrix_figure(counts: np.ndarray, colour: np.ndarray, mode: str,
                  selected: tuple[int, int] | None = None) -> dict:
    """The 7x7 matrix, rows = true class (top to bottom), columns = predicted: counts in the
    cells, `colour` (counts, row or column shares) as the colour, the selected cell outlined."""
    share = mode != "counts"
    text = [[_cell_text(counts[t, p], colour[t, p], share) for p in range(7)] for t in range(7)]
    heat = {
        "type": "heatmap", "z": colour.tolist(), "x": NAMES, "y": NAMES, "text": text,
        "texttemplate": "%{text}", "textfont": {"size": 12}, "colorscale": "Blues",
        "zmin": 0, "zmax": 1 if share else max(int(counts.max()), 1), "hoverinfo": "skip",
        "colorbar": {"title": {"text": {"counts": "faces", "row": "of true class",
                                        "column": "of predicted"}[mode]},
                     "tickformat": ".0%" if share else "d", "thickness": 14},
    }
    rows = counts.sum(1)
    t_idx, p_idx = np.divmod(np.arange(49), 7)
    overlay = {
        "type": "scatter", "mode": "markers", "showlegend": False,
        "x": [NAMES[p] for p in p_idx], "y": [NAMES[t] for t in t_idx],
        "customdata": np.stack([t_idx, p_idx], 1).tolist(),
        "marker": {"symbol": "square", "size": 46, "color": "rgba(0,0,0,0)"},
        "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}},
        "hovertemplate": [
            f"true <b>{NAMES[t]}</b>, predicted <b>{NAMES[p]}</b><br>{counts[t, p]} faces "
            f"({counts[t, p] / max(rows[t], 1):.1%} of {NAMES[t]})<extra>click to browse</extra>"
            for t, p in zip(t_idx, p_idx)],
    }
    layout = {
        "height": 520, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "predicted class"}, "side": "bottom", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "yaxis": {"title": {"text": "true class"}, "autorange": "reversed", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "dragmode": False, "clickmode": "event+select",
        "shapes": [_outline(*selected)] if selected else [],
    }
    return {"data": [heat, overlay], "layout": layout}


def difference_figure(difference: np.ndarray, name_a: str, name_b: str) -> dict:
    """Counts of B minus counts of A per cell, on a diverging colour map centred on zero."""
    top = max(int(np.abs(difference).max()), 1)
    heat = {
        "type": "heatmap", "z": difference.tolist(), "x": NAMES, "y": NAMES,
        "text": [[f"{v:+d}" if v else "0" for v in row] for row in difference.tolist()],
        "texttemplate": "%{text}", "colorscale": "RdBu", "reversescale": True,
        "zmin": -top, "zmax": top, "colorbar": {"title": {"text": f"{name_b} − {name_a}"}},
        "hovertemplate": "true %{y}, predicted %{x}: %{z:+d}<extra></extra>",
    }
    layout = {
        "height": 460, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "predicted class"}, "fixedrange": True},
        "yaxis": {"title": {"text": "true class"}, "autorange": "reversed", "fixedrange": True},
    }
    return {"data": [heat], "layout": layout}


def reliability_figure(rel: dict) -> dict:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the gap."""
    edges = np.asarray(rel["edges"])
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    acc = [None if np.isnan(a) else float(a) for a in rel["accuracy"]]
    conf = [None if np.isnan(c) else float(c) for c in rel["confidence"]]
    data = [
        {"type": "bar", "x": centres, "y": acc, "width": float(edges[1] - edges[0]) * 0.95,
         "name": "accuracy", "marker": {"color": "#0068c9"},
         "customdata": np.asarray(rel["count"]).tolist(),
         "hovertemplate": "confidence %{x:.2f}: accuracy %{y:.1%} (%{customdata} faces)"
                          "<extra></extra>"},
        {"type": "scatter", "x": centres, "y": conf, "mode": "markers", "name": "mean confidence",
         "marker": {"color": SELECTED, "symbol": "line-ew-open", "size": 18,
                    "line": {"width": 3}}},
        {"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "name": "perfect",
         "line": {"dash": "dot", "color": "#808495"}},
    ]
    layout = {
        "height": 380, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "confidence (top probability)"}, "range": [0, 1]},
        "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"},
        "legend": {"orientation": "h", "y": 1.08},
    }
    return {"data": data, "layout": layout}


PR_POINTS = 400  # per curve: a split's curve has a point per face, more than a chart shows


def pr_figure(curves: list[dict]) -> dict:
    """One precision-recall curve per class (one vs rest), average precision in the legend."""
    data = []
    for c in curves:
        if c["ap"] is None:
            continue
        keep = np.unique(np.linspace(0, len(c["recall"]) - 1, PR_POINTS).astype(int))
        data.append({"type": "scatter", "mode": "lines", "name": f"{c['class']} (AP {c['ap']:.2f})",
                     "x": np.asarray(c["recall"])[keep].tolist(),
                     "y": np.asarray(c["precision"])[keep].tolist(),
                     "line": {"shape": "hv", "width": 2}})
    layout = {
        "height": 380, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "recall"}, "range": [0, 1]},
        "yaxis": {"title": {"text": "precision"}, "range": [0, 1.02]},
    }
    return {"data": data, "layout": layout}


def _cell_text(count: int, value: float, share: bool) -> str:
    return f"{count}<br>{value:.0%}" if share and count else str(count)


def _outline(t: int, p: int) -> dict:
    return {"type": "rect", "xref": "x", "yref": "y", "x0": p - 0.5, "x1": p + 0.5,
            "y0": t - 0.5, "y1": t + 0.5, "line": {"color": SELECTED, "width": 3}}
