"""Training: start a run in its own process, follow its curves live, stop or resume it, and
compare runs. Everything shown is read from the run folders, so runs started from the CLI or
another tab are followed the same way. `?follow=NAME` opens a run's panel."""

from pathlib import Path

import streamlit as st

from dashboard.common import state, url
from dashboard.common.curves import overlay_figure, training_figure
from dashboard.common.history import RunHistory, format_duration
from dashboard.common.paths import checkpoints_root
from dashboard.common.runs import RunInfo, all_runs, log_tail, run_info
from dashboard.common.tables import RUN_COLUMNS, runs_frame
from dashboard.views.training import probe_strip
from dashboard.views.training.form import new_run_form
from dashboard.views.training.launcher import can_resume, resume_run, stop_run, training_allowed
from fer_core.errors import FerError
from fer_core.training.runs import RunFolder

POLL_SECONDS = 2.0
READ_ONLY = ("Training is switched off on this server (FER_ALLOW_TRAINING=0): runs can be "
             "followed and compared here, not started, stopped or resumed.")


def history(run_path: Path) -> RunHistory:
    """This session's reader of the run's history.jsonl, brought up to date."""
    readers = st.session_state.setdefault("history_readers", {})
    reader = readers.setdefault(str(run_path), RunHistory(Path(run_path) / "history.jsonl"))
    reader.refresh()
    return reader


# ---- following a run --------------------------------------------------------------------------

def follow_picker(runs: list[RunInfo], sidebar_run: str | None) -> RunInfo:
    """The run whose panel is shown: ?follow= on a session's first visit, else the sidebar's
    checkpoint whenever it changes, else this session's choice (a pick here, a run just
    started), else a live run, else the newest."""
    by_name = {r.name: r for r in runs}
    wanted = st.query_params.get("follow")
    if "follow" not in st.session_state and wanted is not None:
        if wanted in by_name:
            st.session_state["follow"] = wanted
        else:
            url.ignored("follow", expected="the name of a run on this server")
    elif st.session_state.get("follow_sidebar") != sidebar_run and sidebar_run in by_name:
        st.session_state["follow"] = sidebar_run
    st.session_state["follow_sidebar"] = sidebar_run
    if st.session_state.get("follow") not in by_name:
        st.session_state["follow"] = next((r.name for r in runs if r.live), runs[0].name)
    name = st.selectbox("Run", list(by_name), key="follow", persist_state="session",
                        label_visibility="collapsed")
    if st.query_params.get("follow") != name:
        st.query_params["follow"] = name
    return by_name[name]


def run_panel(path: Path) -> RunInfo:
    """Status, metrics, curves and the stop/resume control of one run.

    Each part sits in a container of its own, so the parts keep their places in the element
    tree whatever shows inside them; otherwise an element that appears or goes (the progress
    bar, a notice) shifts the rest, and the browser briefly shows the old chart and buttons
    next to the new ones.
    """
    folder = RunFolder(path)
    info = run_info(folder)
    reader = history(path)
    metrics(st.container(), info, reader)
    with st.container():
        if info.state == "starting":
            st.info("Starting the trainer (loading the data)...", icon=":material/hourglass_top:")
        if info.error:
            st.error(f"Run failed: {info.error}", icon=":material/error:")
            with st.expander("End of train.log"):
                st.code("\n".join(log_tail(folder)) or "(no log)", language=None)
    with st.container():
        curves, strip = probe_strip.beside(path)
        if reader.steps or reader.epochs:
            curves.plotly_chart(training_figure(reader), key=f"curves-{info.name}",
                                config={"displaylogo": False})
        probe_strip.show(strip, info)
    with st.container():
        controls(info)
    return info


def metrics(box, info: RunInfo, reader: RunHistory) -> None:
    cols = box.columns(5)
    cols[0].metric("Status", info.state)
    cols[1].metric("Epoch", f"{info.epoch} / {info.epochs or '?'}")
    best = info.best_val_acc
    cols[2].metric("Best val accuracy", "\u2014" if best is None else f"{best:.1%}")
    speed = reader.images_per_s()
    cols[3].metric("Images / s", "\u2014" if speed is None else f"{speed:,.0f}")
    eta = reader.eta_seconds(info.epochs) if info.live else None
    cols[4].metric("ETA", format_duration(eta) if info.live else "\u2014")
    if info.live and info.epochs:
        done = min(reader.progress / info.epochs, 1.0)
        box.progress(done, text=f"{reader.progress:.2f} of {info.epochs} epochs")


def controls(info: RunInfo) -> None:
    if not training_allowed():
        return
    if info.state in ("running", "stopping"):
        st.button("Stop", key="stop_run", icon=":material/stop:", type="primary", on_click=_act,
                  args=(stop_run, info.path), disabled=info.state == "stopping",
                  help="Finish the current step, save last.pt and stop; resume it later")
    elif can_resume(info):
        st.button("Resume", key="resume_run", icon=":material/play_arrow:", on_click=_act,
                  args=(resume_run, info.path), help="Continue from last.pt")
    if message := st.session_state.pop("action_error", None):
        st.error(message, icon=":material/error:")


def _act(action, path: Path) -> None:
    """Button callback: run `action` on the folder; a refusal is shown after the rerun."""
    try:
        action(RunFolder(path))
    except FerError as e:
        st.session_state["action_error"] = str(e)


@st.fragment(run_every=POLL_SECONDS)
def live_panel(path: Path, seen: tuple[str, int]) -> None:
    """Redrawn every POLL_SECONDS while the run is live. When its state or epoch differs from
    `seen` (what the page showed at its last full run), the whole page reruns: the runs table
    and the sidebar catch up, and polling ends with the run."""
    info = run_panel(path)
    if (info.state, info.epoch) != seen:
        st.rerun()


# ---- comparing runs ---------------------------------------------------------------------------

def runs_section(runs: list[RunInfo]) -> None:
    st.subheader("All runs")
    event = st.dataframe(runs_frame(runs), key="runs_table", on_select="rerun",
                         selection_mode="multi-row", hide_index=True, width="stretch",
                         column_config=RUN_COLUMNS)
    chosen = [runs[i] for i in event.selection.rows if i < len(runs)]
    if chosen:
        figure = overlay_figure({r.name: history(r.path) for r in chosen})
        st.plotly_chart(figure, key="overlay", config={"displaylogo": False})
        st.caption("Per epoch: validation solid, training dotted.")
    else:
        st.caption("Select runs in the table to overlay their curves.")


# ---- page -------------------------------------------------------------------------------------

def page() -> None:
    st.title("Training")
    runs = all_runs()
    if training_allowed():
        with st.expander("Start a new run", icon=":material/add_circle:", expanded=not runs):
            new_run_form(state.selection().data, runs)
    else:
        st.caption(READ_ONLY)
    if not runs:
        st.caption(f"No runs in `{checkpoints_root()}` yet.")
        return
    st.subheader("Run")
    followed = follow_picker(runs, state.selection().run)
    if followed.live:
        live_panel(followed.path, (followed.state, followed.epoch))
    else:
        run_panel(followed.path)
    runs_section(runs)


page()
