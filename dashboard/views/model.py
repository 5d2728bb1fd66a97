"""Model: the chosen checkpoint as a report would show it: its architecture table, its training
curves, its confusion matrix on the sidebar's data, and its metadata; or the architecture table
of an untrained architecture (`?arch=cnn3` or `?arch=resnet18`) built for the sidebar's data."""

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.common import state, url
from dashboard.common.curves import training_figure
from dashboard.common.history import RunHistory
from dashboard.common.matrix import matrix_figure
from dashboard.common.paths import checkpoints_root, run_path
from dashboard.common.tables import content_height, settings_frame
from fer_core.data.task import FER2013, Task
from fer_core.errors import FerError
from fer_core.evaluation.confusion import confusion_counts, normalize
from fer_core.models.architectures import ARCHITECTURES, DEFAULT_OPTIONS, arch_options
from fer_core.models.imported import layers_problem
from fer_core.models.checkpoint import Checkpoint
from fer_core.training.runs import RunFolder

CHECKPOINT = "checkpoint"
CONFIG = {"displaylogo": False}


def layer_frame(records: list[dict], total: int) -> pd.DataFrame:
    """The per-layer table with a closing total row."""
    table = pd.DataFrame(records)
    table.loc[len(table)] = {"layer": "total", "type": "", "output": "", "params": total}
    return table


def source_picker(run: str | None) -> str:
    """CHECKPOINT or an architecture name, mirrored in ?arch= (absent for the checkpoint)."""
    options = ([CHECKPOINT] if run else []) + list(ARCHITECTURES)
    wanted = st.query_params.get("arch")
    if "model_source" not in st.session_state and wanted is not None:
        if wanted in options:
            st.session_state["model_source"] = wanted
        else:
            url.ignored("arch", expected=f"one of {', '.join(options)}")
    if st.session_state.get("model_source") not in options:
        st.session_state["model_source"] = options[0]
    source = st.segmented_control(
        "Show", options, key="model_source", required=True, persist_state="session",
        format_func=lambda o: f"Checkpoint {run}" if o == CHECKPOINT else f"{o} (untrained)")
    if source == CHECKPOINT:
        st.query_params.pop("arch", None)
    elif st.query_params.get("arch") != source:
        st.query_params["arch"] = source
    return source


def options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def data_task(data: str) -> Task:
    """The task of the sidebar's dataset, which an untrained architecture is built for
    (FER2013's while that dataset cannot be read)."""
    dataset, _ = state.load_faces(data)
    return FER2013 if dataset is None else dataset.task


def show_table(arch: str, options: dict, task: Task, meta: dict | None) -> None:
    """The parameter counts and the layer table of `arch` built for `task`; the reason in one
    line when `arch` cannot be built here (a ResNet without a working torchvision)."""
    try:
        records, total, trainable = state.architecture_table(arch, options, task)
    except FerError as e:
        st.error(str(e), icon=":material/error:")
        return
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{total:,}")
    cols[1].metric("Trainable", f"{trainable:,}")
    if meta:
        best = meta.get("metrics", {}).get("best_val_acc")
        cols[2].metric("Best val accuracy", "\u2014" if best is None else f"{best:.1%}")
        cols[3].metric("Saved at epoch", meta.get("epoch", "\u2014"))
    else:
        cols[2].metric("Layers", len(records))
    st.subheader("Layers", help=f"Output shape (channels x height x width) for one face of "
                                f"{task.describe()}")
    table = layer_frame(records, total)
    st.dataframe(table, hide_index=True, width="stretch", height=content_height(len(table)),
                 column_config={"params": st.column_config.NumberColumn(format="localized")})


def show_metadata(ckpt: Checkpoint) -> None:
    meta, path = ckpt.meta, ckpt.path
    data = meta.get("dataset", {})
    root = checkpoints_root().parent
    checkpoint = {
        "file": str(path.relative_to(root) if path.is_relative_to(root) else path),
        "architecture": ckpt.arch, "options": ckpt.arch_options,
        "dataset": data.get("name"), "layout": data.get("layout"),
        "fingerprint": data.get("fingerprint"), "epoch": meta.get("epoch"),
        **{k.replace("_", " "): v for k, v in meta.get("metrics", {}).items()},
    }
    left, right = st.columns(2)
    for column, title, settings in ((left, "Checkpoint", checkpoint),
                                    (right, "Training config", meta.get("config", {}))):
        with column:
            st.subheader(title)
            st.dataframe(settings_frame(settings), hide_index=True, width="stretch",
                         height=content_height(len(settings)))


