"""fer_core: data, models, training, evaluation and checkpoints for FER2013 expression CNNs.

The library never imports streamlit; the dashboard is built on top of it. `load_export(folder)`
reads what `python -m fer_core export` wrote (without importing torch).
"""

from .data.classes import CLASSES, IMAGE_SIZE, NUM_CLASSES
from .data.dataset import SPLITS, FaceDataset
from .errors import CheckpointError, DataError, ExportError, FerError, RunError
from .explain.export_files import Export, load_export
from .training import runs  # noqa: F401  (records PROCESS_STARTED as early as possible)

__all__ = [
    "CLASSES", "IMAGE_SIZE", "NUM_CLASSES", "SPLITS",
    "CheckpointError", "DataError", "Export", "ExportError", "FaceDataset", "FerError", "RunError",
    "load_export",
]
