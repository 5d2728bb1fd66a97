"""fer_core: data, models, training, evaluation and checkpoints for facial-expression models
(FER2013 by default; any task of classes, size and channels: `Task`).

The library never imports streamlit; the dashboard is built on top of it. `load_export(folder)`
reads what `python -m fer_core export` wrote (without importing torch).
"""

from .data.task import FER2013, Task
from .data.dataset import SPLITS, FaceDataset
from .errors import CheckpointError, DataError, ExportError, FerError, RunError
from .explain.export_files import Export, load_export
from .training import runs  # noqa: F401  (records PROCESS_STARTED as early as possible)

__all__ = [
    "FER2013", "SPLITS", "Task",
    "CheckpointError", "DataError", "Export", "ExportError", "FaceDataset", "FerError", "RunError",
    "load_export",
]
