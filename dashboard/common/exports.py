"""Exports the pages read instead of computing: a complete `python -m fer_core export` of the
chosen checkpoint (by content) on the chosen data (by fingerprint) and split, found under the
checkpoint's run folder (`<run>/exports/`, by `fer_core.explain.export`'s rule), one method's
maps loaded once per process and kept in memory.

An export is checked shard by shard when it is loaded (`load_export`); it is loaded again when
any of its files changes, so a shard cut short or edited after the dashboard read it gets its
message on the next rerun, and the page computes its maps as if there were no export. What is
wrong with a damaged export is kept too, so reruns do not read it again to say so.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.common.keys import memo_key
from dashboard.common.memo import MB, Memo
from fer_core.errors import ExportError
from fer_core.explain.export import split_exports
from fer_core.explain.export_files import Export, load_export

# FER2013's training split: 132 MB of maps a method, 59 MB of features
LOADED: Memo["Found"] = Memo("exports", budget=256 * MB)


@dataclass(frozen=True)
class Found:
    """A loaded export, or what is wrong with it."""

    export: Export | None = None
    problem: str | None = None


def richest(ckpt, dataset, split: str) -> tuple[Path, list[str]] | None:
    """The complete export of `ckpt` on `dataset`'s `split` with the most methods (the default
    folder first among equals) and its methods, if there is one; nothing is loaded."""
    found = split_exports(ckpt, dataset, split)
    if not found:
        return None
    folder, manifest = max(found, key=lambda pair: len(pair[1]["methods"]))
    return folder, list(manifest["methods"])


def load(folder: Path, dataset, split: str, method: str) -> Export | None:
    """The export in `folder` with the maps of `method` alone, for `dataset`'s `split`; None,
    with a warning, when it is damaged or does not hold the split's faces in order."""
    try:
        files = tuple(sorted(folder.iterdir()))
    except OSError:  # removed since it was found
        return None
    found = LOADED.get(memo_key(folder, files, method), lambda _: _read(folder, method))
    if found.problem:
        st.warning(f"The export of this split is not used: {found.problem}",
                   icon=":material/warning:")
        return None
    if not np.array_equal(found.export.rows, dataset.indices(split)):
        st.warning(f"{describe(folder)} does not hold this split's faces in order: it is not "
                   f"used", icon=":material/warning:")
        return None
    return found.export


def _read(folder: Path, method: str) -> Found:
    try:
        return Found(export=load_export(folder, [method]))
    except ExportError as e:
        return Found(problem=str(e))


def describe(folder: Path) -> str:
    """Where an export came from, for a caption."""
    return f"the export in `{os.path.relpath(folder)}`"
