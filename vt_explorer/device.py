"""Pick the compute device: CUDA when present, else Apple MPS, else the CPU."""

from __future__ import annotations

import torch


def select_device(preference: str = "auto") -> torch.device:
    """Return the device to run on.

    ``preference``: ``"auto"`` (CUDA, else MPS, else CPU), or an explicit torch device string
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). An explicit accelerator that is not
    available raises ValueError naming it, rather than silently falling back.
    """
    pref = preference.strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref)
    except RuntimeError as err:
        raise ValueError(f"unknown device {preference!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available here")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {preference!r} requested but MPS is not available here")
    return device
