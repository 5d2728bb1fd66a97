"""Names that a choice is restricted to in every command, page and check, listed once and
without torch: the splits of a dataset and the precisions of training and of feature
visualization. (The explanation settings are `explain.settings`'s.)"""

SPLITS = ("train", "val", "test")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # training: auto picks bf16 where native, else
# fp16 on CUDA, else fp32 (device.resolve_precision)
FILTER_PRECISIONS = ("auto", "fp32", "bf16")  # activation maximization: no fp16 (no scaler)
