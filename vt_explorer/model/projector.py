"""Projector: tokens back onto the pixels (VT_PAPER.md section 4)."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import attend


class Projector(nn.Module):
    """Eq. 5, every pixel reads a mixture of tokens:

        X_out = X_in + softmax_L((X_in W_Q)(T W_K)^T) T W_V

    W_Q in R^{C x D}, W_K in R^{C_T x D} (D = ``attn_dim``, default C); W_V in R^{C_T x C}
    (identity when C_T = C, the ICCV form). The softmax runs over the L tokens for each pixel.

    Computed as ``X_in (T W_K W_Q^T)^T``, which equals ``(X_in W_Q)(T W_K)^T`` by
    associativity but multiplies the L tokens by W_Q^T instead of the HW pixels by W_Q: at
    HW >> L it removes the largest matrix product of the module (HW x C x D multiply-adds).
    With ``scaled=True`` (default) the dot products are divided by sqrt(D) as in every
    dot-product attention; eq. 5 omits it, ``scaled=False`` gives the literal form.

    Shapes: x (B, C, H, W), tokens (B, L, C_T) -> x_out (B, C, H, W),
    attention (B, L, H, W) (sums to 1 over L at each pixel) or None.
    """

    def __init__(
        self,
        channels: int,
        token_dim: int,
        attn_dim: int | None = None,
        scaled: bool = True,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        # LayerScale on the projected tokens (not in the paper; VTConfig.layer_scale)
        self.gamma = (
            nn.Parameter(torch.full((channels,), float(layer_scale)))
            if layer_scale is not None
            else None
        )
        attn_dim = attn_dim or channels
        self.scale = 1.0 / math.sqrt(attn_dim) if scaled else 1.0
        self.fused = True  # F.scaled_dot_product_attention unless weights are asked for
        self.to_q = nn.Linear(channels, attn_dim, bias=False)  # W_Q
        self.to_k = nn.Linear(token_dim, attn_dim, bias=False)  # W_K
        self.to_v = (
            nn.Linear(token_dim, channels, bias=False) if token_dim != channels else nn.Identity()
        )  # W_V

    def forward(
        self, x: Tensor, tokens: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        h = x.shape[-2]
        x_flat = rearrange(x, "b c h w -> b (h w) c")
        # (X W_Q)(T W_K)^T = X (T W_K W_Q^T)^T: keys brought into pixel space, L rows only
        k = (self.to_k(tokens) @ self.to_q.weight).to(x_flat.dtype)  # b l c
        v = self.to_v(tokens).to(x_flat.dtype)  # b l c
        out, attn = attend(x_flat, k, v, self.scale, need_weights, self.fused)  # attn: b n l
        if self.gamma is not None:
            out = out * self.gamma.to(out.dtype)
        if attn is not None:
            attn = rearrange(attn, "b (h w) l -> b l h w", h=h)
        x_out = rearrange(x_flat + out, "b (h w) c -> b c h w", h=h)
        return x_out, attn
