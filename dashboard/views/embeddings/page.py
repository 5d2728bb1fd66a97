"""Embeddings: every face of a split placed in 2-D by what the chosen checkpoint's last hidden
layer makes of it (PCA, t-SNE or UMAP of its penultimate features), coloured by true class,
predicted class, correct/wrong or confidence. Click a point or lasso a region to see those faces;
a chosen face is shown with its nearest neighbours in feature space (cosine).

The URL carries the split, the method, the colouring and the chosen face
(?split=val&method=tsne&colour=true&idx=I), so a copied link opens the same view.
"""

import numpy as np
import streamlit as st

from dashboard.common import state, url
from dashboard.common.clicks import faces_from_state, parse_index
from dashboard.common.gallery import FACES_PER_PAGE, show_face, show_gallery
from dashboard.common.progress import on_bar
from dashboard.views.embeddings import store
from dashboard.views.embeddings.charts import COLOURING_NAMES, COLOURINGS, scatter_figure
from fer_core.errors import FerError
from fer_core.evaluation.confusion import likely_label_errors
from fer_core.explain.embeddings import available_methods, nearest_neighbours
from fer_core.explain.settings import PROJECTIONS

LARGE = 10_000  # faces above which a t-SNE or UMAP is started by a button, not by a visit
CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}


def init_from_url(dataset, splits: list[str], methods: list[str]) -> None:
    """A session's first visit takes split, method, colouring and face from the URL."""
    if "em_split" in st.session_state:
        return
    q = st.query_params
    wanted = {"split": (splits, dataset.default_split(splits)),
              "method": (methods, "pca"), "colour": (list(COLOURINGS), "true")}
    for name, (allowed, default) in wanted.items():
        value = q.get(name)
        st.session_state[f"em_{name}"] = value if value in allowed else default
        if value is not None and value not in allowed:
            url.ignored(name, expected=f"one of {', '.join(allowed)}")
    st.session_state["em_face"] = q.get("idx")
    st.session_state["em_selected"] = []


def write_url(split: str, method: str, colour: str, face: int | None) -> None:
    wanted = {"split": split, "method": method, "colour": colour,
              "idx": None if face is None else str(face)}
    url.write(wanted)


def on_split_change() -> None:
    """Positions belong to their split: another split starts with nothing chosen."""
    st.session_state["em_face"] = None
    st.session_state["em_selected"] = []


def on_scatter_select() -> None:
    """A click or lasso on the scatter: its faces fill the gallery; one clicked face is chosen."""
    faces = faces_from_state(st.session_state.get("em_scatter"))
    st.session_state["em_selected"] = faces
    st.session_state["em_page"] = 1
    if len(faces) == 1:
        st.session_state["em_face"] = faces[0]


def load_embedding(ckpt, dataset, split: str, method: str):
    """The embedding, computed with a progress bar and a spinner when it is not cached; None
    while a slow projection of a large split waits for its button."""
    if store.in_memory(ckpt, dataset, split, method):
        return store.embedding(ckpt, dataset, split, method)
    n, name = len(dataset.indices(split)), PROJECTIONS[method]
    cached = store.ready(ckpt, dataset, split, method)
    if not cached and method != "pca" and n > LARGE:
        st.info(f"{name} of {n:,} faces takes a few minutes (it runs on the CPU). It is "
                f"computed once, then cached on disk, and opens at once after that. PCA shows "
                f"this split now.", icon=":material/schedule:")
        if not st.button(f"Compute {name} of {n:,} faces", key="em_compute",
                         icon=":material/play_arrow:"):
            return None
    bar = st.progress(0.0, text=f"Features of {n:,} {split} faces on {state.device().type}...")

    progress = on_bar(bar, lambda done, total: f"Features: {done:,} of {total:,} faces"
                      if done < total else f"{name} of {total:,} faces...")

    with st.spinner(f"{name} of {n:,} faces" + ("" if cached else " (once, then cached)")):
        result = store.embedding(ckpt, dataset, split, method, progress=progress)
    bar.empty()
    return result


def chosen_face(n: int) -> int | None:
    face = parse_index(st.session_state.get("em_face"), n)
    if face is None and st.session_state.get("em_face") is not None:
        url.ignored("idx", expected=f"a face number from 0 to {n - 1}")
    st.session_state["em_face"] = face
    return face


