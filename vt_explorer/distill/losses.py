"""Distillation losses: the KL term of function matching, SimKD's feature term, the
token-diversity hinge and cross-entropy on folder labels, summed by :func:`distill_loss`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..flags import UserError


def kd_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 KL(softmax(t / T) || softmax(s / T))``, mean over the batch."""
    t = F.log_softmax(teacher / temperature, -1)
    s = F.log_softmax(student / temperature, -1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def token_overlap(maps: Tensor, margin: float = 0.0) -> Tensor:
    """Mean pairwise cosine similarity of each image's L token maps (pairs l < l'), averaged
    over the batch: 1 when every token attends to the same place, about 0 for disjoint
    maps. The differentiable form of :func:`vt_explorer.analysis.map_similarity`.

    With ``margin`` > 0 each image contributes only its similarity above the margin,
    ``mean_b max(0, sim_b - margin)``: a hinge that pushes apart the maps of an image whose
    tokens overlap more than the margin and leaves the others alone.
    maps: (B, L, h, w) tokenizer attention (eq. 1/2). Returns a scalar."""
    unit = F.normalize(maps.flatten(2).float(), dim=-1)  # (B, L, hw)
    sim = unit @ unit.transpose(1, 2)  # (B, L, L)
    L = sim.shape[-1]
    off = sim.sum((-2, -1)) - sim.diagonal(dim1=-2, dim2=-1).sum(-1)
    per_image = off / max(L * (L - 1), 1)
    if margin > 0:
        per_image = F.relu(per_image - margin)
    return per_image.mean()


def distill_loss(
    args,
    s_logits: Tensor,
    t_logits: Tensor,
    y: Tensor,
    token_maps: list[Tensor] | None = None,
    s_feature: Tensor | None = None,
    t_feature: Tensor | None = None,
) -> Tensor:
    """The recipe's loss (:class:`~vt_explorer.distill.recipe.DistillArgs` weights):
    ``kd_weight`` x :func:`kd_loss` + ``feature_weight`` x MSE(student's projected feature,
    teacher's pooled feature) + ``diversity_weight`` x the mean :func:`token_overlap` of each
    module's ``token_maps`` + ``ce_weight`` x cross-entropy where a row has a folder label
    (``y`` >= 0). UserError when it is not finite (a diverging run)."""
    loss = args.kd_weight * kd_loss(s_logits, t_logits, args.temperature)
    if s_feature is not None and t_feature is not None and args.feature_weight > 0:
        loss = loss + args.feature_weight * F.mse_loss(s_feature.float(), t_feature)
    if token_maps and args.diversity_weight > 0:
        overlap = torch.stack([token_overlap(m, args.diversity_margin) for m in token_maps])
        loss = loss + args.diversity_weight * overlap.mean()
    if args.ce_weight > 0 and (y >= 0).any():
        loss = loss + args.ce_weight * F.cross_entropy(s_logits[y >= 0], y[y >= 0])
    if not torch.isfinite(loss):
        raise UserError(f"distillation diverged: loss {loss.item()}; lower --lr")
    return loss
