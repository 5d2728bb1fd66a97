"""Plotly figures (plain dicts) for the Saliency page's "Can I trust this map?" section: one
map's deletion curve against a random order, every method's randomization curve, and each
method's share of attribution on the expression parts."""

import numpy as np

from fer_core.explain.trust import FLAG_AT

MAP, RANDOM, FLAGGED = "#0068c9", "#a3a8b8", "#ff4b4b"
# Method colours without red, which marks a flagged method.
PALETTE = ("#0068c9", "#ff8700", "#29b09d", "#6d3fc0", "#7d353b", "#83c9ff", "#ffd16a",
           "#3d9970", "#b8860b", "#555867")
LAYOUT = {"height": 300, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
          "legend": {"orientation": "h", "y": -0.25}}


def deletion_figure(curve: np.ndarray, random: np.ndarray, title: str, name: str) -> dict:
    """Probability of class `name` as the map's top pixels are blurred away, against a random
    order of the pixels."""
    x = np.linspace(0, 1, len(curve)).tolist()
    area, floor = under(curve), under(random)
    data = [
        {"type": "scatter", "x": x, "y": curve.tolist(), "name": f"{title} (area {area:.3f})",
         "line": {"color": MAP, "width": 3}, "fill": "tozeroy"},
        {"type": "scatter", "x": x, "y": random.tolist(),
         "name": f"random order (area {floor:.3f})", "line": {"color": RANDOM, "dash": "dash"}},
    ]
    layout = {**LAYOUT, "title": {"text": "Deletion: lower and faster is more faithful",
                                  "font": {"size": 14}},
              "xaxis": {"title": "share of pixels removed, most important first",
                        "tickformat": ".0%", "range": [0, 1]},
              "yaxis": {"title": f"p({name})", "range": [0, 1.02]}}
    return {"data": data, "layout": layout}


def under(curve: np.ndarray) -> float:
    """Area under a curve sampled evenly over [0, 1] (trapezoids)."""
    return float((curve[1:] + curve[:-1]).sum() / (2 * (len(curve) - 1)))


def randomization_figure(report) -> dict:
    """Each method's mean Spearman correlation with the trained model's maps as layers are
    randomized from the head down; the flag threshold as a dashed line."""
    ticks = ["none", *[f"+ {name}" for name in report.layers]]
    data = []
    for i, m in enumerate(report.methods):
        colour = FLAGGED if m.flagged else PALETTE[i % len(PALETTE)]
        data.append({"type": "scatter", "mode": "lines+markers", "x": ticks,
                     "y": m.randomization_spearman, "name": m.title + (" ⚠" if m.flagged else ""),
                     "line": {"color": colour, "width": 3 if m.flagged else 1.5}})
    layout = {**LAYOUT, "height": 360,
              "title": {"text": "Sanity check: maps of progressively randomized models",
                        "font": {"size": 14}},
              "xaxis": {"title": "layers randomized (cascading, from the head down)"},
              "yaxis": {"title": "Spearman with the trained model's maps", "range": [-0.2, 1.05]},
              "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": FLAG_AT,
                          "y1": FLAG_AT, "line": {"color": FLAGGED, "dash": "dot"}}],
              "annotations": [{"xref": "paper", "x": 1, "y": FLAG_AT, "showarrow": False,
                               "text": f"flag at {FLAG_AT}", "yshift": 10, "xanchor": "right"}]}
    return {"data": data, "layout": layout}


def parts_figure(report) -> dict:
    """Each method's share of |attribution| on the brows, eyes and mouth, against the share of
    the image those parts cover (what an evenly spread map gets)."""
    methods = [m for m in report.methods if m.parts_share is not None]
    area = methods[0].parts_area_share
    titles = [m.title for m in methods]
    data = [{"type": "bar", "x": titles, "y": [m.parts_share for m in methods],
             "marker": {"color": MAP}, "text": [f"{m.parts_share:.0%}" for m in methods],
             "textposition": "outside", "name": "share of |attribution| on the parts"},
            {"type": "scatter", "mode": "lines", "x": titles, "y": [area] * len(titles),
             "line": {"color": RANDOM, "dash": "dash"},
             "name": f"the parts' share of the image ({area:.0%}): an evenly spread map"}]
    layout = {**LAYOUT, "title": {"text": "Localization on the built-in faces' expression parts",
                                  "font": {"size": 14}},
              "yaxis": {"title": "share of |attribution|", "tickformat": ".0%",
                        "range": [0, 1.1]}}
    return {"data": data, "layout": layout}
