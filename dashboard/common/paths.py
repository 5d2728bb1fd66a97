"""Where the dashboard finds the repository and the run folders."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def checkpoints_root() -> Path:
    """FER_CHECKPOINTS_DIR (relative to the dashboard's working directory), or checkpoints/ at
    the repo root; always absolute, since trainers run from the repo root."""
    configured = os.environ.get("FER_CHECKPOINTS_DIR")
    return Path(configured).expanduser().absolute() if configured else REPO_ROOT / "checkpoints"
