"""fer_core: data, models, training, evaluation and checkpoints for FER2013 expression CNNs.

The library never imports streamlit; the dashboard is built on top of it.
"""

from .data.classes import CLASSES, IMAGE_SIZE, NUM_CLASSES
from .data.dataset import SPLITS, FaceDataset
from .errors import CheckpointError, DataError, FerError, RunError
from .training import runs  # noqa: F401  (records PROCESS_STARTED as early as possible)

__all__ = [
    "CLASSES", "IMAGE_SIZE", "NUM_CLASSES", "SPLITS", "FaceDataset",
    "CheckpointError", "DataError", "FerError", "RunError",
]
