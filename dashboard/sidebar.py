"""The sidebar every page shares: dataset, checkpoint and device.

It is drawn by the entry script on every run, so its widgets live on every page. The choice
itself is kept in a plain session-state dict that the widgets' callbacks update and that gives
every widget its initial value: a widget can lose its state when a rerun interrupts the run
that created it (a click on a page link while the first page is still loading), and then it
comes back with the remembered value rather than an empty one. The choice is mirrored into the
URL (?data=...&run=...): a copied link, a reload or a new tab starts from the same choice, since
a fresh session takes it from the query params.
"""

from pathlib import Path

import streamlit as st

from dashboard.common import url
from dashboard.common.paths import checkpoints_root
from dashboard.common.runs import RunInfo, all_runs
from dashboard.common.state import (
    BUILTIN,
    Selection,
    checkpoint_problem,
    device,
    device_problem,
    device_text,
    load_faces,
    startup_data_spec,
)
from fer_core.data.readers import is_builtin_spec

BUILTIN_LABEL, FILE_LABEL = "Built-in faces", "Dataset path"
SHIPPED_RUNS = {True: "builtin-cnn3", False: "fer2013-cnn3"}  # by "is the data built-in?"
GPU_RUN, GPUS = "fer2013-resnet18", ("cuda", "mps")  # FER2013's default where a GPU computes
SAVED = "sidebar_saved"


def render() -> Selection:
    """Draw the sidebar and return (and store in session state) the current choice."""
    with st.sidebar:
        data = _dataset_picker()
        run = _checkpoint_picker(data)
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
        builtin = is_builtin_spec(spec)
        st.session_state[SAVED] = {
            "data_kind": BUILTIN_LABEL if builtin else FILE_LABEL,
            "builtin_spec": spec if builtin else BUILTIN,  # builtin:N keeps its N
            "data_path": "" if builtin else spec,
            "ckpt": st.query_params.get("run"),
            "ckpt_chosen": st.query_params.get("run") is not None,
            "url_run": st.query_params.get("run"),
        }
        st.session_state["data_active"] = BUILTIN
    return st.session_state[SAVED]


def _remember(key: str) -> None:
    """Widget callback: the new value becomes the remembered choice."""
    st.session_state[SAVED][key] = st.session_state[key]
    if key == "ckpt":
        st.session_state[SAVED]["ckpt_chosen"] = True


def _dataset_picker() -> str:
    """The dataset spec in use: the typed path once it loads, the last good one until then."""
    saved = _saved()
    st.subheader("Dataset")
    kinds = (BUILTIN_LABEL, FILE_LABEL)
    kind = st.radio("Dataset", kinds, kinds.index(saved["data_kind"]), key="data_kind",
                    horizontal=True, label_visibility="collapsed", on_change=_remember,
                    args=("data_kind",))
    wanted = saved["builtin_spec"]
    if kind == FILE_LABEL:
        wanted = st.text_input("A FER2013 CSV, a tree of class folders or FER+'s folders",
                               saved["data_path"], key="data_path",
                               placeholder="/path/to/fer2013.csv or tree/",
                               on_change=_remember, args=("data_path",)).strip()
    if wanted:
        dataset, error = load_faces(wanted)
        if error:
            st.error(error, icon=":material/error:")
        else:
            st.session_state["data_active"] = wanted
            st.caption(found(dataset))
    active = st.session_state["data_active"]
    if active != wanted:
        st.caption(f"Still showing: `{active}`")
    return active


def found(dataset) -> str:
    """What the reader found: the task, the faces of each split, and its notes (files skipped,
    images resized)."""
    task = dataset.task
    counts = ", ".join(f"{split} {len(dataset.indices(split)):,}"
                       for split in dataset.present_splits())
    notes = "".join(f"  \n{note}" for note in dataset.notes)
    return (f"{task.size}x{task.size} {'colour' if task.colour else 'grey'}, "
            f"{task.num_classes} classes ({', '.join(task.classes)}); {counts}{notes}")


