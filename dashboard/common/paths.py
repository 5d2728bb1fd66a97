"""Where the dashboard finds its code, the shipped runs and the run folders users train into.

In a checkout, the runs are the repository's `checkpoints/` (the shipped `builtin-cnn3` and
`fer2013-cnn3` among them) or FER_CHECKPOINTS_DIR, and new runs go there. In an installed copy
(`pip install .`), the shipped runs travel inside the package, read-only, and new runs go to
FER_CHECKPOINTS_DIR or `checkpoints/` in the working directory, a folder the user owns; pages
list the runs of both, and a run of the user's folder hides a shipped one of the same name.
"""

import os
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[2]  # holds `dashboard` and `fer_core`
IN_CHECKOUT = (CODE_ROOT / "pyproject.toml").is_file()
PACKAGED_RUNS = CODE_ROOT / "dashboard" / "checkpoints"  # where `pip install .` puts them


def checkpoints_root() -> Path:
    """Where new runs go: FER_CHECKPOINTS_DIR (relative to the dashboard's working directory),
    else the checkout's checkpoints/, else checkpoints/ in the working directory; always
    absolute, since trainers run from CODE_ROOT."""
    if configured := os.environ.get("FER_CHECKPOINTS_DIR"):
        return Path(configured).expanduser().absolute()
    return CODE_ROOT / "checkpoints" if IN_CHECKOUT else Path("checkpoints").absolute()


def run_roots() -> list[Path]:
    """The folders that hold runs: the user's, then (in an installed copy) the shipped ones."""
    return [checkpoints_root()] + ([] if IN_CHECKOUT else [PACKAGED_RUNS])


def run_path(name: str) -> Path:
    """The folder of the run called `name`: the user's if there is one, else the shipped one."""
    for root in run_roots():
        if (root / name).is_dir():
            return root / name
    return checkpoints_root() / name