def show_folder(run_dir: Path, task: Task) -> None:
    """What a run whose checkpoint cannot be loaded still shows: the architecture table its
    config.json names (built for `task`), its curves and its configuration."""
    config = RunFolder(run_dir).config() or {}
    arch, options = config.get("arch"), config.get("arch_options")
    if (arch in ARCHITECTURES and isinstance(options, dict)
            and options.keys() <= DEFAULT_OPTIONS[arch].keys()):
        options = arch_options(arch, **options)
        st.caption(f"**{arch}** ({options_text(options)}), as `config.json` describes it")
        show_table(arch, options, task, None)
    show_curves(run_dir)
    if config:
        st.subheader("Training config")
        st.dataframe(settings_frame(config), hide_index=True, width="stretch",
                     height=content_height(len(config)))


def show_curves(run_dir: Path) -> None:
    """Loss and accuracy, train and validation, from the run folder's history.jsonl."""
    st.subheader("Training curves")
    history = RunHistory(run_dir / "history.jsonl")
    history.refresh()
    if not history.epochs:
        st.caption(f"No training history in `{run_dir.name}`: the checkpoint came without one.")
        return
    st.plotly_chart(training_figure(history), key="model_curves", config=CONFIG)
    st.caption(f"{len(history.epochs)} epochs. Dots: each epoch's training and validation "
               "figures; thin line: the running training mean within an epoch.")


def show_confusions(run: str, ckpt: Checkpoint, data: str) -> None:
    """The confusion matrix on the default labelled split of the sidebar's data, as the
    checkpoint sees it (mapped to its task when that is another)."""
    st.subheader("Confusion matrix")
    dataset, problem = state.load_faces(data)
    if dataset is not None and (dataset := state.page_model_faces(run, ckpt, dataset)) is None:
        return
    splits = dataset.labelled_splits() if dataset is not None else []
    if problem or not splits:
        st.info(problem or f"{dataset.name} has no labelled faces to score.",
                icon=":material/info:")
        return
    split = dataset.default_split(splits)
    preds = state.shown_predictions(ckpt, dataset, split)
    known = preds.labelled
    classes = ckpt.task.classes
    counts = confusion_counts(preds.labels[known], preds.predicted[known], classes)
    figure = matrix_figure(counts, normalize(counts, "row"), "row", classes, clickable=False)
    st.plotly_chart(figure, key="model_matrix", config=CONFIG)
    st.caption(f"{dataset.name}, {split} split: {len(known):,} faces, accuracy "
               f"{preds.accuracy():.1%}. Rows: true class, coloured by the share of each row "
               "(recall).")
    st.page_link("views/confusions/page.py", label="Browse each cell's faces on Confusions",
                 icon=":material/grid_on:")


def page() -> None:
    choice = state.selection()
    st.title("Model")
    source = source_picker(choice.run)
    if source == CHECKPOINT:
        try:
            ckpt = state.checkpoint(run_path(choice.run))
        except FerError as e:
            st.error(f"{e}. Below: what the run folder still holds.", icon=":material/error:")
            show_folder(run_path(choice.run), data_task(choice.data))
            return
        st.caption(f"**{ckpt.arch}** ({options_text(ckpt.arch_options)}) from run "
                   f"`{choice.run}`, for {ckpt.task.describe()}")
        if problem := layers_problem(ckpt.model):
            st.info(f"No layer table or confusion matrix here: {choice.run} is {problem}.",
                    icon=":material/info:")
        else:
            show_table(ckpt.arch, ckpt.arch_options, ckpt.task, ckpt.meta)
        show_curves(run_path(choice.run))
        if problem is None:
            show_confusions(choice.run, ckpt, choice.data)
        show_metadata(ckpt)
    else:
        options = dict(DEFAULT_OPTIONS[source])
        if "small_input" in options:
            options["small_input"] = not st.toggle(
                "ImageNet stem", help="7x7 stride-2 conv and max-pool, as on 224-pixel ImageNet "
                "images; off: a 3x3 stride-1 stem that keeps small faces' maps large (a "
                "48-pixel face's at 6x6 in layer4)")
        task = data_task(choice.data)
        st.caption(f"An untrained **{source}** ({options_text(options)}) for the dataset's "
                   f"{task.describe()}.")
        show_table(source, options, task, None)


page()
