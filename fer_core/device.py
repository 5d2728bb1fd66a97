"""One place that chooses the torch device: cuda, then mps, then cpu; FER_DEVICE overrides."""

import os

import torch

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


def describe_device(device: torch.device) -> str:
    """A one-line description: GPU name and memory, or the CPU thread count."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
