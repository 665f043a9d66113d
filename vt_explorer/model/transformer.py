"""Token transformer: tokens relate to one another (VT_PAPER.md section 3).

Two forms share one implementation:

* ``mhsa`` (default): pre-norm multi-head self-attention + MLP, the well-conditioned form
  of the early paper version (heads, q/k reduced to C_T * qk_ratio);
* ``paper``: the ICCV equations literally, one head, no norm, no scaling, value = T_in:

      T'_out = T_in + softmax_L((T_in K)(T_in Q)^T) T_in          (eq. 3)
      T_out  = T'_out + relu(T'_out F1) F2                        (eq. 4)

The training path uses fused attention (F.scaled_dot_product_attention); with
``need_weights=True`` the same numbers are computed explicitly and the (B, heads, L, L)
attention is returned. A test proves both paths agree.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import attend


class TokenAttention(nn.Module):
    """Multi-head self-attention over tokens, eq. 3's attention term.

    attn_h = softmax_L(q_h k_h^T * s),  q = T W_q, k = T W_k, v = T (or T W_v)
    out    = concat_h(attn_h v_h) (W_o when value_proj)

    Shapes: tokens (B, L, D) -> (B, L, D), attention (B, heads, L, L) or None.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        qk_dim: int | None = None,
        value_proj: bool = False,
        scaled: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        qk_dim = qk_dim or dim
        if qk_dim % heads or dim % heads:
            raise ValueError(f"heads={heads} must divide q/k width {qk_dim} and token width {dim}")
        self.heads = heads
        self.fused = True  # F.scaled_dot_product_attention unless weights are asked for
        self.scale = 1.0 / math.sqrt(qk_dim // heads) if scaled else 1.0
        self.to_q = nn.Linear(dim, qk_dim, bias=bias)  # the paper's K in eq. 3
        self.to_k = nn.Linear(dim, qk_dim, bias=bias)  # the paper's Q in eq. 3
        self.to_v = nn.Linear(dim, dim, bias=bias) if value_proj else nn.Identity()
        self.to_out = nn.Linear(dim, dim, bias=bias) if value_proj else nn.Identity()

    def forward(self, tokens: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        split = "b l (h d) -> b h l d"
        q = rearrange(self.to_q(tokens), split, h=self.heads)
        k = rearrange(self.to_k(tokens), split, h=self.heads)
        v = rearrange(self.to_v(tokens), split, h=self.heads)
        out, attn = attend(q, k, v, self.scale, need_weights, self.fused)  # attn: b h l l
        return self.to_out(rearrange(out, "b h l d -> b l (h d)")), attn


class LayerScale(nn.Module):
    """A learnable per-channel gain on a residual branch (LayerScale, Touvron et al., CaiT,
    ICCV 2021; not in the VT paper): ``gamma * x`` with ``gamma`` (D,) initialised at
    ``init``. Near 0 the branch starts as the identity's residual: a VT module whose tokens
    live in a pretrained feature space (the cut "pool") then starts from the pooling it
    replaces instead of random updates of that space. (..., D) -> (..., D)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.to(x.dtype)


class TokenTransformerLayer(nn.Module):
    """One attention block + point-wise MLP (eq. 3 then eq. 4), residual, optionally pre-norm.
    ``layer_scale``: each residual branch scaled by a :class:`LayerScale` starting there
    (None: the paper's plain residuals).

    Shapes: (B, L, D) -> (B, L, D), attention (B, heads, L, L) or None.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        qk_dim: int | None = None,
        mlp_dim: int | None = None,
        value_proj: bool = False,
        norm: bool = True,
        scaled: bool = True,
        activation: type[nn.Module] = nn.GELU,
        bias: bool = True,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        mlp_dim = mlp_dim or dim
        ls = layer_scale is not None
        self.scale1 = LayerScale(dim, layer_scale) if ls else nn.Identity()
        self.scale2 = LayerScale(dim, layer_scale) if ls else nn.Identity()
        self.norm1 = nn.LayerNorm(dim) if norm else nn.Identity()
        self.attn = TokenAttention(dim, heads, qk_dim, value_proj, scaled, bias)
        self.norm2 = nn.LayerNorm(dim) if norm else nn.Identity()
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim, bias=bias),  # F1
            activation(),
            nn.Linear(mlp_dim, dim, bias=bias),  # F2
        )

    def forward(self, tokens: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        out, attn = self.attn(self.norm1(tokens), need_weights)
        tokens = tokens + self.scale1(out)  # eq. 3
        tokens = tokens + self.scale2(self.mlp(self.norm2(tokens)))  # eq. 4
        return tokens, attn


class TokenTransformer(nn.Module):
    """A stack of :class:`TokenTransformerLayer` (the paper uses depth 1 per VT module).

    ``form="paper"`` builds eq. 3-4 literally (one head, no LayerNorm, no scaling, no
    biases, value = T_in, ReLU, F1/F2 of size D x D); other arguments are then ignored.

    Shapes: (B, L, D) -> (B, L, D) and a list of ``depth`` attentions (B, heads, L, L).
    """

    def __init__(
        self,
        dim: int,
        depth: int = 1,
        heads: int = 1,
        qk_dim: int | None = None,
        mlp_dim: int | None = None,
        value_proj: bool = False,
        scaled: bool = True,
        form: str = "mhsa",
        activation: type[nn.Module] = nn.GELU,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        if form == "paper":
            kwargs = dict(heads=1, qk_dim=dim, mlp_dim=dim, value_proj=False, norm=False)
            kwargs |= dict(scaled=False, activation=nn.ReLU, bias=False)
        elif form == "mhsa":
            kwargs = dict(heads=heads, qk_dim=qk_dim, mlp_dim=mlp_dim, value_proj=value_proj)
            kwargs |= dict(norm=True, scaled=scaled, activation=activation, bias=True)
        else:
            raise ValueError(f"unknown transformer form {form!r} (use 'mhsa' or 'paper')")
        kwargs["layer_scale"] = layer_scale
        self.layers = nn.ModuleList(TokenTransformerLayer(dim, **kwargs) for _ in range(depth))

    def forward(self, tokens: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        attentions = []
        for layer in self.layers:
            tokens, attn = layer(tokens, need_weights)
            if attn is not None:
                attentions.append(attn)
        return tokens, attentions
