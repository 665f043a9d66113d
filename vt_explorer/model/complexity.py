"""Parameters and FLOPs, in total and per stage, measured with torch.utils.flop_counter.

FLOPs follow torch's counter: 2 per multiply-add, counting matrix products and convolutions
(attention included); normalisation, activations and additions are not counted. The paper's
"GFLOPs" are multiply-adds: ``macs = flops / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class StageCost:
    """One stage's parameter count and FLOPs for one image."""

    name: str
    params: int
    flops: int

    @property
    def macs(self) -> int:
        """Multiply-adds (FLOPs / 2), the paper's unit."""
        return self.flops // 2


@dataclass
class Complexity:
    """Whole-model cost for one image at ``input_size``, and its split by stage."""

    params: int
    flops: int
    input_size: int
    stages: list[StageCost] = field(default_factory=list)

    @property
    def macs(self) -> int:
        """Multiply-adds (FLOPs / 2), the paper's unit."""
        return self.flops // 2

    def stage(self, name: str) -> StageCost:
        """The stage called ``name`` (KeyError if absent)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "params": self.params,
            "flops": self.flops,
            "macs": self.macs,
            "input_size": self.input_size,
            "stages": {s.name: {"params": s.params, "flops": s.flops} for s in self.stages},
        }


def count_complexity(model: nn.Module, input_size: int | None = None) -> Complexity:
    """Count parameters and FLOPs of ``model`` for one (1, 3, S, S) image.

    ``S`` defaults to ``model.cfg.input_size``. Per-stage figures use the model's
    ``stage_modules()`` grouping; they add up to the totals.
    """
    if input_size is None:
        input_size = int(model.cfg.input_size)
    param = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    # count the explicit attention: FlopCounterMode misses some CPU fused-attention kernels
    # (3-D inputs in channels_last models), which would make counts depend on memory format
    fused = {m: m.fused for m in model.modules() if hasattr(m, "fused")}
    model.eval()
    try:
        for m in fused:
            m.fused = False
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for m, f in fused.items():
            m.fused = f
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    stages = []
    for stage, children in model.stage_modules().items():
        params = flops = 0
        for child in children:
            obj = getattr(model, child)
            if isinstance(obj, nn.Parameter):
                params += obj.numel()
                continue
            params += sum(p.numel() for p in obj.parameters())
            key = f"{prefix}.{child}"
            if key in counts:
                flops += sum(counts[key].values())
            else:  # a ModuleList is never called itself: add up its direct children
                flops += sum(
                    sum(v.values())
                    for k, v in counts.items()
                    if k.startswith(key + ".") and "." not in k[len(key) + 1 :]
                )
        stages.append(StageCost(stage, params, flops))
    total_params = sum(p.numel() for p in model.parameters())
    return Complexity(total_params, counter.get_total_flops(), input_size, stages)
