"""Pick the compute device: CUDA when present, else Apple MPS, else the CPU."""

from __future__ import annotations

import torch

from .flags import UserError


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
        raise UserError(f"unknown device {preference!r}: {err}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {preference!r}: not one to run a model on (cpu, cuda, mps)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {preference!r} requested but CUDA is not available here")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UserError(f"device {preference!r} requested but MPS is not available here")
    return device


CPU_BATCH_PIXELS = 1 << 18
"""Input pixels per inference batch on a CPU (see :func:`inference_batch`)."""


def inference_batch(batch_size: int, input_size: int, device: torch.device | str) -> int:
    """The batch to run inference in: ``batch_size``, capped on a CPU at
    ``CPU_BATCH_PIXELS`` input pixels (at least 1 image).

    A CPU runs a large batch of large images up to 3x slower per image than a small one: the
    early layers' activations no longer fit the caches (measured on the 2-core VM, VT-Lite0
    at 224x224: 19 img/s at batch 256, 55 img/s at batch 8; at 128x128: 69 vs 175 img/s at
    16; ``python -m benchmarks.speed.bench_lite0 --batches 256 16 8``). Accelerators want big
    batches and get ``batch_size`` unchanged. Each image is computed independently, so the
    outputs agree at any batch size up to float rounding (kernels may block a matrix
    product differently); the shipped cards were re-verified with it.
    """
    if torch.device(device).type != "cpu":
        return batch_size
    return max(1, min(batch_size, CPU_BATCH_PIXELS // (input_size * input_size)))


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe is not None and torch.backends.mkldnn.is_available() and probe())
    return False
