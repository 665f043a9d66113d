"""Projector: tokens back onto the pixels (VT_PAPER.md section 4)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Projector(nn.Module):
    """Eq. 5, every pixel reads a mixture of tokens:

        X_out = X_in + softmax_L((X_in W_Q)(T W_K)^T) T W_V

    W_Q in R^{C x D}, W_K in R^{C_T x D} (D = ``attn_dim``, default C); W_V in R^{C_T x C}
    (identity when C_T = C, the ICCV form). The softmax runs over the L tokens for each pixel.
    With ``scaled=True`` (default) the dot products are divided by sqrt(D) as in every
    dot-product attention; eq. 5 omits it, ``scaled=False`` gives the literal form.

    Shapes: x (B, C, H, W), tokens (B, L, C_T) -> x_out (B, C, H, W),
    attention (B, L, H, W) (sums to 1 over L at each pixel) or None.
    """

    def __init__(
        self, channels: int, token_dim: int, attn_dim: int | None = None, scaled: bool = True
    ) -> None:
        super().__init__()
        attn_dim = attn_dim or channels
        self.scale = 1.0 / math.sqrt(attn_dim) if scaled else 1.0
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
        q = self.to_q(x_flat)  # b n d
        k = self.to_k(tokens)  # b l d
        v = self.to_v(tokens).to(q.dtype)  # b l c
        if need_weights:
            attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)  # b n l
            out = attn @ v
            attn = rearrange(attn, "b (h w) l -> b l h w", h=h)
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        x_out = rearrange(x_flat + out, "b (h w) c -> b c h w", h=h)
        return x_out, attn
