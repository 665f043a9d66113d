"""Dot-product attention with a fused path for training and an explicit path for the trace."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def attend(
    q: Tensor, k: Tensor, v: Tensor, scale: float, need_weights: bool, fused: bool = True
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T * scale) v over the last two axes; (..., N, D) x (..., M, D) -> (..., N, Dv).

    ``need_weights=True`` computes the softmax explicitly and returns it (..., N, M).
    Otherwise ``fused`` picks F.scaled_dot_product_attention (True, the training default)
    or the explicit form (False). Both give the same numbers (tests/test_modules.py); on this
    2-core CPU neither was measurably faster for L = 16 tokens, on GPUs the fused one is.
    """
    if need_weights or not fused:
        attn = (q @ k.transpose(-1, -2) * scale).softmax(dim=-1)
        return attn @ v, (attn if need_weights else None)
    return F.scaled_dot_product_attention(q, k, v, scale=scale), None


def set_fused_attention(model: nn.Module, fused: bool) -> nn.Module:
    """Use the fused (True) or explicit (False) attention path in every attention module of
    ``model`` when no weights are requested. Returns ``model``."""
    for m in model.modules():
        if hasattr(m, "fused"):
            m.fused = fused
    return model
