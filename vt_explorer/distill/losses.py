"""Distillation losses: the KL term of function matching, SimKD's feature term, the
token-diversity hinge, the group-balance hinge and cross-entropy on folder labels, summed by
:func:`distill_loss`."""

from __future__ import annotations

import math

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


def group_balance(maps: Tensor, groups: float, temperature: float = 0.05) -> Tensor:
    """How far each image's token groups fall short of ``groups`` effective groups: the
    differentiable form of :func:`vt_explorer.analysis.effective_groups` of
    :func:`vt_explorer.analysis.semantic_groups`, as a hinge.

    Each map is divided by its own maximum (as ``semantic_groups`` does), each pixel is
    assigned softly to the tokens by a softmax over them at ``temperature`` (the argmax as
    the temperature goes to 0), a token's share is its mean assignment over the pixels, and
    the image contributes ``max(0, log(groups) - H(share))``: zero once ``exp(H)``, the
    effective number of groups, reaches ``groups``. Averaged over the batch.
    maps: (B, L, h, w) tokenizer attention (eq. 1/2). Returns a scalar."""
    flat = maps.flatten(2).float()  # (B, L, hw)
    rel = flat / flat.amax(-1, keepdim=True).clamp_min(1e-12)
    share = torch.softmax(rel / temperature, dim=1).mean(-1)  # (B, L), sums to 1
    entropy = -(share * share.clamp_min(1e-12).log()).sum(-1)
    return F.relu(math.log(groups) - entropy).mean()


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
    module's ``token_maps`` + ``balance_weight`` x the mean :func:`group_balance` of each
    module's ``token_maps`` + ``ce_weight`` x cross-entropy where a row has a folder label
    (``y`` >= 0). UserError when it is not finite (a diverging run)."""
    loss = args.kd_weight * kd_loss(s_logits, t_logits, args.temperature)
    if s_feature is not None and t_feature is not None and args.feature_weight > 0:
        loss = loss + args.feature_weight * F.mse_loss(s_feature.float(), t_feature)
    if token_maps and args.diversity_weight > 0:
        overlap = torch.stack([token_overlap(m, args.diversity_margin) for m in token_maps])
        loss = loss + args.diversity_weight * overlap.mean()
    if token_maps and args.balance_weight > 0:
        short = torch.stack([group_balance(m, args.balance_groups) for m in token_maps])
        loss = loss + args.balance_weight * short.mean()
    if args.ce_weight > 0 and (y >= 0).any():
        loss = loss + args.ce_weight * F.cross_entropy(s_logits[y >= 0], y[y >= 0])
    if not torch.isfinite(loss):
        raise UserError(f"distillation diverged: loss {loss.item()}; lower --lr")
    return loss