def show_controls(splits: list[str], methods: list[str]) -> tuple[str, str, str, float | None]:
    """Split, method, colouring, and the label-error threshold (None: no highlight)."""
    cols = st.columns([2, 2, 4])
    split = cols[0].segmented_control("Split", splits, key="em_split", required=True,
                                      persist_state="session", on_change=on_split_change)
    method = cols[1].segmented_control("Method", methods, key="em_method", required=True,
                                       persist_state="session", format_func=PROJECTIONS.get)
    colour = cols[2].segmented_control("Colour by", COLOURINGS, key="em_colour", required=True,
                                       persist_state="session",
                                       format_func=COLOURING_NAMES.get)
    cols = st.columns([2, 3, 3])
    highlight = cols[0].toggle("Ring likely label errors", key="em_errors",
                               help="Faces the model gets wrong with high confidence: often a "
                                    "wrong label rather than a wrong model")
    threshold = cols[1].slider("Confidence at least", 0.5, 0.99, 0.9, 0.01, key="em_threshold",
                               disabled=not highlight)
    return split, method, colour, threshold if highlight else None


def show_scatter(embedding, classes: tuple[str, ...], colour: str, threshold: float | None,
                 face: int | None) -> None:
    errors = None if threshold is None else likely_label_errors(embedding.predictions, threshold)
    figure = scatter_figure(embedding, colour, classes, errors, threshold or 0.9, face)
    st.plotly_chart(figure, key="em_scatter", on_select=on_scatter_select,
                    selection_mode=("points", "lasso", "box"), config=CONFIG)
    marked = "" if errors is None else (f" {len(errors):,} likely label error"
                                        f"{'' if len(errors) == 1 else 's'} ringed in red.")
    st.caption(f"Each point is a face. Click one to choose it; to see many, pick the lasso "
               f"(or box) in the chart's toolbar and draw around them. Drag to zoom, "
               f"double-click to zoom out. Click a legend entry to hide a group, double-click "
               f"it to show only that group.{marked}")


def show_selected(dataset, preds, classes: tuple[str, ...], selected: list[int]) -> None:
    st.subheader(f"Selected: {len(selected):,} face{'s' if len(selected) != 1 else ''}")
    pages = -(-len(selected) // FACES_PER_PAGE)
    page = 1
    if st.session_state.get("em_page", 1) > pages:
        st.session_state["em_page"] = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages}, {FACES_PER_PAGE} faces each)", 1, pages,
                               key="em_page")
    shown = np.asarray(selected[(page - 1) * FACES_PER_PAGE:page * FACES_PER_PAGE])
    show_gallery(dataset, preds, classes, shown, key="em_gallery", face_key="em_face")


def show_neighbours(dataset, preds, classes: tuple[str, ...], face: int) -> None:
    k = st.slider("Nearest neighbours", 1, 50, 10, key="em_k",
                  help="The faces whose penultimate features point most nearly the same way "
                       "(cosine similarity): the faces the model thinks are alike")
    positions, similarity = nearest_neighbours(preds.features, face, k)
    st.caption("Cosine similarity, nearest first: "
               + ", ".join(f"{s:.3f}" for s in similarity.tolist()))
    show_gallery(dataset, preds, classes, positions, key="em_neighbours", face_key="em_face")


def page() -> None:
    opened = state.scoring_page("Embeddings")
    if opened is None:
        return
    choice, dataset, ckpt = opened
    splits, methods = dataset.present_splits(), available_methods()
    init_from_url(dataset, splits, methods)
    if st.session_state["em_split"] not in splits:
        st.session_state["em_split"] = splits[0]
    split, method, colour, threshold = show_controls(splits, methods)
    try:
        embedding = load_embedding(ckpt, dataset, split, method)
    except FerError as e:
        st.error(str(e), icon=":material/error:")
        return
    if embedding is None:
        write_url(split, method, colour, None)
        return
    preds = embedding.predictions
    n = len(preds.rows)
    accuracy = preds.accuracy()
    st.caption(f"Checkpoint **{choice.run}** ({ckpt.arch}) on `{choice.data}`, {split} split: "
               f"{n:,} faces, {preds.features.shape[1]} penultimate features each, by "
               f"{PROJECTIONS[method]}"
               + ("" if accuracy is None else f"; accuracy {accuracy:.1%}") + ".")
    face, classes = chosen_face(n), ckpt.task.classes
    show_scatter(embedding, classes, colour, threshold, face)
    selected = [p for p in st.session_state.get("em_selected", []) if p < n]
    if len(selected) > 1:  # one clicked face is the chosen face, shown large below
        show_selected(dataset, preds, classes, selected)
    st.session_state.pop("em_face_open", None)  # a clicked face opens below, not in a dialog
    if face is not None:
        st.divider()
        show_face(dataset, preds, classes, face, choice)
        show_neighbours(dataset, preds, classes, face)
    write_url(split, method, colour, face)


page()
