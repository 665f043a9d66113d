"""The typed record one forward pass returns: everything a VT computed, by name.

`model.trace(images)` fills these dataclasses directly from the forward pass (no hooks,
no global state), so the app, the CLI and the analysis functions read attention maps
from named fields with documented shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class VTModuleTrace:
    """What one VT module (tokenizer -> transformer -> projector) computed.

    Shapes use B = batch, L = tokens, H x W = the feature map the module works on,
    C_T = token width, heads = attention heads of the token transformer.

    Attributes:
        kind: ``"filter"`` (eq. 1) or ``"recurrent"`` (eq. 2) tokenizer.
        tokenizer_attention: (B, L, H, W). ``A`` of eq. 1/2 reshaped: map ``l`` is token
            ``l``'s spatial attention; each map sums to 1 over the H x W pixels.
        token_attention: one (B, heads, L', L') tensor per transformer layer: row ``i`` is how
            token ``i`` reads the others (rows sum to 1). L' = L, or L + 1 when the model
            prepends a class token (then index 0 is the class token).
        projector_attention: (B, L, H, W) or None. Eq. 5's softmax: for each pixel, the
            weight it gives each token (sums to 1 over L). None when the module has no
            projector (the last module of a classifier, whose tokens go to the head).
        tokens_in: (B, L, C_T) tokens as the tokenizer produced them.
        tokens: (B, L', C_T) tokens after the transformer.
    """

    kind: str
    tokenizer_attention: Tensor
    token_attention: list[Tensor]
    projector_attention: Tensor | None
    tokens_in: Tensor
    tokens: Tensor

    @property
    def num_tokens(self) -> int:
        """L, the number of visual tokens the tokenizer extracted."""
        return int(self.tokenizer_attention.shape[1])

    @property
    def feature_size(self) -> tuple[int, int]:
        """(H, W) of the feature map this module worked on."""
        h, w = self.tokenizer_attention.shape[-2:]
        return int(h), int(w)


@dataclass
class Trace:
    """Everything one forward pass of a classifier computed.

    Attributes:
        logits: (B, num_classes), identical to ``model(images)``.
        modules: one :class:`VTModuleTrace` per VT module, in order; empty for a conv model.
        class_token: True when token attention includes a prepended class token at index 0.
    """

    logits: Tensor
    modules: list[VTModuleTrace] = field(default_factory=list)
    class_token: bool = False

    @property
    def probabilities(self) -> Tensor:
        """(B, num_classes) softmax of the logits."""
        return torch.softmax(self.logits.float(), dim=-1)

    def to(self, device: torch.device | str) -> Trace:
        """Return a copy with every tensor moved to ``device`` (e.g. "cpu" for numpy)."""

        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().to(device)

        mods = [
            VTModuleTrace(
                kind=m.kind,
                tokenizer_attention=mv(m.tokenizer_attention),
                token_attention=[mv(a) for a in m.token_attention],
                projector_attention=mv(m.projector_attention),
                tokens_in=mv(m.tokens_in),
                tokens=mv(m.tokens),
            )
            for m in self.modules
        ]
        return Trace(logits=mv(self.logits), modules=mods, class_token=self.class_token)
