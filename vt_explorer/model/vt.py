"""VT module (tokenizer -> transformer -> projector) and a stage of them (VT_PAPER.md 1-5)."""

from __future__ import annotations

from torch import Tensor, nn

from .config import VTConfig
from .projector import Projector
from .tokenizer import TokenPositionEncoding, build_tokenizer
from .trace import VTModuleTrace
from .transformer import TokenTransformer


class VTModule(nn.Module):
    """One visual-transformer module: eq. 1 or 2, then eq. 3-4, then eq. 5.

    Shapes: x (B, C, H, W), tokens_in (B, L, C_T) or None (filter tokenizer) ->
    x_out (B, C, H, W) (x unchanged when ``project=False``), tokens (B, L, C_T),
    and a :class:`VTModuleTrace` when ``need_weights``.
    """

    def __init__(self, channels: int, cfg: VTConfig, kind: str, project: bool = True) -> None:
        super().__init__()
        token_dim = cfg.token_dim or channels
        pos = (
            TokenPositionEncoding(token_dim, cfg.pos_grid, cfg.pos_dim)
            if cfg.pos_encoding
            else None
        )
        self.tokenizer: nn.Module = build_tokenizer(kind, channels, cfg, token_dim, pos)
        self.kind = kind
        self.transformer = TokenTransformer(
            token_dim,
            depth=cfg.depth,
            heads=cfg.heads,
            qk_dim=max(cfg.heads, round(token_dim * cfg.qk_ratio)),
            mlp_dim=max(1, round(token_dim * cfg.mlp_ratio)),
            value_proj=cfg.value_proj,
            scaled=cfg.scaled,
            form=cfg.transformer,
            layer_scale=cfg.layer_scale,
        )
        self.projector = (
            Projector(channels, token_dim, cfg.projector_dim, cfg.scaled, cfg.layer_scale)
            if project
            else None
        )

    def forward(
        self, x: Tensor, tokens_in: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor, VTModuleTrace | None]:
        tokens0, tok_attn = self.tokenizer(x, tokens_in)
        tokens, token_attn = self.transformer(tokens0, need_weights)
        proj_attn = None
        if self.projector is not None:
            x, proj_attn = self.projector(x, tokens, need_weights)
        if not need_weights:
            return x, tokens, None
        trace = VTModuleTrace(
            kind=self.kind,
            tokenizer_attention=tok_attn,
            token_attention=token_attn,
            projector_attention=proj_attn,
            tokens_in=tokens0,
            tokens=tokens,
        )
        return x, tokens, trace


class VTStage(nn.Module):
    """``cfg.num_modules`` VT modules at one resolution; the projector output X of each feeds
    the next, and a recurrent tokenizer reads the previous module's tokens.

    The last module has no projector when ``project_last=False`` (a classifier reads its
    tokens, so a projection would feed nothing and its weights would get no gradient).

    Shapes: x (B, C, H, W) -> x (B, C, H, W), tokens (B, L, C_T), list of traces.
    """

    def __init__(self, channels: int, cfg: VTConfig, project_last: bool = False) -> None:
        super().__init__()
        kinds = cfg.tokenizer_kinds()
        self.blocks = nn.ModuleList(
            VTModule(channels, cfg, kind, project=(i < len(kinds) - 1) or project_last)
            for i, kind in enumerate(kinds)
        )
        self.token_dim = cfg.token_dim or channels

    def forward(
        self, x: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor, list[VTModuleTrace]]:
        tokens = None
        traces = []
        for module in self.blocks:
            x, tokens, trace = module(x, tokens, need_weights)
            if trace is not None:
                traces.append(trace)
        assert tokens is not None
        return x, tokens, traces
