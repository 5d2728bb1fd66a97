"""The shipped FER2013 model: its model card's validation accuracy is what `python -m fer_core
evaluate` measures on PublicTest. Runs when FER2013_CSV points at the Kaggle CSV."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "checkpoints" / "fer2013-cnn3"
CSV = os.environ.get("FER2013_CSV")

pytestmark = pytest.mark.skipif(not CSV, reason="FER2013_CSV is not set")


def card_accuracy() -> float:
    text = (RUN / "MODEL_CARD.md").read_text()
    match = re.search(r"Validation accuracy \(PublicTest, 3,589 faces\): \*\*(0\.\d{4})\*\*", text)
    assert match, "the model card states no validation accuracy"
    return float(match.group(1))


def test_the_cli_measures_the_accuracy_the_model_card_states(tmp_path):
    out = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, "-m", "fer_core", "evaluate", "--checkpoint", str(RUN), "--data", CSV,
         "--split", "val", "--json", str(out)],
        capture_output=True, text=True, check=False, env={**os.environ, "FER_DEVICE": "cpu"})
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 3589
    assert round(metrics["accuracy"], 4) == card_accuracy()
