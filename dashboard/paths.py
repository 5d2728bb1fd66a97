"""Where the dashboard finds the repository and the run folders."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def checkpoints_root() -> Path:
    """FER_CHECKPOINTS_DIR, or checkpoints/ at the repo root."""
    return Path(os.environ.get("FER_CHECKPOINTS_DIR") or REPO_ROOT / "checkpoints")
