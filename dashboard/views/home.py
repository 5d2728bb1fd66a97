"""Home: the dataset in use (counts and sample faces), the checkpoints found, the device, and the
environment (`python -m fer_core env`): what is broken is said at the top, one line each."""

import io
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.common import state
from dashboard.common.images import class_grid
from dashboard.common.paths import checkpoints_root, run_roots
from dashboard.common.runs import all_runs
from dashboard.common.tables import RUN_COLUMNS, runs_frame
from dashboard.sidebar import shipped_run
from fer_core.data.readers import is_builtin_spec
from fer_core.data.task import FER2013
from fer_core.environment import problems, report

SYNTHETIC_NOTE = """
**The built-in faces are synthetic stand-ins**, drawn procedurally so the app works out of the box
(they mimic FER2013's classes and classic confusions, not real faces). To load real faces, either:

- start with `FER_DATA=/path/to/fer2013.csv streamlit run dashboard/app.py`,
- or `streamlit run dashboard/app.py -- --data /path/to/fer2013.csv`,
- or choose **Dataset path** in the sidebar and type the path.

FER2013's Kaggle CSV (`emotion,pixels,Usage`) is read, and so is any class-folder tree
(`train/`, `test/` and `val/` or `valid/` folders with one sub-folder per class, such as FER2013's
image export or RAF-DB): its classes, size and colour come from the images.
"""


@st.cache_data(max_entries=4, show_spinner=False)
def grid_png(_dataset, fingerprint: str) -> bytes:
    """The sample grid as PNG bytes, once per dataset (keyed by its fingerprint)."""
    buffer = io.BytesIO()
    class_grid(_dataset).save(buffer, format="PNG")
    return buffer.getvalue()


def counts_frame(dataset) -> pd.DataFrame:
    """Faces per split (rows) and class (columns, in the dataset's task's order), with totals."""
    table = pd.DataFrame(dataset.counts()).T.fillna(0).astype(int)
    columns = [*dataset.task.classes, "unlabelled"]
    table = table.reindex(columns=[c for c in columns if c in table.columns])
    table["total"] = table.sum(axis=1)
    table.loc["all"] = table.sum()
    return table


def environment_section(facts) -> None:
    """The facts of `python -m fer_core env` as a table, opened when something is broken."""
    with st.expander("Environment", icon=":material/memory:", expanded=bool(problems(facts))):
        table = pd.DataFrame({"": [f.name for f in facts], "version or state":
                              [f.value for f in facts]})
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption("The same as `python -m fer_core env`.")


def dataset_title(spec: str, dataset) -> str:
    """'Built-in faces', 'FER2013' (its CSV or image export), else the folder's name."""
    if is_builtin_spec(spec):
        return "Built-in faces"
    return "FER2013" if dataset.task == FER2013 else Path(spec).name


def page() -> None:
    choice = state.selection()
    dataset = state.page_faces(choice.data)
    facts = report()

    st.title("FER explainability dashboard")
    st.caption("Train facial-expression CNNs and look inside them: curves, layers, the faces they "
               "get wrong, what they look at, and what their filters respond to.")
    for problem in problems(facts):
        st.error(problem, icon=":material/error:")

    builtin = is_builtin_spec(choice.data)
    runs = [r for r in all_runs() if r.has_checkpoint]
    name = shipped_run([r.name for r in runs], builtin, state.device().type)
    # the shipped model's accuracy is a figure of FER2013's task: not shown beside other data
    shipped = next((r for r in runs if r.name == name and dataset.task == FER2013), None)
    cols = st.columns([3, 2, 2, 3])  # "Built-in faces" needs the room
    cols[0].metric("Dataset", dataset_title(choice.data, dataset))
    cols[1].metric("Faces", f"{len(dataset):,}")
    cols[2].metric("Device", state.device().type.upper(), help=state.device_text())
    if shipped is not None and shipped.checkpoint_cut:
        cols[3].metric(shipped.name, "\u26a0 cut short", help="Its checkpoint file is cut short "
                       "and cannot be loaded: train it again or restore the file")
    elif shipped is not None and shipped.best_val_acc is not None:
        cols[3].metric(f"{shipped.name} val accuracy", f"{shipped.best_val_acc:.1%}",
                       help="The shipped model for this kind of data, on its validation split "
                            "(PublicTest for FER2013); see its MODEL_CARD.md")
    if builtin:
        st.info(SYNTHETIC_NOTE, icon=":material/info:")
    else:
        st.caption(f"Loaded from `{choice.data}` ({dataset.layout} layout): "
                   f"{dataset.task.describe()}")

    st.subheader("Faces per split and class")
    st.dataframe(counts_frame(dataset), width="stretch")

    st.subheader("Sample faces")
    st.image(grid_png(dataset, dataset.fingerprint),
             caption="The first training faces of each class")

    st.subheader("Checkpoints")
    if runs:
        st.dataframe(runs_frame(runs), hide_index=True, width="stretch", column_config=RUN_COLUMNS)
        folders = " and ".join(f"`{root}`" for root in run_roots())
        st.caption(f"Run folders in {folders}; pick one in the sidebar.")
    else:
        st.caption(f"No checkpoints in `{checkpoints_root()}` yet. Train one on the Training "
                   "page, or with `python -m fer_core train --data builtin --out "
                   "checkpoints/NAME`.")
    environment_section(facts)


page()
