"""Reading clicks back from plotly charts, and the face and cell named in a URL.

Pure functions of the selection state st.plotly_chart returns, so tests drive them directly
(AppTest cannot click a chart). plotly 7 delivers a point's `customdata` as a list; an earlier
plotly gave a dict {'0': a, '1': b}: both are accepted.
"""

from collections.abc import Mapping

OVERLAY = 1  # curve number of the clickable overlay in the matrix and gallery figures


def clicked_points(state) -> list[dict]:
    """The overlay's selected points in a plotly selection state (a dict-like or None)."""
    if not state:
        return []
    selection = state.get("selection") if isinstance(state, Mapping) else None
    points = (selection or {}).get("points") or []
    return [p for p in points if p.get("curve_number", OVERLAY) == OVERLAY]


def _values(customdata) -> list:
    if isinstance(customdata, Mapping):
        return [customdata[k] for k in sorted(customdata, key=int)]
    if isinstance(customdata, (list, tuple)):
        return list(customdata)
    return [customdata]


def cell_from_state(state, num_classes: int) -> tuple[int, int] | None:
    """(true, predicted) of the clicked cell of a matrix of `num_classes` classes, or None."""
    for point in clicked_points(state):
        values = _values(point.get("customdata"))
        if len(values) == 2:
            cell = parse_cell(values, num_classes)
            if cell is not None:
                return cell
    return None


def face_from_state(state) -> int | None:
    """The split index of the clicked gallery face, or None."""
    for point in clicked_points(state):
        values = _values(point.get("customdata"))
        if len(values) == 1 and _is_index(values[0]):
            return int(values[0])
    return None


def parse_cell(values, num_classes: int) -> tuple[int, int] | None:
    """Two class indices from 0 to num_classes - 1 (ints, or their text as in a URL), else
    None."""
    try:
        t, p = (int(v) for v in values)
    except (TypeError, ValueError):
        return None
    return (t, p) if 0 <= t < num_classes and 0 <= p < num_classes else None


def parse_index(text: str | None, size: int) -> int | None:
    """A face index from a URL: a whole number in [0, size), else None (ASCII digits only, and
    few of them: int() refuses other digits, and very long numbers)."""
    text = "" if text is None else str(text).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        return None
    value = int(text)
    return value if value < size else None


def _is_index(value) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def faces_from_state(state) -> list[int]:
    """The split indices of every point clicked or lassoed in a chart whose points carry
    `customdata = [index, ...]` on any trace (the Embeddings scatter), sorted, each once."""
    if not state:
        return []
    selection = state.get("selection") if isinstance(state, Mapping) else None
    found = set()
    for point in (selection or {}).get("points") or []:
        values = _values(point.get("customdata"))
        if values and _is_index(values[0]) and values[0] >= 0:
            found.add(int(values[0]))
    return sorted(found)
