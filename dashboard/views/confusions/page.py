"""Confusions: the clickable confusion matrix of the chosen checkpoint on one split, the faces of
the chosen (true, predicted) cell beside their mean saliency, one face opened large, and the
metrics around them.

The URL carries the split, the cell (?true=T&pred=P) and the opened face (?idx=I, its 0-based
position within the split), so a copied link opens the same view in a new tab.

With an export of the split (`python -m fer_core export`, found in the checkpoint's run folder)
each face's map can be drawn beside it, and the cell's mean map is the mean of the exported maps,
at once, instead of being computed.
"""

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from dashboard.common import exports, state, url
from dashboard.common.clicks import cell_from_state, parse_cell, parse_index
from dashboard.common.gallery import (
    BESIDE_COLUMNS,
    COLUMNS,
    FACES_PER_PAGE,
    TileMaps,
    face_dialog,
    show_gallery,
)
from dashboard.common.influence import self_influence_ranking
from dashboard.common.matrix import matrix_figure
from dashboard.common.progress import on_bar
from dashboard.common.runs import all_runs
from dashboard.common.tables import content_height
from dashboard.views.confusions.cell_maps import cell_map
from dashboard.views.confusions.charts import (
    difference_figure,
    pr_figure,
    reliability_figure,
)
from fer_core.errors import FerError
from fer_core.evaluation.confusion import (
    NORMALIZATIONS,
    SORT_KEYS,
    cell_positions,
    class_metrics,
    confusion_counts,
    disagreements,
    label_errors_csv,
    likely_label_errors,
    matrix_csv,
    normalize,
    pr_curves,
    ranked_pairs,
    reliability,
    summary,
)
from fer_core.explain.attribution import METHODS
from fer_core.explain.export_files import Export
from fer_core.explain.heatmap import colorize
from fer_core.explain.influence import TRAIN

NORM_LABELS = {"counts": "Counts", "row": "Row % (recall)", "column": "Column % (precision)"}
SORT_LABELS = {"default": "Default", "pred_prob": "Probability of predicted class",
               "true_prob": "Probability of true class", "loss": "Loss (−log p(true))",
               "margin": "Margin p(pred) − p(true)"}
CONFIG = {"displayModeBar": False}
MAP_SIZE = 192  # pixels: the width the mean saliency is drawn at
ERROR_RANKINGS = {"confident": "Confident mistakes", "self": "Self-influence"}
SELF_INFLUENCE_SHARE = 0.05  # of the training faces, listed by self-influence


def init_from_url(dataset, splits: list[str]) -> None:
    """A session's first visit takes split, cell and face from the URL (a pasted link)."""
    if "cm_split" in st.session_state:
        return
    q = st.query_params
    default = dataset.default_split(splits)
    st.session_state["cm_split"] = q.get("split") if q.get("split") in splits else default
    k = dataset.task.num_classes
    st.session_state["cm_cell"] = parse_cell((q.get("true"), q.get("pred")), k)
    st.session_state["cm_face"] = q.get("idx")
    st.session_state["cm_face_open"] = q.get("idx") is not None
    if q.get("split") not in (None, *splits):
        url.ignored("split", expected=f"one of {', '.join(splits)}")
    if (q.get("true"), q.get("pred")) != (None, None) and st.session_state["cm_cell"] is None:
        url.ignored("true", "pred", expected=f"two class numbers 0-{k - 1}")


def write_url(split: str, cell: tuple[int, int], face: int | None) -> None:
    wanted = {"split": split, "true": str(cell[0]), "pred": str(cell[1]),
              "idx": None if face is None else str(face)}
    url.write(wanted)


def choose_cell(cell: tuple[int, int] | None) -> None:
    """A new cell: its gallery starts at page 1 with no face opened."""
    if cell is not None and cell != st.session_state.get("cm_cell"):
        st.session_state["cm_cell"] = cell
        st.session_state["cm_face"] = None
        st.session_state["cm_page"] = 1


def on_split_change() -> None:
    """A face index belongs to its split: another split opens no face."""
    st.session_state["cm_face"] = None


def on_matrix_click(num_classes: int) -> None:
    choose_cell(cell_from_state(st.session_state.get("cm_matrix"), num_classes))


