"""Tokenizers: pool a feature map into L visual tokens by spatial attention.

Paper notation (VT_PAPER.md section 1): X in R^{HW x C} is the flattened feature map,
T in R^{L x C_T} the tokens. Both tokenizers take ``x`` as (B, C, H, W) and return
``tokens`` (B, L, C_T) and ``attention`` (B, L, H, W), each map summing to 1 over pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class TokenPositionEncoding(nn.Module):
    """Token position encoding of the early paper version (VT_PAPER.md section 2).

        P   = downsample(A_l) W_{A->P}         A_l resized to g x g, W_{A->P} in R^{g^2 x C_P}
        T'  = [T, P] W_out                     W_out in R^{(C_T + C_P) x C_T}

    Each token's own attention map is resized to a fixed g x g grid, so the encoding does
    not depend on the input resolution. Maps are rescaled by H*W (mean 1) before resizing,
    so their magnitude does not depend on resolution either.

    Shapes: tokens (B, L, C_T), attention (B, L, H, W) -> (B, L, C_T).
    """

    def __init__(self, token_dim: int, grid: int = 14, pos_dim: int = 32) -> None:
        super().__init__()
        self.grid = grid
        self.to_pos = nn.Linear(grid * grid, pos_dim, bias=False)  # W_{A->P}
        self.fuse = nn.Linear(token_dim + pos_dim, token_dim, bias=False)

    def forward(self, tokens: Tensor, attention: Tensor) -> Tensor:
        h, w = attention.shape[-2:]
        maps = attention * (h * w)  # mean 1 whatever the resolution
        maps = F.interpolate(
            maps, size=(self.grid, self.grid), mode="bilinear", align_corners=False
        )
        pos = self.to_pos(rearrange(maps, "b l g k -> b l (g k)"))  # b l c_p
        return self.fuse(torch.cat([tokens, pos], dim=-1))  # b l c_t


def _pool(x_flat: Tensor, scores_t: Tensor) -> tuple[Tensor, Tensor]:
    """Shared core of eq. 1 and 2: A = softmax_HW(scores); T = A^T X.

    x_flat (B, HW, C), scores_t (B, L, HW) = (X W)^T -> tokens (B, L, C), A^T (B, L, HW).
    Scores are kept transposed so that the softmax over HW runs on the contiguous last axis
    and the pooling is one batched matmul (measured 2x faster than softmax over dim 1).
    """
    attn_t = scores_t.softmax(dim=-1)  # softmax over the spatial axis HW
    tokens = attn_t.to(x_flat.dtype) @ x_flat  # b l c
    return tokens, attn_t


class FilterTokenizer(nn.Module):
    """Filter-based tokenizer, eq. 1:

        A = softmax_HW(X W_A)      W_A in R^{C x L} (a 1x1 convolution)
        T = A^T X W_V              W_V in R^{C x C_T}; identity when C_T = C (ICCV form)

    W_V is applied after pooling ((A^T X) W_V = A^T (X W_V)), which costs L instead of HW
    matrix rows. The weights are shared by every sample: any batch size works.

    Shapes: x (B, C, H, W) -> tokens (B, L, C_T), attention (B, L, H, W).
    """

    kind = "filter"

    def __init__(
        self,
        channels: int,
        num_tokens: int,
        token_dim: int | None = None,
        pos_encoding: TokenPositionEncoding | None = None,
    ) -> None:
        super().__init__()
        token_dim = token_dim or channels
        self.to_scores = nn.Linear(channels, num_tokens, bias=False)  # W_A
        self.to_value = (
            nn.Linear(channels, token_dim, bias=False) if token_dim != channels else nn.Identity()
        )  # W_V
        self.pos_encoding = pos_encoding

    def forward(self, x: Tensor, tokens_in: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.shape[-2]
        x_flat = rearrange(x, "b c h w -> b (h w) c")
        scores_t = self.to_scores.weight @ x_flat.transpose(1, 2)  # (X W_A)^T: b l n
        tokens, attn = _pool(x_flat, scores_t)
        tokens = self.to_value(tokens)  # b l c_t
        attn = rearrange(attn, "b l (h w) -> b l h w", h=h)
        if self.pos_encoding is not None:
            tokens = self.pos_encoding(tokens, attn)
        return tokens, attn


class RecurrentTokenizer(nn.Module):
    """Recurrent tokenizer, eq. 2: the previous module's tokens choose the grouping.

        W_R = T_in W_{T->R}                  W_{T->R} in R^{C_T x C}
        T   = softmax_HW(X W_R^T)^T X W_V     W_V as in eq. 1

    With ``scaled`` the scores are divided by sqrt(C) (not in the paper; ``VTConfig.
    recurrent_scaled``). With ``norm_in`` a LayerNorm is applied to T_in first (not in the paper): the previous
    module's tokens come from a residual stream whose scale grows during training, and
    large filters saturate the softmax into one-pixel maps shared by every token (token
    collapse, seen in the shipped cifar10-vt-recurrent: ``vt-explorer explain`` reports it).

    Shapes: x (B, C, H, W), tokens_in (B, L, C_T_in) -> tokens (B, L, C_T),
    attention (B, L, H, W).
    """

    kind = "recurrent"

    def __init__(
        self,
        channels: int,
        in_token_dim: int,
        token_dim: int | None = None,
        pos_encoding: TokenPositionEncoding | None = None,
        norm_in: bool = False,
        scaled: bool = False,
    ) -> None:
        super().__init__()
        token_dim = token_dim or channels
        # with ``scaled`` the scores are divided by sqrt(C), as in a scaled dot product (not
        # in eq. 2): LayerNorm'd T_in through W_{T->R} gives filters of norm ~ sqrt(C), so
        # at C = 1280 the unscaled softmax starts as one-pixel maps
        self.score_scale = channels**-0.5 if scaled else 1.0
        self.norm_in = nn.LayerNorm(in_token_dim) if norm_in else None
        self.to_filters = nn.Linear(in_token_dim, channels, bias=False)  # W_{T->R}
        self.to_value = (
            nn.Linear(channels, token_dim, bias=False) if token_dim != channels else nn.Identity()
        )
        self.pos_encoding = pos_encoding

    def forward(self, x: Tensor, tokens_in: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if tokens_in is None:
            raise ValueError("RecurrentTokenizer needs the previous module's tokens")
        h = x.shape[-2]
        x_flat = rearrange(x, "b c h w -> b (h w) c")
        if self.norm_in is not None:
            tokens_in = self.norm_in(tokens_in)
        filters = self.to_filters(tokens_in) * self.score_scale  # W_R: b l c
        scores_t = filters.to(x_flat.dtype) @ x_flat.transpose(1, 2)  # (X W_R^T)^T: b l n
        tokens, attn = _pool(x_flat, scores_t)
        tokens = self.to_value(tokens)
        attn = rearrange(attn, "b l (h w) -> b l h w", h=h)
        if self.pos_encoding is not None:
            tokens = self.pos_encoding(tokens, attn)
        return tokens, attn


#: every tokenizer kind by name, with its builder ``(channels C, VTConfig, token width C_T,
#: position encoding or None) -> module``. Registering a kind here is all a new tokenizer
#: needs: :class:`~vt_explorer.model.vt.VTModule` builds it by name, ``VTConfig.variant``
#: and model cards accept the name (``cardcheck``), traces and views show it.
TOKENIZERS: dict[str, Callable[[int, Any, int, TokenPositionEncoding | None], nn.Module]] = {
    "filter": lambda c, cfg, dim, pos: FilterTokenizer(c, cfg.tokens, dim, pos),
    "recurrent": lambda c, cfg, dim, pos: RecurrentTokenizer(
        c, dim, dim, pos, norm_in=cfg.recurrent_norm, scaled=cfg.recurrent_scaled
    ),
}


def build_tokenizer(
    kind: str, channels: int, cfg: Any, token_dim: int, pos: TokenPositionEncoding | None
) -> nn.Module:
    """The tokenizer registered as ``kind`` (:data:`TOKENIZERS`); ValueError naming the known
    kinds for any other."""
    make = TOKENIZERS.get(kind)
    if make is None:
        raise ValueError(f"unknown tokenizer kind {kind!r} (known: {', '.join(TOKENIZERS)})")
    return make(channels, cfg, token_dim, pos)
