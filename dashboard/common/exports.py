"""Exports the pages read instead of computing: a complete `python -m fer_core export` of the
chosen checkpoint (by content) on the chosen data (by fingerprint) and split, found under the
checkpoint's run folder (`<run>/exports/`), loaded once per process and kept in memory.

An export is checked shard by shard when it is loaded (`load_export`); it is loaded again when
any of its files changes, so a shard cut short or edited after the dashboard read it gets its
message on the next rerun, and the page computes its maps as if there were no export.
"""

import os
from dataclasses import dataclass

from dashboard.common import state
from dashboard.common.memo import MB, Memo
from fer_core.errors import ExportError
from fer_core.explain.export import split_exports
from fer_core.explain.export_files import Export, load_export

LOADED: Memo[Export] = Memo("exports", budget=256 * MB)  # FER2013 PublicTest: 16.5 MB a method


@dataclass(frozen=True)
class Found:
    """The export of a split, or why a matching one cannot be used (`problem`), or neither."""

    export: Export | None = None
    problem: str | None = None


def split_export(ckpt, dataset, split: str) -> Found:
    """The complete export of `ckpt` on `dataset`'s `split` with the most methods, if any (the
    default folder first among equals)."""
    found = split_exports(ckpt, dataset, split)
    if not found:
        return Found()
    folder, _ = max(found, key=lambda pair: len(pair[1]["methods"]))
    stamps = tuple((p.name, state.file_stamp(p)) for p in sorted(folder.iterdir()))
    try:
        return Found(export=LOADED.get((str(folder), stamps), lambda _: load_export(folder)))
    except ExportError as e:
        return Found(problem=str(e))


def describe(export: Export) -> str:
    """Where an export came from, for a caption."""
    return f"the export in `{os.path.relpath(export.folder)}`"
