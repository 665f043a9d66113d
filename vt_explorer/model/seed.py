"""The seed's CIFAR "ViTResNet" design (VT_PAPER.md section 10), with its defects fixed,
and a faithful copy of the defective original kept only for benchmarks.

Design: ResNet-20 backbone (16/32/64 channels, 3 blocks per stage, 8x8x64 output at 32x32),
filter tokenizer with value projection (L = 8 tokens of width 128, eq. 1), a class token and
learned position embedding, a 6-layer 8-head pre-norm transformer (MLP 256), and a linear
head on the class token. No recurrent tokenizer and no projector, as in the seed.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .classifier import TracedClassifier
from .config import ModelConfig
from .resnet import ResNetTrunk
from .tokenizer import FilterTokenizer
from .trace import Trace, VTModuleTrace
from .transformer import TokenTransformer


class SeedViTResNet(ResNetTrunk, TracedClassifier):
    """The seed design with shared tokenizer weights (any batch size, one image included).

    Shapes: images (B, 3, 32, 32) -> X (B, 64, 8, 8) -> tokens (B, L, C_T) ->
    [cls; tokens] + pos (B, L + 1, C_T) -> transformer -> logits from index 0 (B, K).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.extra
        tokens, dim = int(e.get("tokens", 8)), int(e.get("token_dim", 128))
        channels = self._build_trunk(cfg, len(cfg.layers))
        self.tokenizer = FilterTokenizer(channels, tokens, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.dropout = nn.Dropout(float(e.get("dropout", 0.1)))
        self.transformer = TokenTransformer(
            dim,
            depth=int(e.get("depth", 6)),
            heads=int(e.get("heads", 8)),
            qk_dim=dim,
            mlp_dim=int(e.get("mlp_dim", 256)),
            value_proj=True,
        )
        self.fc = nn.Linear(dim, cfg.num_classes)
        self._init_weights()

    def _run(self, images: Tensor, need_weights: bool) -> Trace:
        x = self._run_trunk(images)
        tokens0, attn = self.tokenizer(x)
        cls = self.cls_token.expand(tokens0.shape[0], -1, -1)
        t = self.dropout(torch.cat([cls, tokens0], dim=1) + self.pos_embedding)
        t, token_attn = self.transformer(t, need_weights)
        logits = self.fc(t[:, 0])
        if not need_weights:
            return Trace(logits=logits)
        mod = VTModuleTrace("filter", attn, token_attn, None, tokens0, t)
        return Trace(logits=logits, modules=[mod], class_token=True)

    def randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """Classifier, transformer (with class token and positions), tokenizer, trunk."""
        return [
            ("classifier", ["fc."]),
            ("transformer", ["transformer.", "cls_token", "pos_embedding"]),
            ("tokenizer", ["tokenizer."]),
            *self._trunk_randomisation_groups(),
        ]

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage."""
        stages = self._trunk_stages()
        stages["vt"] = ["tokenizer", "cls_token", "pos_embedding", "transformer"]
        stages["head"] = ["fc"]
        return stages


class SeedViTResNetReference(nn.Module):
    """The seed's ViTResNet *as written*, defect included: W_A and W_V are parameters with a
    leading batch dimension (one pair per sample slot), so it only runs at ``batch_size``.

    Kept solely so benchmarks can time our models against the original design in one run;
    not registered, never used by the app. ``forward`` raises on any other batch size.
    """

    def __init__(self, batch_size: int = 100, num_classes: int = 10) -> None:
        super().__init__()
        cfg = ModelConfig(name="seed_reference", layers=(3, 3, 3), widths=(16, 32, 64))
        self.trunk = _Trunk(cfg)
        self.batch_size, self.L, self.cT = batch_size, 8, 128
        self.token_wA = nn.Parameter(torch.empty(batch_size, self.L, 64))
        self.token_wV = nn.Parameter(torch.empty(batch_size, 64, self.cT))
        nn.init.xavier_uniform_(self.token_wA)
        nn.init.xavier_uniform_(self.token_wV)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.cT))
        self.pos_embedding = nn.Parameter(torch.randn(1, self.L + 1, self.cT) * 0.02)
        self.dropout = nn.Dropout(0.1)
        self.transformer = TokenTransformer(
            self.cT, depth=6, heads=8, qk_dim=self.cT, mlp_dim=256, value_proj=True
        )
        self.nn1 = nn.Linear(self.cT, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[0] != self.batch_size:
            raise RuntimeError(
                f"the seed design only runs at its training batch size {self.batch_size}, "
                f"got {images.shape[0]} (per-sample tokenizer weights)"
            )
        x = rearrange(self.trunk(images), "b c h w -> b (h w) c")
        wa = rearrange(self.token_wA, "b l c -> b c l")
        a = rearrange(torch.einsum("bij,bjk->bik", x, wa), "b n l -> b l n").softmax(dim=-1)
        vv = torch.einsum("bij,bjk->bik", x, self.token_wV)
        t = torch.einsum("bij,bjk->bik", a, vv)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embedding
        t, _ = self.transformer(self.dropout(t))
        return self.nn1(t[:, 0])


class _Trunk(ResNetTrunk):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self._build_trunk(cfg, len(cfg.layers))
        self._init_weights()

    def forward(self, x: Tensor) -> Tensor:
        return self._run_trunk(x)
