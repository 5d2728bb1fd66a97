"""Tables shared by pages: runs, and key-value settings."""

from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard.common.runs import RunInfo

RUN_COLUMNS = {
    "best val acc": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
    "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
}


def runs_frame(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run: name, status (saying when its checkpoint is cut short), architecture,
    dataset, epochs, best val acc, started."""
    return pd.DataFrame({
        "name": [r.name for r in runs],
        "status": [f"{r.state}, checkpoint cut short" if r.checkpoint_cut else r.state
                   for r in runs],
        "architecture": [r.arch for r in runs],
        "dataset": [r.data for r in runs],
        "epochs": [f"{r.epoch}/{r.epochs or '?'}" for r in runs],
        "best val acc": [float("nan") if r.best_val_acc is None else r.best_val_acc for r in runs],
        "started": [datetime.fromtimestamp(r.started) if r.started else None for r in runs],
    })


def content_height(rows: int, most: int = 30) -> int:
    """Pixel height that shows `rows` table rows (at most `most`) without inner scrolling."""
    return 38 + 35 * min(rows, most)


def settings_frame(settings: dict) -> pd.DataFrame:
    """A dict as a two-column table; values as text so mixed types render alike."""
    return pd.DataFrame({"setting": list(settings), "value": [_text(v) for v in settings.values()]})


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "\u2014"
    return "\u2014" if value is None else str(value)
