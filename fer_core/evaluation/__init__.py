"""What a model says about a split: the one prediction path (`predict`), confusion matrices and
per-class metrics, and the evaluation report. Training validation, the CLI and every page use
it, so a checkpoint's accuracy is the same number everywhere."""
