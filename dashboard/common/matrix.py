"""The confusion matrix as a plotly figure dict: clickable on the Confusions page, shown on the
Model page.

Streamlit delivers no click on a heatmap cell (its issue 8760), so the clickable matrix carries an
invisible scatter overlay, one square marker per cell, whose `customdata` is (true, predicted);
`dashboard.common.clicks` reads it back.
"""

from collections.abc import Sequence

import numpy as np

from dashboard.common.gallery import SELECTED

AXIS_FONT = {"size": 13}
HEIGHT = 520
MARKER_SPAN = 322  # pixels the overlay's markers of one row add up to (46 each for 7 classes)


def matrix_figure(counts: np.ndarray, colour: np.ndarray, mode: str, classes: Sequence[str],
                  selected: tuple[int, int] | None = None, clickable: bool = True) -> dict:
    """The K x K matrix of `classes`, rows = true class (top to bottom), columns = predicted:
    counts in the cells, `colour` (counts, row or column shares) as the colour, the selected
    cell outlined; clickable through the overlay (curve OVERLAY), else with the counts in the
    heatmap's hover."""
    share, names, k = mode != "counts", list(classes), len(classes)
    text = [[_cell_text(counts[t, p], colour[t, p], share) for p in range(k)] for t in range(k)]
    heat = {
        "type": "heatmap", "z": colour.tolist(), "x": names, "y": names, "text": text,
        "texttemplate": "%{text}", "textfont": {"size": 12}, "colorscale": "Blues",
        "zmin": 0, "zmax": 1 if share else max(int(counts.max()), 1), "hoverinfo": "skip",
        "colorbar": {"title": {"text": {"counts": "faces", "row": "of true class",
                                        "column": "of predicted"}[mode]},
                     "tickformat": ".0%" if share else "d", "thickness": 14},
    }
    layout = {
        "height": HEIGHT, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "predicted class"}, "side": "bottom", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "yaxis": {"title": {"text": "true class"}, "autorange": "reversed", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "dragmode": False, "clickmode": "event+select" if clickable else "none",
        "shapes": [_outline(*selected)] if selected else [],
    }
    hover = _hover_texts(counts, names)
    if not clickable:
        heat |= {"hoverinfo": "text", "hovertext": np.reshape(hover, (k, k)).tolist()}
        return {"data": [heat], "layout": layout}
    t_idx, p_idx = np.divmod(np.arange(k * k), k)
    overlay = {
        "type": "scatter", "mode": "markers", "showlegend": False,
        "x": [names[p] for p in p_idx], "y": [names[t] for t in t_idx],
        "customdata": np.stack([t_idx, p_idx], 1).tolist(),
        "marker": {"symbol": "square", "size": MARKER_SPAN / k, "color": "rgba(0,0,0,0)"},
        "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}},
        "hovertemplate": [h + "<extra>click to browse</extra>" for h in hover],
    }
    return {"data": [heat, overlay], "layout": layout}


def _hover_texts(counts: np.ndarray, names: list[str]) -> list[str]:
    """One line per cell, row by row: the pair, its faces and their share of the true class."""
    rows, k = counts.sum(1), len(names)
    return [f"true <b>{names[t]}</b>, predicted <b>{names[p]}</b><br>{counts[t, p]} faces "
            f"({counts[t, p] / max(rows[t], 1):.1%} of {names[t]})"
            for t in range(k) for p in range(k)]


def _cell_text(count: int, value: float, share: bool) -> str:
    return f"{count}<br>{value:.0%}" if share and count else str(count)


def _outline(t: int, p: int) -> dict:
    return {"type": "rect", "xref": "x", "yref": "y", "x0": p - 0.5, "x1": p + 0.5,
            "y0": t - 0.5, "y1": t + 0.5, "line": {"color": SELECTED, "width": 3}}
