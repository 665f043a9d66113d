"""The distillation teacher: EfficientNet-Lite0's pretrained ImageNet classifier, and the
part of it a student replaces.

A student (``VTLite0``) and the teacher read the same trunk maps: the teacher's
:meth:`~vt_explorer.model.efficientnet.EfficientNetLite0.tail` starts where the student's
trunk ends, so one cached trunk pass serves both. ``distill`` labels every view with
:func:`label_views`; ``eval --teacher`` and the app's reference column use
:func:`teacher_model` unfolded.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .efficientnet import EfficientNetLite0
from .registry import create_model, get_config

#: the registered config of the teacher
TEACHER = "efficientnet_lite0"

#: views the teacher labels at once on a CPU: its 14x14 maps of 672-1152 channels fit the
#: caches (128 views in one batch were 1.5x slower than in batches of 32 on a 2-core CPU;
#: docs/distillation.md). Accelerators get one batch.
TEACHER_CPU_CHUNK = 32


def teacher_model(
    device: torch.device | str, fold: bool = False, student: nn.Module | None = None
) -> EfficientNetLite0:
    """The full Lite0 ImageNet classifier (pretrained, eval mode); ``fold``: its BatchNorms
    folded into the convolutions (:meth:`EfficientNetLite0.folded`: the same function up to
    float rounding, faster; what ``distill`` labels its views with).

    With ``student`` (a ``VTLite0``) the teacher runs at the student's output stride and its
    ``tail`` starts where the student's trunk ends, so it labels the student's own cached
    trunk maps (at output stride 16 that is the dilated Lite0, which agrees with the plain
    one on 95.7% of ImageNet photos at the same top-1)."""
    cfg = get_config(TEACHER)
    if student is not None:
        os_ = student.cfg.extra.get("output_stride", 32)
        cfg = cfg.replace(extra={**cfg.extra, "output_stride": os_})
    teacher = create_model(cfg)
    if student is not None:
        teacher.tail_start = student.trunk_blocks
    teacher.load_pretrained()
    teacher = teacher.eval()
    return (teacher.folded() if fold else teacher).to(device)


@torch.no_grad()
def label_views(teacher: EfficientNetLite0, x: Tensor, bf16: bool = False) -> tuple[Tensor, Tensor]:
    """The teacher's pooled 1280-d feature and logits for views ``x`` (B, C, h, w) (its tail
    from the student's cut), both float32: on a CPU in chunks of :data:`TEACHER_CPU_CHUNK`,
    in bfloat16 autocast with ``bf16``. The same function at any chunk size up to float
    rounding."""
    step = TEACHER_CPU_CHUNK if x.device.type == "cpu" else len(x)
    feats, logits = [], []
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for part in x.split(step):
            f = teacher.tail_features(part)
            feats.append(f.float())
            logits.append(teacher.classifier(f).float())
    return torch.cat(feats), torch.cat(logits)
