"""A clickable gallery of faces and the panel of one opened face, shared by pages.

The gallery is one composed image (one PNG for up to 100 faces, not 100 widgets) inside a
plotly figure whose invisible overlay makes each face clickable; a click stores the face's
index within its split in session state under `face_key`. Classes are named by `classes`, the
checkpoint's (`checkpoint.task.classes`), in which the predictions are.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from dashboard.common import state
from dashboard.common.clicks import face_from_state
from dashboard.common.images import GAP, TILE_TEXT, gallery_grid, png_data_uri
from dashboard.common.votes import crowd_line, face_votes, show_votes
from fer_core.data.pictures import picture, pictures
from fer_core.data.task import Task
from fer_core.evaluation.predict import Predictions
from fer_core.explain.heatmap import beside_maps

SELECTED = "#ff4b4b"  # the chosen face, cell or prediction
FACES_PER_PAGE = 100
COLUMNS = 9  # 9 faces of 96 pixels fit the main column of a 1400-pixel-wide window
BESIDE_COLUMNS = 6  # with a narrow column beside the gallery (3 : 1)
SCALE = 2
LARGE = 192  # pixels: the width of one face shown large


def _name(label: int, classes: Sequence[str]) -> str:
    return classes[label] if label >= 0 else "unknown"


def face_text(dataset, preds: Predictions, classes: Sequence[str],
              position: int) -> tuple[tuple[str, ...], str]:
    """A face's three caption lines (source, true->predicted, both probabilities) and its
    hover text."""
    row, label = preds.rows[position], int(preds.labels[position])
    pred = int(preds.predicted[position])
    p_pred = float(preds.probs[position, pred])
    p_true = float(preds.probs[position, label]) if label >= 0 else float("nan")
    source = str(dataset.sources[row])
    lines = (source if len(source) <= 16 else "…" + source[-15:],
             f"{classes[label][:3] if label >= 0 else '?'} > {classes[pred][:3]}",
             f"p {p_pred:.2f} · t {p_true:.2f}" if label >= 0 else f"p {p_pred:.2f}")
    hover = (f"#{position} ({source})<br>true <b>{_name(label, classes)}</b> "
             f"p={p_true:.3f}<br>predicted <b>{classes[pred]}</b> p={p_pred:.3f}")
    votes, fer2013 = face_votes(dataset, row)
    if votes is not None:
        hover += "<br>" + crowd_line(votes, fer2013, markdown=False)
    return lines, hover


@dataclass(frozen=True)
class TileMaps:
    """Saliency maps to draw beside the gallery's faces: `values` (N x H x W, one per face
    shown, in order), named by `key` (where they come from) so the picture can be cached."""

    values: np.ndarray
    signed: bool
    key: tuple


@st.cache_data(max_entries=32, show_spinner=False)
def _grid_uri(_dataset, fingerprint: str, rows: tuple, captions: tuple, columns: int,
              _maps: TileMaps | None = None, maps_key: tuple | None = None) -> str:
    faces = pictures(_dataset.images[np.asarray(rows, dtype=np.int64)])
    if _maps is not None:
        faces = beside_maps(faces, _maps.values, _maps.signed)
    return png_data_uri(gallery_grid(faces, list(captions), columns, SCALE))


def on_face_click(key: str, face_key: str) -> None:
    """A click on a face stores it under `face_key` and asks the page to open it once (the
    flag `<face_key>_open`), in a dialog on the next run."""
    face = face_from_state(st.session_state.get(key))
    if face is not None:
        st.session_state[face_key] = face
        st.session_state[f"{face_key}_open"] = True


def show_gallery(dataset, preds: Predictions, classes: Sequence[str], positions: np.ndarray,
                 key: str, face_key: str, columns: int = COLUMNS,
                 maps: TileMaps | None = None) -> None:
    """Up to FACES_PER_PAGE faces of `preds.split` as one clickable composed image, `columns`
    faces a row (fewer where the gallery shares the page's width with something beside it);
    with `maps`, each face's map beside it, in half as many columns."""
    positions = [int(p) for p in positions[:FACES_PER_PAGE]]
    texts = [face_text(dataset, preds, classes, p) for p in positions]
    st.caption("Each face: its source, true → predicted class, p = probability of the "
               "prediction, t = probability of the true class"
               + ("; beside it, its map of the predicted class" if maps is not None else "")
               + ". Click a face to open it.")
    clickable_faces(dataset, [int(preds.rows[p]) for p in positions], [t for t, _ in texts],
                    [h for _, h in texts], positions, columns, key=key,
                    on_select=partial(on_face_click, key, face_key),
                    selected=st.session_state.get(face_key), maps=maps)


def clickable_faces(dataset, rows: list[int], captions: list[tuple], hover: list[str],
                    points: list[int], columns: int, *, key: str, on_select,
                    selected: int | None = None, maps: TileMaps | None = None) -> None:
    """The faces of dataset `rows` as one composed image (PNG cached), `columns` a row (half as
    many with `maps` beside them), each a clickable point whose customdata is its `points`
    entry; a click calls `on_select`."""
    columns = max(1, columns // 2) if maps is not None else columns
    uri = _grid_uri(dataset, dataset.fingerprint, tuple(rows), tuple(captions), columns, maps,
                    None if maps is None else maps.key)
    size = dataset.task.size * SCALE
    tile_w, tile_h = size * (2 if maps is not None else 1) + GAP, size + TILE_TEXT
    i = np.arange(len(rows))
    centres = np.stack([(i % columns) * tile_w + (tile_w - GAP) / 2,
                        (i // columns) * tile_h + size / 2], 1)
    width = min(columns, len(rows)) * tile_w  # one row of 3 faces: 3 faces wide, not 9
    height = (-(-len(rows) // columns)) * tile_h
    figure = gallery_figure(uri, width, height, centres, points, hover, face=size,
                            selected=selected, wide=maps is not None)
    st.plotly_chart(figure, key=key, on_select=on_select, selection_mode="points",
                    width="content", config={"displayModeBar": False})


def face_query(choice, split: str, position: int) -> dict:
    """The query that opens this face on the Saliency page with the same data and checkpoint."""
    query = {"data": choice.data, "split": split, "idx": str(position)}
    if choice.run:
        query["run"] = choice.run
    return query


def face_link(choice, split: str, position: int) -> str:
    """A relative link that opens this face on the Saliency page (from scratch, in a new tab)."""
    return "saliency?" + urlencode(face_query(choice, split, position))


def show_face(dataset, preds: Predictions, classes: Sequence[str], position: int,
              choice) -> None:
    """One face large, its class probabilities, where it came from, and a link to it."""
    row, label = preds.rows[position], int(preds.labels[position])
    pred = int(preds.predicted[position])
    st.subheader(f"Face #{position} of {preds.split}")
    left, right = st.columns([1, 2])
    left.image(picture(dataset.images[row]), width=LARGE, clamp=True)
    with right:
        st.plotly_chart(probability_figure(preds.probs[position], label if label >= 0 else None,
                                           pred, classes), config={"displayModeBar": False})
    mark = ":green[correct]" if pred == label else ":red[wrong]"
    st.markdown(f"True **{_name(label, classes)}** · predicted **{classes[pred]}** "
                f"({preds.probs[position, pred]:.1%}) {mark if label >= 0 else ''}  \n"
                f"Source: `{dataset.sources[row]}`  \n"
                f"[Link to this face]({face_link(choice, preds.split, position)}) (opens it "
                f"on the Saliency page in a new tab)")
    st.page_link("views/saliency/page.py", label="Explain this face", icon=":material/visibility:",
                 query_params=face_query(choice, preds.split, position))
    show_votes(*face_votes(dataset, row), key=f"votes_{preds.split}_{position}")
    st.caption(f"Model input: the {input_text(dataset.task)} face, shown {LARGE} pixels wide. "
               f"Device: {state.device().type}.")


def input_text(task: Task) -> str:
    """'48 x 48 grey': the faces a task's model takes."""
    return f"{task.size} x {task.size} {'colour' if task.colour else 'grey'}"


face_dialog = st.dialog("Face", width="large")(show_face)


def gallery_figure(source: str, width: int, height: int, centres: np.ndarray, positions: list,
                   hover: list[str], face: int, selected: int | None = None,
                   wide: bool = False) -> dict:
    """A composed gallery image with one clickable square per face (customdata = the face's
    index within its split), the selected face outlined (and its map, when `wide` tiles hold
    a face and its map side by side)."""
    image = {"type": "image", "source": source, "hoverinfo": "skip"}
    overlay = {
        "type": "scatter", "mode": "markers", "showlegend": False,
        "x": centres[:, 0].tolist(), "y": centres[:, 1].tolist(), "customdata": positions,
        "marker": {"symbol": "square", "size": face * 0.9, "color": "rgba(0,0,0,0)"},
        "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}},
        "hovertemplate": [f"{h}<extra>click to open</extra>" for h in hover],
    }
    shapes = []
    if selected is not None and selected in positions:
        x, y = centres[positions.index(selected)]
        half = face / 2 + 2
        half_w = half + (face / 2 if wide else 0)
        shapes.append({"type": "rect", "x0": x - half_w, "x1": x + half_w, "y0": y - half,
                       "y1": y + half, "line": {"color": SELECTED, "width": 3}})
    layout = {
        "height": height + 10, "width": width + 10, "margin": {"l": 5, "r": 5, "t": 5, "b": 5},
        "xaxis": {"visible": False, "range": [0, width], "fixedrange": True},
        "yaxis": {"visible": False, "range": [height, 0], "fixedrange": True,
                  "scaleanchor": "x"},
        "dragmode": False, "clickmode": "event+select", "shapes": shapes,
        "plot_bgcolor": "rgba(0,0,0,0)", "paper_bgcolor": "rgba(0,0,0,0)",
    }
    return {"data": [image, overlay], "layout": layout}


def probability_figure(probs: np.ndarray, true: int | None, predicted: int,
                       classes: Sequence[str]) -> dict:
    """The probabilities of `classes` as horizontal bars: the prediction red, the true class
    marked."""
    colours = [SELECTED if k == predicted else "#0068c9" for k in range(len(classes))]
    labels = [f"{n} (true)" if k == true else n for k, n in enumerate(classes)]
    bars = {
        "type": "bar", "orientation": "h", "x": probs.tolist(), "y": labels,
        "marker": {"color": colours}, "text": [f"{p:.1%}" for p in probs],
        "textposition": "outside", "cliponaxis": False,
        "hovertemplate": "%{y}: %{x:.2%}<extra></extra>",
    }
    layout = {
        "height": 50 + 30 * len(classes), "margin": {"l": 10, "r": 40, "t": 10, "b": 10},
        "xaxis": {"range": [0, 1.15], "tickformat": ".0%", "fixedrange": True},
        "yaxis": {"autorange": "reversed", "fixedrange": True},
    }
    return {"data": [bars], "layout": layout}
