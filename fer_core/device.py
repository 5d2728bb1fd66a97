"""One place that chooses the torch device: cuda, then mps, then cpu; FER_DEVICE overrides."""

import os

import torch

from .choices import PRECISIONS
from .errors import FerError


def choose_device(preference: str | None = None) -> torch.device:
    """Return the device for `preference` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps').

    None means the FER_DEVICE environment variable, and 'auto' when that is unset.
    """
    preference = (preference or os.environ.get("FER_DEVICE") or "auto").strip().lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise FerError(f"unknown device {preference!r}: use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FerError(f"device {preference!r} requested but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FerError(f"device {preference!r} requested but MPS is not available here")
    return device


def available_devices() -> list[str]:
    """The device types present here, cpu first: what a person may choose instead of auto."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def gpu_count() -> int:
    """The CUDA GPUs this machine has (0 without CUDA): how many ranks torchrun can give one."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def describe_device(device: torch.device) -> str:
    """A one-line description: GPU name and memory, or the CPU thread count."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: CUDA compute capability 8.0 and up (A100,
    H100...), or a CPU with AVX512-BF16/AMX (oneDNN's own check)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """The training precision for `requested` ('auto', 'fp32', 'bf16', 'fp16') on `device`.

    auto: bf16 where it is native; fp16 (with a gradient scaler) on older CUDA GPUs such as the
    T4 and V100; fp32 elsewhere. An explicit choice is honoured as is.
    """
    if requested not in PRECISIONS:
        raise FerError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"
