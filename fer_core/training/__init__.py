"""Training: the configuration (`TrainConfig`, the one source of the CLI flags, the launcher's
arguments and the Training page's form), the trainer, augmentation on the device, and the run
folder it writes (`config.json`, `history.jsonl`, `status.json`, `best.pt`, `last.pt`)."""
