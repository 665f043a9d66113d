"""Feature pyramid necks for the paper's VT-FPN FLOPs comparison (VT_PAPER.md section 8).

``ResNetFPN(cfg)`` is a ResNet trunk (C2..C5) followed by either neck:

* ``ConvFPN``: the conventional FPN of Panoptic FPN (Lin et al. 2017): a 1x1 lateral conv
  per level, a top-down pathway (nearest upsampling + add) and a 3x3 output conv per level;
* ``VTFPN``: the paper's token-based module: the same 1x1 laterals, then a filter tokenizer
  per level (``tokens`` tokens of width ``token_dim``), one transformer over the tokens of all
  levels together, and a projector back onto each level. No 3x3 convs, no top-down path.

Not a classifier: ``forward`` returns the list of pyramid maps (B, out_channels, H_i, W_i),
finest first. No segmentation training is provided; the point is the cost of the neck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .projector import Projector
from .resnet import ResNetTrunk
from .tokenizer import FilterTokenizer
from .transformer import TokenTransformer


class ConvFPN(nn.Module):
    """Conventional FPN: laterals, top-down sum, 3x3 output convs.

    Shapes: list of (B, C_i, H_i, W_i) -> list of (B, out, H_i, W_i).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.output, lat, strict=True)]


class VTFPN(nn.Module):
    """VT-FPN: per-level filter tokenizer (eq. 1) -> one transformer over all levels' tokens
    (eq. 3-4) -> per-level projector (eq. 5).

    Shapes: list of (B, C_i, H_i, W_i) -> laterals (B, out, H_i, W_i) -> tokens
    (B, levels * tokens, token_dim) -> list of (B, out, H_i, W_i).
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        tokens: int = 8,
        token_dim: int = 1024,
        heads: int = 16,
    ) -> None:
        super().__init__()
        self.tokens = tokens
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.tokenizers = nn.ModuleList(
            FilterTokenizer(out_channels, tokens, token_dim) for _ in in_channels
        )
        self.transformer = TokenTransformer(token_dim, heads=heads, qk_dim=token_dim // 2)
        self.projectors = nn.ModuleList(Projector(out_channels, token_dim) for _ in in_channels)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        toks = [tok(x)[0] for tok, x in zip(self.tokenizers, lat, strict=True)]
        t, _ = self.transformer(torch.cat(toks, dim=1))
        per_level = t.split(self.tokens, dim=1)
        return [proj(x, tk)[0] for proj, x, tk in zip(self.projectors, lat, per_level, strict=True)]


class ResNetFPN(ResNetTrunk):
    """ResNet trunk + FPN neck (``cfg.extra['neck']`` = ``"conv"`` or ``"vt"``).

    Shapes: images (B, 3, S, S) -> 4 maps (B, out, S/4 .. S/32).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._build_trunk(cfg, len(cfg.layers))
        exp = 4 if cfg.block == "bottleneck" else 1
        chans = [w * exp for w in cfg.widths]
        out = int(cfg.extra.get("out_channels", 256))
        neck = cfg.extra.get("neck", "conv")
        if neck == "conv":
            self.neck: nn.Module = ConvFPN(chans, out)
        elif neck == "vt":
            e = cfg.extra
            self.neck = VTFPN(
                chans,
                out,
                int(e.get("tokens", 8)),
                int(e.get("token_dim", 1024)),
                int(e.get("heads", 16)),
            )
        else:
            raise ValueError(f"unknown FPN neck {neck!r} (use 'conv' or 'vt')")
        self._init_weights()

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, S, S) -> pyramid maps, finest first."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        feats = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        return self.neck(feats)

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage; ``neck`` is the FPN module."""
        stages = self._trunk_stages()
        stages["neck"] = ["neck"]
        return stages
