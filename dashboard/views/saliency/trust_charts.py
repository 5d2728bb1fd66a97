"""Plotly figures (plain dicts) for the Saliency page's "Can I trust this map?" section: one
map's deletion curve against a random order, every method's randomization curve, and every
check of every method against its baseline."""

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
        flagged = "sanity" in report.failed_checks(m)
        colour = FLAGGED if flagged else PALETTE[i % len(PALETTE)]
        data.append({"type": "scatter", "mode": "lines+markers", "x": ticks,
                     "y": m.randomization_spearman, "name": m.title + (" ⚠" if flagged else ""),
                     "line": {"color": colour, "width": 3 if flagged else 1.5}})
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


def checks_figure(report) -> dict:
    """One facet per check side by side, with a horizontal bar per method (the full names on the
    shared y axis, flagged methods marked) and the check's baseline as a dashed line; a bar is
    red where the method does no better than the baseline."""
    facets = check_facets(report)
    names = [m.title + (" ⚠" if report.failed_checks(m) else "") for m in report.methods]
    layout = {**LAYOUT, "height": 120 + 30 * len(names), "showlegend": False, "bargap": 0.3,
              "margin": {"l": 10, "r": 10, "t": 80, "b": 10},
              "title": {"text": "Each check against its baseline (dashed): red where a method "
                                "does no better", "font": {"size": 14}},
              "yaxis": {"automargin": True, "autorange": "reversed", "type": "category"},
              "shapes": [], "annotations": []}
    data = []
    for i, (facet, domain) in enumerate(zip(facets, facet_domains(len(facets)))):
        axis = f"x{i + 1}" if i else "x"
        layout[f"xaxis{i + 1}" if i else "xaxis"] = {
            "domain": domain, "anchor": "y", "range": facet["range"],
            "tickformat": facet["format"]}
        data.append(facet_bars(report, facet, names, axis))
        layout["shapes"].append({"type": "line", "xref": axis, "x0": facet["baseline"],
                                 "x1": facet["baseline"], "yref": "paper", "y0": 0, "y1": 1,
                                 "line": {"color": RANDOM, "dash": "dash", "width": 2}})
        layout["annotations"].append({"xref": f"{axis} domain", "x": 0.5, "yref": "paper",
                                      "y": 1.01, "yanchor": "bottom", "showarrow": False,
                                      "text": facet["title"]})
    return {"data": data, "layout": layout}


def facet_domains(n: int, gap: float = 0.08) -> list[list[float]]:
    """The horizontal extents of `n` side-by-side facets, `gap` apart (fractions of the plot)."""
    width = (1 - gap * (n - 1)) / n
    return [[i * (width + gap), i * (width + gap) + width] for i in range(n)]


def facet_bars(report, facet: dict, names: list[str], axis: str) -> dict:
    """A facet's bars: each method's value, red where it fails the facet's check."""
    fails = [facet["check"] in report.failed_checks(m) for m in report.methods]
    return {"type": "bar", "orientation": "h", "x": facet["values"], "y": names,
            "xaxis": axis, "yaxis": "y", "name": facet["check"],
            "marker": {"color": [FLAGGED if f else MAP for f in fails]},
            "text": [format(v, facet["format"]) for v in facet["values"]],
            "textposition": "outside", "cliponaxis": False,
            "hovertemplate": "%{y}: %{x:" + facet["format"] + "}<extra></extra>"}


def check_facets(report) -> list[dict]:
    """Per check: its key, a title naming the baseline, each method's value, the baseline, the
    axis range and number format. Localization only with parts."""
    rho = [m.randomization_spearman[-1] for m in report.methods]
    deletion = [m.deletion_auc for m in report.methods]
    facets = [
        {"check": "sanity", "values": rho, "baseline": FLAG_AT, "format": ".2f",
         "title": f"Sanity: ρ with all layers randomized<br>fails at {FLAG_AT} or more",
         "range": [min(0, *rho) - 0.1, 1.2]},
        {"check": "deletion", "values": deletion, "baseline": report.random_deletion_auc,
         "format": ".3f",
         "title": f"Deletion area (lower is better)<br>fails at random order's "
                  f"{report.random_deletion_auc:.3f} or more",
         "range": [0, 1.25 * max(*deletion, report.random_deletion_auc)]}]
    if report.parts_area_share is not None:
        shares = [m.parts_share for m in report.methods]
        facets.append(
            {"check": "localization", "values": shares, "baseline": report.parts_area_share,
             "format": ".0%",
             "title": f"Share on brows, eyes, mouth<br>fails at an even spread's "
                      f"{report.parts_area_share:.1%} or less",
             "range": [0, min(1.2, 1.25 * max(*shares, report.parts_area_share))]})
    return facets