def on_pair_select() -> None:
    rows = st.session_state["cm_pairs"].selection.rows
    if rows:
        choose_cell(st.session_state["cm_pair_cells"][rows[0]])


def show_summary(preds, y, yhat) -> dict:
    s = summary(y, yhat)
    rel = reliability(preds.probs[preds.labelled], y)
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{s['accuracy']:.1%}")
    cols[1].metric("Balanced accuracy", f"{s['balanced_accuracy']:.1%}",
                   help="Mean recall over the classes: rare classes count as much as common ones")
    cols[2].metric("Labelled faces", f"{s['n']:,}")
    cols[3].metric("Calibration error (ECE)", f"{rel['ece']:.3f}",
                   help="Expected calibration error over 10 confidence bins: the mean gap "
                        "between confidence and accuracy, weighted by faces (0 = calibrated)")
    return rel


def show_matrix(counts: np.ndarray, cell: tuple[int, int], classes: tuple[str, ...]) -> None:
    mode = st.segmented_control("Colour by", NORMALIZATIONS, key="cm_norm", required=True,
                                default="counts", format_func=NORM_LABELS.get,
                                persist_state="session")
    figure = matrix_figure(counts, normalize(counts, mode), mode, classes, cell)
    st.plotly_chart(figure, key="cm_matrix", on_select=partial(on_matrix_click, len(classes)),
                    selection_mode="points", config=CONFIG)
    st.caption("Rows: true class. Columns: predicted class. Click a cell to see its faces.")


def show_pairs(counts: np.ndarray, classes: tuple[str, ...]) -> None:
    pairs = ranked_pairs(counts, classes)[:12]
    st.markdown("**Most confused pairs**")
    if not pairs:
        st.caption("No mistakes on this split.")
        return
    st.session_state["cm_pair_cells"] = [(p["true"], p["pred"]) for p in pairs]
    table = pd.DataFrame({"true": [p["true_name"] for p in pairs],
                          "predicted": [p["pred_name"] for p in pairs],
                          "faces": [p["count"] for p in pairs],
                          "share of true": [p["share"] for p in pairs]})
    st.dataframe(table, key="cm_pairs", on_select=on_pair_select, selection_mode="single-row",
                 hide_index=True, height=content_height(len(table)),
                 column_config={"share of true": st.column_config.NumberColumn(format="percent")})
    st.caption("Choose a row to open that cell.")


def gallery_positions(ckpt, dataset, preds,
                      cell: tuple[int, int]) -> tuple[str, np.ndarray, bool]:
    """The title and positions the gallery shows, and whether they are one cell's faces (in the
    chosen order) rather than the likely label errors across all cells (on the train split,
    ranked by confident mistakes or by self-influence)."""
    t, p = cell
    cols = st.columns([3, 3, 2])
    sort = cols[0].selectbox("Order", ["default", *SORT_KEYS], key="cm_sort",
                             format_func=SORT_LABELS.get, persist_state="session",
                             help="Default: most confident mistakes first; on the diagonal, "
                                  "least confident correct faces first")
    errors_only = cols[1].toggle("Likely label errors, all cells", key="cm_errors",
                                 help="Faces the model gets wrong with high confidence: often a "
                                      "wrong label rather than a wrong model")
    ranking = "confident"
    if errors_only and preds.split == TRAIN:
        ranking = st.segmented_control(
            "Rank by", list(ERROR_RANKINGS), key="cm_error_ranking", required=True,
            default="confident", format_func=ERROR_RANKINGS.get, persist_state="session",
            help="Self-influence (TracIn over the run's snapshots): how much a training face's "
                 "own gradient steps moved its own loss; the faces the model keeps failing to "
                 "fit, often mislabelled")
    threshold = cols[2].slider("Confidence at least", 0.5, 0.99, 0.9, 0.01, key="cm_threshold",
                               disabled=not errors_only or ranking == "self")
    if ranking == "self":
        try:
            positions, _ = self_influence_ranking(ckpt, dataset)
        except FerError as e:  # a damaged or unreadable snapshot
            st.error(f"Self-influence cannot be ranked: {e}", icon=":material/error:")
            positions = np.empty(0, dtype=np.int64)
        shown = max(1, round(SELF_INFLUENCE_SHARE * len(preds.rows)))
        return (f"Highest self-influence, top {SELF_INFLUENCE_SHARE:.0%} of the training faces",
                positions[:shown], False)
    if errors_only:
        return f"Likely label errors (confidence ≥ {threshold:.2f})", \
            likely_label_errors(preds, threshold), False
    classes = ckpt.task.classes
    title = f"True {classes[t]}, predicted {classes[p]}"
    return title, cell_positions(preds, t, p, sort=None if sort == "default" else sort), True


