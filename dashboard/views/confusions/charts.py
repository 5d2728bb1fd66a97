"""Plotly figures of the Confusions page beside the matrix (`common/matrix.py`), as plain figure
dicts (why: common/curves.py).
"""

from collections.abc import Sequence

import numpy as np

from dashboard.common.gallery import SELECTED


def difference_figure(difference: np.ndarray, name_a: str, name_b: str,
                      classes: Sequence[str]) -> dict:
    """Counts of B minus counts of A per cell of the matrix of `classes`, on a diverging colour
    map centred on zero."""
    top = max(int(np.abs(difference).max()), 1)
    heat = {
        "type": "heatmap", "z": difference.tolist(), "x": list(classes), "y": list(classes),
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
