"""The confusion matrix as a plotly figure dict: clickable on the Confusions page, shown on the
Model page.

Streamlit delivers no click on a heatmap cell (its issue 8760), so the clickable matrix carries an
invisible scatter overlay, one square marker per cell, whose `customdata` is (true, predicted);
`dashboard.common.clicks` reads it back.
"""

import numpy as np

from dashboard.common.gallery import SELECTED
from fer_core.data.classes import CLASSES

NAMES = list(CLASSES)
AXIS_FONT = {"size": 13}


def matrix_figure(counts: np.ndarray, colour: np.ndarray, mode: str,
                  selected: tuple[int, int] | None = None, clickable: bool = True) -> dict:
    """The 7x7 matrix, rows = true class (top to bottom), columns = predicted: counts in the
    cells, `colour` (counts, row or column shares) as the colour, the selected cell outlined;
    clickable through the overlay (curve OVERLAY), else with the counts in the heatmap's hover."""
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
    layout = {
        "height": 520, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"title": {"text": "predicted class"}, "side": "bottom", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "yaxis": {"title": {"text": "true class"}, "autorange": "reversed", "tickfont": AXIS_FONT,
                  "fixedrange": True},
        "dragmode": False, "clickmode": "event+select" if clickable else "none",
        "shapes": [_outline(*selected)] if selected else [],
    }
    hover = _hover_texts(counts)
    if not clickable:
        heat |= {"hoverinfo": "text", "hovertext": np.reshape(hover, (7, 7)).tolist()}
        return {"data": [heat], "layout": layout}
    t_idx, p_idx = np.divmod(np.arange(49), 7)
    overlay = {
        "type": "scatter", "mode": "markers", "showlegend": False,
        "x": [NAMES[p] for p in p_idx], "y": [NAMES[t] for t in t_idx],
        "customdata": np.stack([t_idx, p_idx], 1).tolist(),
        "marker": {"symbol": "square", "size": 46, "color": "rgba(0,0,0,0)"},
        "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}},
        "hovertemplate": [h + "<extra>click to browse</extra>" for h in hover],
    }
    return {"data": [heat, overlay], "layout": layout}


def _hover_texts(counts: np.ndarray) -> list[str]:
    """One line per cell, row by row: the pair, its faces and their share of the true class."""
    rows = counts.sum(1)
    return [f"true <b>{NAMES[t]}</b>, predicted <b>{NAMES[p]}</b><br>{counts[t, p]} faces "
            f"({counts[t, p] / max(rows[t], 1):.1%} of {NAMES[t]})"
            for t in range(7) for p in range(7)]


def _cell_text(count: int, value: float, share: bool) -> str:
    return f"{count}<br>{value:.0%}" if share and count else str(count)


def _outline(t: int, p: int) -> dict:
    return {"type": "rect", "xref": "x", "yref": "y", "x0": p - 0.5, "x1": p + 0.5,
            "y0": t - 0.5, "y1": t + 0.5, "line": {"color": SELECTED, "width": 3}}