def export_choice(folder: Path, methods: list[str]) -> tuple[str, bool]:
    """Which method of the export in `folder` to show, and whether each face's map goes beside
    it."""
    if st.session_state.get("cm_export_method") not in methods:
        st.session_state["cm_export_method"] = methods[0]
    cols = st.columns([3, 3, 2])
    method = cols[0].selectbox("Exported maps", methods, key="cm_export_method",
                               format_func=lambda m: METHODS[m].title,
                               help=f"Maps of the predicted class, read from "
                                    f"{exports.describe(folder)}")
    beside = cols[1].toggle("Each face's map beside it", key="cm_export_maps",
                            persist_state="session")
    return method, beside


def show_cell(ckpt, dataset, preds, cell: tuple[int, int]) -> None:
    """The gallery, and beside it the cell's mean saliency. The gallery is drawn first, so the
    browser shows it while the map is computed (or read from an export)."""
    title, positions, one_cell = gallery_positions(ckpt, dataset, preds, cell)
    classes = ckpt.task.classes
    export, method, beside_faces = None, None, False
    if (found := exports.richest(ckpt, dataset, preds.split)) is not None:
        method, beside_faces = export_choice(*found)
        export = exports.load(found[0], dataset, preds.split, method)
    st.subheader(f"{title}: {len(positions):,} faces")
    if not len(positions):
        t, p = cell
        st.info(f"This cell is empty: no {classes[t]} face of the {preds.split} split was "
                f"predicted {classes[p]}." if one_cell else
                f"No face of the {preds.split} split is listed.", icon=":material/info:")
        return
    gallery, beside = st.columns([3, 1]) if one_cell else (st.container(), None)
    with gallery:
        pages = -(-len(positions) // FACES_PER_PAGE)
        page = 1
        if st.session_state.get("cm_page", 1) > pages:  # fewer pages than before
            st.session_state["cm_page"] = 1
        if pages > 1:
            page = st.columns(3)[0].number_input(
                f"Page (of {pages}, {FACES_PER_PAGE} faces each)", 1, pages, key="cm_page")
        shown = positions[(page - 1) * FACES_PER_PAGE:page * FACES_PER_PAGE]
        maps = None
        if beside_faces and export is not None:
            maps = TileMaps(export.maps[method][shown].astype(np.float32), METHODS[method].signed,
                            (str(export.folder), export.manifest["key"], method))
        show_gallery(dataset, preds, classes, shown, key="cm_gallery", face_key="cm_face",
                     columns=BESIDE_COLUMNS if one_cell else COLUMNS, maps=maps)
    if beside is not None:
        with beside:
            if export is not None:
                show_exported_map(export, method, cell, positions, classes)
            else:
                show_cell_map(ckpt, dataset, preds, cell, len(positions))


def show_cell_map(ckpt, dataset, preds, cell: tuple[int, int], n: int) -> None:
    """The cell's mean saliency, 4x with visible pixels, with a progress bar in its place the
    first time it is computed."""
    t, p = cell
    classes = ckpt.task.classes
    st.markdown(f"**What turns {classes[t]} into {classes[p]}**" if t != p
                else f"**Where it looks for {classes[t]}**")
    slot = st.empty()
    values = cell_map(ckpt, dataset, preds, cell, progress=on_bar(
        slot, lambda done, total: f"Mean saliency: {done:,} of {total:,} faces"))
    image = Image.fromarray(colorize(values, signed=t != p))
    slot.image(image.resize((MAP_SIZE, MAP_SIZE), Image.Resampling.NEAREST))
    st.caption(cell_map_caption(t, p, n, classes))


def show_exported_map(export: Export, method: str, cell: tuple[int, int],
                      positions: np.ndarray, classes: tuple[str, ...]) -> None:
    """The mean of the cell's exported maps (each of its face's predicted class)."""
    t, p = cell
    spec = METHODS[method]
    st.markdown(f"**Mean {spec.title} map of {classes[p]}**")
    values = export.maps[method][positions].astype(np.float32).mean(0)
    image = Image.fromarray(colorize(values, signed=spec.signed))
    st.image(image.resize((MAP_SIZE, MAP_SIZE), Image.Resampling.NEAREST))
    n = len(positions)
    st.caption(f"Mean {spec.title} map of the predicted class, {classes[p]}, over the {n:,} "
               f"face{'s' if n != 1 else ''} of this cell (true {classes[t]}), read from "
               f"{exports.describe(export.folder)}.")


def cell_map_caption(t: int, p: int, n: int, classes: tuple[str, ...]) -> str:
    """What the map of cell (t, p) with n faces shows, in words."""
    true, pred, faces = classes[t], classes[p], f"{n:,} face{'s' if n != 1 else ''}"
    if t == p:
        return (f"Mean |gradient| of logit {true} over its {faces}: where the model looks when "
                f"it gets {true} right.")
    article = "an" if true[0] in "AEIOU" else "a"
    return (f"Mean gradient of logit {pred} − logit {true} over the {faces} of this cell: red "
            f"pixels push {article} {true} face towards {pred}, blue away.")


def show_downloads(dataset, preds, counts: np.ndarray, classes: tuple[str, ...]) -> None:
    threshold = st.session_state.get("cm_threshold", 0.9)
    errors = likely_label_errors(preds, threshold)
    cols = st.columns(2)
    cols[0].download_button(
        "Label errors CSV", label_errors_csv(preds, errors, dataset.sources, classes),
        file_name="likely_label_errors.csv", mime="text/csv", icon=":material/download:",
        on_click="ignore", width="stretch",
        help=f"The {len(errors):,} faces predicted wrongly with confidence ≥ {threshold:.2f}: "
             f"split, index, source, label, prediction, confidence")
    cols[1].download_button("Matrix CSV", matrix_csv(counts, classes),
                            file_name=f"confusion_{preds.split}.csv", mime="text/csv",
                            icon=":material/download:", on_click="ignore", width="stretch",
                            help="The confusion matrix counts, rows = true class")


def show_class_metrics(y, yhat, classes: tuple[str, ...]) -> None:
    table = pd.DataFrame(class_metrics(y, yhat, classes))
    percent = {"format": "percent", "min_value": 0.0, "max_value": 1.0}
    st.dataframe(table, hide_index=True, height=content_height(len(table)), column_config={
        k: st.column_config.ProgressColumn(**percent) for k in ("precision", "recall", "f1")})


def show_calibration(rel: dict) -> None:
    st.plotly_chart(reliability_figure(rel), config=CONFIG)
    st.caption(f"Bars: accuracy of the faces in each confidence bin; red marks: their mean "
               f"confidence. Bars below the diagonal mean overconfidence. ECE {rel['ece']:.3f}.")


def show_compare(ckpt, dataset, preds, counts: np.ndarray, run: str) -> None:
    others = [r.name for r in all_runs() if r.has_checkpoint and r.name != run]
    if not others:
        st.caption("Train or add a second checkpoint to compare two models here.")
        return
    other = st.selectbox("Compare with", [None, *others], key="cm_compare",
                         format_func=lambda n: "choose a checkpoint" if n is None else n)
    if other is None:
        return
    second = state.page_checkpoint(other)
    if second is None:
        return
    if second.task != ckpt.task:
        st.error(f"{other} is a model of {second.task.named()}, and {run} of "
                 f"{ckpt.task.named()}: two models are compared cell by cell, so they need the "
                 f"same classes and faces. Choose another checkpoint to compare.",
                 icon=":material/error:")
        return
    theirs = state.shown_predictions(second, dataset, preds.split)
    known, classes = preds.labelled, ckpt.task.classes
    other_counts = confusion_counts(theirs.labels[known], theirs.predicted[known], classes)
    cols = st.columns(3)
    cols[0].metric(f"{run} accuracy", f"{preds.accuracy():.1%}")
    cols[1].metric(f"{other} accuracy", f"{theirs.accuracy():.1%}",
                   delta=f"{theirs.accuracy() - preds.accuracy():+.1%}")
    differ = disagreements(preds, theirs)
    cols[2].metric("Faces they disagree on", f"{len(differ):,}")
    st.plotly_chart(difference_figure(other_counts - counts, run, other, classes),
                    key="cm_compare_difference", config=CONFIG)
    st.caption(f"Each cell: faces {other} puts there minus faces {run} puts there. Blue on the "
               f"diagonal and red off it mean {other} does better.")
    if len(differ):
        st.markdown(f"**Faces where they disagree** (first {FACES_PER_PAGE}; captions give "
                    f"{run}'s prediction)")
        show_gallery(dataset, preds, classes, differ[:FACES_PER_PAGE], key="cm_disagree",
                     face_key="cm_face")


def page() -> None:
    opened = state.scoring_page("Confusions")
    if opened is None:
        return
    choice, dataset, ckpt = opened
    splits = dataset.labelled_splits()
    if not splits:
        st.warning(f"A confusion matrix needs labels, and dataset `{choice.data}` has none (its "
                   f"faces are unlabelled test faces). Choose a labelled dataset in the sidebar.",
                   icon=":material/warning:")
        return
    init_from_url(dataset, splits)
    if st.session_state["cm_split"] not in splits:
        st.session_state["cm_split"] = splits[0]
    split = st.segmented_control("Split", splits, key="cm_split", required=True,
                                 persist_state="session", on_change=on_split_change)
    st.caption(f"Checkpoint **{choice.run}** ({ckpt.arch}) on `{choice.data}`, {split} split.")
    preds = state.shown_predictions(ckpt, dataset, split)
    known, classes = preds.labelled, ckpt.task.classes
    y, yhat = preds.labels[known], preds.predicted[known]
    counts = confusion_counts(y, yhat, classes)
    rel = show_summary(preds, y, yhat)
    explore(ckpt, dataset, preds, counts, choice)
    st.divider()
    tabs = st.tabs(["Per-class metrics", "Calibration", "Precision-recall",
                    "Compare checkpoints"])
    with tabs[0]:
        show_class_metrics(y, yhat, classes)
    with tabs[1]:
        show_calibration(rel)
    with tabs[2]:
        st.plotly_chart(pr_figure(pr_curves(preds.probs[known], y, classes)), config=CONFIG)
        st.caption("One class against the rest, ranked by the probability of that class.")
    with tabs[3]:
        show_compare(ckpt, dataset, preds, counts, choice.run)


@st.fragment
def explore(ckpt, dataset, preds, counts: np.ndarray, choice) -> None:
    """The matrix, its pairs, the chosen cell's gallery and mean saliency, and the opened face.
    A fragment: a click here reruns only this part, not the metrics, curves and comparison
    below."""
    classes = ckpt.task.classes
    pairs = ranked_pairs(counts, classes)
    cell = parse_cell(st.session_state.get("cm_cell") or (), len(classes)) or (
        (pairs[0]["true"], pairs[0]["pred"]) if pairs else (0, 0))  # none yet, or another task's
    st.session_state["cm_cell"] = cell
    left, right = st.columns([3, 2], gap="large")
    with left:
        show_matrix(counts, cell, classes)
    with right:
        show_pairs(counts, classes)
        show_downloads(dataset, preds, counts, classes)
    st.divider()
    face = parse_index(st.session_state.get("cm_face"), len(preds.rows))
    if face is None and st.session_state.get("cm_face") is not None:
        url.ignored("idx", expected=f"a face number from 0 to {len(preds.rows) - 1}")
    st.session_state["cm_face"] = face
    show_cell(ckpt, dataset, preds, cell)
    if st.session_state.pop("cm_face_open", False) and face is not None:
        face_dialog(dataset, preds, classes, face, choice)
    write_url(preds.split, cell, face)


page()
