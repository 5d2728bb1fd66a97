"""The sidebar every page shares: dataset, checkpoint and device.

It is drawn by the entry script on every run, so its widgets live on every page. The choice
itself is kept in a plain session-state dict that the widgets' callbacks update and that gives
every widget its initial value: a widget can lose its state when a rerun interrupts the run
that created it (a click on a page link while the first page is still loading), and then it
comes back with the remembered value rather than an empty one. The choice is mirrored into the
URL (?data=...&run=...): a copied link, a reload or a new tab starts from the same choice, since
a fresh session takes it from the query params.
"""

import streamlit as st

from .launcher import RunInfo, list_runs
from .paths import checkpoints_root
from .state import (
    BUILTIN,
    Selection,
    device_problem,
    device_text,
    load_faces,
    startup_data_spec,
)

BUILTIN_LABEL, FILE_LABEL = "Built-in faces", "FER2013 file"
SHIPPED_RUN = "builtin-cnn3"
SAVED = "sidebar_saved"


def render() -> Selection:
    """Draw the sidebar and return (and store in session state) the current choice."""
    with st.sidebar:
        data = _dataset_picker()
        run = _checkpoint_picker()
        st.caption(f"Device: **{device_text()}**")
        if problem := device_problem():
            st.warning(problem, icon=":material/warning:")
    choice = Selection(data=data, run=run)
    st.session_state["selection"] = choice
    _write_url(choice)
    return choice


def _saved() -> dict:
    """The remembered choice; a session's first run takes it from the URL, then from
    --data/FER_DATA."""
    if SAVED not in st.session_state:
        spec = st.query_params.get("data") or startup_data_spec()
        st.session_state[SAVED] = {
            "data_kind": BUILTIN_LABEL if spec == BUILTIN else FILE_LABEL,
            "data_path": "" if spec == BUILTIN else spec,
            "ckpt": st.query_params.get("run"),
        }
        st.session_state["data_active"] = BUILTIN
    return st.session_state[SAVED]


def _remember(key: str) -> None:
    """Widget callback: the new value becomes the remembered choice."""
    st.session_state[SAVED][key] = st.session_state[key]


def _dataset_picker() -> str:
    """The dataset spec in use: the typed path once it loads, the last good one until then."""
    saved = _saved()
    st.subheader("Dataset")
    kinds = (BUILTIN_LABEL, FILE_LABEL)
    kind = st.radio("Dataset", kinds, kinds.index(saved["data_kind"]), key="data_kind",
                    horizontal=True, label_visibility="collapsed", on_change=_remember,
                    args=("data_kind",))
    wanted = BUILTIN
    if kind == FILE_LABEL:
        wanted = st.text_input("FER2013 CSV or image folder", saved["data_path"], key="data_path",
                               placeholder="/path/to/fer2013.csv", on_change=_remember,
                               args=("data_path",)).strip()
    if wanted:
        _, error = load_faces(wanted)
        if error:
            st.error(error, icon=":material/error:")
        else:
            st.session_state["data_active"] = wanted
    active = st.session_state["data_active"]
    if active != wanted:
        st.caption(f"Still showing: `{active}`")
    return active


def _checkpoint_picker() -> str | None:
    """A run with saved weights, labelled with its architecture, dataset and best accuracy."""
    saved = _saved()
    st.subheader("Checkpoint")
    runs = {r.name: r for r in list_runs(checkpoints_root()) if r.has_checkpoint}
    if not runs:
        st.caption(f"No checkpoints in `{checkpoints_root()}` yet: train one on the Training page.")
        return None
    if saved["ckpt"] not in runs:
        saved["ckpt"] = SHIPPED_RUN if SHIPPED_RUN in runs else next(iter(runs))
    names = list(runs)
    return st.selectbox("Checkpoint", names, names.index(saved["ckpt"]), key="ckpt",
                        label_visibility="collapsed", format_func=lambda n: run_label(runs[n]),
                        on_change=_remember, args=("ckpt",))


def run_label(run: RunInfo) -> str:
    """'name · cnn3 · builtin · 61.2%'."""
    acc = "\u2014" if run.best_val_acc is None else f"{run.best_val_acc:.1%}"
    return " \u00b7 ".join([run.name, run.arch or "?", run.data or "?", acc])


def _write_url(choice: Selection) -> None:
    wanted = {"data": choice.data, "run": choice.run}
    for key, value in wanted.items():
        if value is None:
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != value:
            st.query_params[key] = value