def _checkpoint_picker(data: str) -> str | None:
    """A run with saved weights, labelled with its architecture, dataset and best accuracy.
    Until the user picks one, the default follows the dataset (see `default_run`)."""
    saved = _saved()
    st.subheader("Checkpoint")
    runs = {r.name: r for r in all_runs() if r.has_checkpoint}
    if not runs:
        st.caption(f"No checkpoints in `{checkpoints_root()}` yet: train one on the Training page.")
        return None
    if saved.pop("url_run", None) not in (None, *runs):
        url.ignored("run", expected="the name of a checkpoint on this server")
    if saved["ckpt"] not in runs or not saved.get("ckpt_chosen"):
        saved["ckpt"] = default_run(runs, data, device().type)
    if st.session_state.get("ckpt") != saved["ckpt"]:
        # Set through session state (not a default index): the browser's box then shows it too.
        st.session_state["ckpt"] = saved["ckpt"]
    name = st.selectbox("Checkpoint", list(runs), key="ckpt", label_visibility="collapsed",
                        format_func=lambda n: run_label(runs[n]), on_change=_remember,
                        args=("ckpt",))
    st.caption(run_caption(runs[name]))
    if problem := checkpoint_problem(name):
        st.error(f"{problem}. The pages that score faces cannot use it; Model shows what its "
                 f"folder still holds.", icon=":material/error:")
    if note := data_mismatch(runs[name], data):
        st.warning(note, icon=":material/warning:")
    return name


def choose_run(name: str) -> None:
    """Button callback: make `name` the chosen checkpoint, as if picked in the sidebar."""
    saved = _saved()
    saved["ckpt"], saved["ckpt_chosen"] = name, True


def shipped_run(names, builtin: bool, device_type: str) -> str | None:
    """The shipped checkpoint among `names` for this kind of data on this device: builtin-cnn3
    for the built-in faces; for FER2013, fer2013-resnet18 on a GPU, else fer2013-cnn3 (ResNet18
    predicts about 5.5x slower on a CPU). None when it is not there."""
    if not builtin and device_type in GPUS and GPU_RUN in names:
        return GPU_RUN
    return SHIPPED_RUNS[builtin] if SHIPPED_RUNS[builtin] in names else None


def default_run(runs: dict[str, RunInfo], data: str, device_type: str) -> str:
    """For a folder, the latest run trained on that very folder (a tree's own model before a
    FER2013 one mapped to its classes), else the shipped checkpoint for this kind of data and
    device (`shipped_run`), else the first run trained on that kind, else the first run."""
    builtin = is_builtin_spec(data)
    own = [r for r in runs.values()
           if not builtin and r.data and Path(data).is_dir() and _same_data(r.data, data)]
    if own:
        return max(own, key=lambda r: r.started or 0).name
    if shipped := shipped_run(runs, builtin, device_type):
        return shipped
    fitting = [n for n, r in runs.items() if r.data and is_builtin_spec(r.data) == builtin]
    return fitting[0] if fitting else next(iter(runs))


def _same_data(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def data_mismatch(run: RunInfo, data: str) -> str | None:
    """A note when the run was trained on the other kind of data than the one shown."""
    if not run.data or is_builtin_spec(run.data) == is_builtin_spec(data):
        return None
    trained = "the built-in synthetic faces" if is_builtin_spec(run.data) else "real FER2013 photos"
    shown = "the built-in synthetic faces" if is_builtin_spec(data) else "real faces"
    return (f"{run.name} was trained on {trained}, and the dataset shown is {shown}: expect "
            f"its predictions here to say little about it.")


def run_label(run: RunInfo) -> str:
    """'name · 61.2%' (its best val accuracy), or 'name · ⚠ cut short': short enough for the
    sidebar's box."""
    if run.checkpoint_cut:
        return f"{run.name} \u00b7 \u26a0 cut short"
    acc = "\u2014" if run.best_val_acc is None else f"{run.best_val_acc:.1%}"
    return f"{run.name} \u00b7 {acc}"


def run_caption(run: RunInfo) -> str:
    """'cnn3 trained on fer2013.csv.gz': what the box's label leaves out."""
    if not run.data:
        return f"{run.arch or 'Unknown architecture'}, training data not recorded"
    data = "the built-in faces" if is_builtin_spec(run.data) else f"`{Path(run.data).name}`"
    return f"{run.arch or 'Unknown architecture'} trained on {data}"


def _write_url(choice: Selection) -> None:
    wanted = {"data": choice.data, "run": choice.run}
    url.write(wanted)
