"""The classifier interface that analysis, training and the app rely on, independent of any
backbone.

Every classifier in the registry is a :class:`TracedClassifier`: ``forward(images)`` gives
logits by the fused path, ``trace(images)`` a :class:`~vt_explorer.model.trace.Trace` with
every attention map. What the analysis needs beyond that, each model states itself:

* :meth:`TracedClassifier.forward_head`: logits from the last VT module's final tokens;
* :attr:`TracedClassifier.token_ablation`: whether removing last-module tokens is a
  meaningful experiment (a token-average classifier; not a class token, not a conv model);
* :meth:`TracedClassifier.logits_from_last_tokens_in`: the last module's transformer and
  the head run on a subset of its incoming tokens (token ablation);
* :meth:`TracedClassifier.randomisation_groups`: parameter groups from the top down, for the
  cascading model-randomisation check;
* :meth:`TracedClassifier.stage_modules`: top-level children per stage (cost tables).

A new backbone implements these and needs no edit in ``vt_explorer/analysis``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .trace import Trace


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming (fan-out) convs, norm weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TracedClassifier(nn.Module):
    """Base of every classifier: ``_run(images, need_weights)`` returns a :class:`Trace`;
    ``forward`` takes the fused path and returns logits, ``trace`` the explicit one."""

    #: True when removing last-module tokens before the transformer and reading
    #: :meth:`forward_head` is a meaningful ablation (token-average VT heads)
    token_ablation: bool = False

    @property
    def frozen(self) -> bool:
        """True for a model whose :meth:`features` are a fixed function (a frozen,
        pretrained trunk) and whose ``head`` alone trains on them (feature caching)."""
        return False

    def _run(self, images: Tensor, need_weights: bool) -> Trace:
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> (B, num_classes) logits (fused attention)."""
        return self._run(images, need_weights=False).logits

    def trace(self, images: Tensor) -> Trace:
        """Forward pass that also returns every attention map it computed (explicit softmax)."""
        return self._run(images, need_weights=True)

    def forward_head(self, tokens: Tensor) -> Tensor:
        """(B, L, C_T) final tokens of the last VT module -> (B, num_classes) logits."""
        raise ValueError(f"{type(self).__name__} has no classifier on visual tokens")

    def logits_from_last_tokens_in(self, tokens_in: Tensor) -> Tensor:
        """(B, n, C_T) tokens entering the last VT module (any subset, n >= 1) -> logits,
        through that module's transformer and :meth:`forward_head` (token ablation)."""
        raise ValueError(f"{type(self).__name__} does not support token ablation")

    def randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """(name, parameter-name prefixes) from the top of the network down."""
        raise ValueError(f"{type(self).__name__} has no randomisation groups")

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage, for per-stage parameter and FLOP counts."""
        raise NotImplementedError


class TokenAverageHead:
    """Mixin for the paper's classifier: the mean of the last VT module's tokens, a
    LayerNorm (``head_norm``, optional) and ``fc`` (VT_PAPER.md section 5). The class
    defines ``vt`` (a :class:`~vt_explorer.model.vt.VTStage`), ``head_norm`` and ``fc``."""

    vt: nn.Module
    head_norm: nn.Module
    fc: nn.Linear

    @property
    def token_ablation(self) -> bool:  # type: ignore[override]
        return getattr(self, "vt", None) is not None

    def forward_head(self, tokens: Tensor) -> Tensor:
        """(B, L, C_T) -> (B, K): ``fc(head_norm(mean over L))``."""
        return self.fc(self.head_norm(tokens.mean(dim=1)))

    def logits_from_last_tokens_in(self, tokens_in: Tensor) -> Tensor:
        """(B, n, C_T) -> (B, K): the last module's transformer, then :meth:`forward_head`."""
        t, _ = self.vt.blocks[-1].transformer(tokens_in)
        return self.forward_head(t)

    def vt_randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """The classifier, then each VT module from the last, its parts from the projector
        down (names ``vt{k}.projector`` with k 0-based as in parameter names)."""
        steps: list[tuple[str, list[str]]] = [("classifier", ["fc.", "head_norm."])]
        for k in reversed(range(len(self.vt.blocks))):
            for part in ("projector", "transformer", "tokenizer"):
                if getattr(self.vt.blocks[k], part, None) is not None:
                    steps.append((f"vt{k}.{part}", [f"vt.blocks.{k}.{part}."]))
        return steps
