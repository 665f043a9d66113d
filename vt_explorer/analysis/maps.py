"""Token maps, semantic groups, propagated maps (the paper's Fig. 6) and per-token numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.trace import Trace, VTModuleTrace


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize (L, h, w) maps to (L, H, W) = ``size`` (for overlays on the image)."""
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0]
    return out.numpy()


def semantic_groups(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which token claims each pixel most, and each token's share of the pixels.

    maps: (L, H, W) tokenizer attention (each map sums to 1 over pixels). Each map is first
    divided by its maximum so that a token's claim is relative to its own peak (otherwise
    diffuse tokens could never win). Returns (labels (H, W) int, share (L,) summing to 1).
    """
    m = maps / np.maximum(maps.reshape(len(maps), -1).max(1), 1e-12)[:, None, None]
    labels = m.argmax(0)
    share = np.bincount(labels.ravel(), minlength=len(maps)) / labels.size
    return labels, share


def projector_groups(proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The projector's view: for each pixel the token it reads from most (eq. 5 softmax).

    proj: (L, H, W), summing to 1 over L at each pixel. Returns (labels (H, W), mass (L,)):
    ``mass[l]`` is the mean weight pixels give token l (sums to 1).
    """
    return proj.argmax(0), proj.reshape(len(proj), -1).mean(1)


def least_similarity(maps: np.ndarray) -> float:
    """The smallest cosine similarity between any two of the L maps (L, H, W): 1 when every
    map is the same (or there is one), about 0 when two are disjoint. The Fig. 6 view calls
    maps with every pair at 0.99 or more (near) identical, however the attention looks."""
    if len(maps) < 2:
        return 1.0
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    return float(cos[~np.eye(len(maps), dtype=bool)].min())


def propagated_maps(maps: np.ndarray, token_attention: np.ndarray) -> np.ndarray:
    """The paper's Fig. 6 second row: A_hat[l] = sum_l' W[l, l'] A[l'].

    maps (L, H, W); token_attention (heads, L, L) or (L, L) (rows sum to 1; heads are
    averaged). Returns (L, H, W); each map still sums to 1.
    """
    w = token_attention.mean(0) if token_attention.ndim == 3 else token_attention
    return np.einsum("lk,khw->lhw", w, maps)


def token_entropy(maps: np.ndarray) -> tuple[np.ndarray, float]:
    """Entropy (nats) of each token's spatial map, and that of a uniform map, log(HW)."""
    p = maps.reshape(len(maps), -1).astype(np.float64)
    p = p / p.sum(1, keepdims=True)
    ent = -(p * np.log(np.clip(p, 1e-30, None))).sum(1)
    return ent, float(np.log(p.shape[1]))


def token_contributions(model: nn.Module, tokens: torch.Tensor, class_index: int) -> np.ndarray:
    """Change in the ``class_index`` logit when token l is removed from the average the
    classifier reads (ablation; VT-ResNet heads only).

    tokens: (L, C_T) final tokens of one image. Returns (L,): positive = the token supports
    the class.
    """
    with torch.no_grad():
        t = tokens.float()
        n = t.shape[0]
        full = model.forward_head(t[None])[0, class_index]
        if n == 1:
            return np.zeros(1, dtype=np.float32)
        keep = ~torch.eye(n, dtype=torch.bool, device=t.device)  # row l: every token but l
        others = t[None].expand(n, n, -1)[keep].view(n, n - 1, -1)
        ablated = model.forward_head(others)[:, class_index]
        return (full - ablated).cpu().numpy()


@dataclass
class TokenStats:
    """Per-token numbers of one image and module, each an (L,) array."""

    share: np.ndarray  # fraction of pixels the token wins in the semantic-group map
    mass: np.ndarray  # mean projector weight pixels give the token (or share, no projector)
    entropy: np.ndarray  # nats
    uniform_entropy: float  # log(HW)
    contribution: np.ndarray | None  # logit change of the explained class on removal

    @property
    def entropy_ratio(self) -> np.ndarray:
        """Entropy over a uniform map's (1 = looks everywhere; 0 for a one-pixel map)."""
        if self.uniform_entropy > 0:
            return self.entropy / self.uniform_entropy
        return np.zeros_like(self.entropy)


def token_stats(
    trace: Trace,
    module: int,
    i: int = 0,
    model: nn.Module | None = None,
    target: int | None = None,
) -> TokenStats:
    """Per-token numbers for image ``i`` of ``trace`` at VT module ``module``.

    ``contribution`` is filled for the last module of a token-average classifier when
    ``model`` is given: the logit change of class ``target`` (default the predicted one).
    """
    m: VTModuleTrace = trace.modules[module]
    maps = m.tokenizer_attention[i].detach().float().cpu().numpy()
    _, share = semantic_groups(maps)
    if m.projector_attention is not None:
        _, mass = projector_groups(m.projector_attention[i].detach().float().cpu().numpy())
    else:
        mass = share
    ent, uni = token_entropy(maps)
    contrib = None
    last = module == len(trace.modules) - 1
    if (
        model is not None
        and last
        and getattr(model, "token_ablation", False)
        and not trace.class_token
    ):
        pred = int(trace.logits[i].detach().argmax()) if target is None else int(target)
        contrib = token_contributions(model, m.tokens[i].detach(), pred)
    return TokenStats(share, mass, ent, uni, contrib)


def effective_groups(share: np.ndarray) -> float:
    """Effective number of semantic groups: ``exp(H(share))`` of the group shares (L,)
    (summing to 1). L tokens with equal shares give L; one token claiming every pixel gives
    1 (collapse); a token that wins nothing adds nothing."""
    p = np.asarray(share, dtype=np.float64)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def map_similarity(maps: np.ndarray) -> float:
    """Mean pairwise cosine similarity of the L flattened maps (l < l'): 1 when every map is
    the same (collapse), about 0 for maps on disjoint regions; uniform maps give 1 too."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    if len(flat) < 2:
        return 1.0
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    iu = np.triu_indices(len(flat), 1)
    return float(sim[iu].mean())


def peak_spread(maps: np.ndarray) -> float:
    """Mean pairwise distance between the maps' peaks (argmax cells), as a fraction of the
    map's diagonal: 0 when every token peaks on one spot."""
    L, h, w = maps.shape
    if L < 2:
        return 0.0
    peaks = np.stack(np.unravel_index(maps.reshape(L, -1).argmax(1), (h, w)), 1).astype(float)
    d = np.linalg.norm(peaks[:, None] - peaks[None], axis=-1)
    iu = np.triu_indices(L, 1)
    return float(d[iu].mean() / max(np.hypot(h - 1, w - 1), 1.0))


@dataclass
class Diversity:
    """How many different things a module's tokens look at, for one image.

    Attributes:
        effective_groups: exp(entropy of the semantic-group shares), 1..L.
        similarity: mean pairwise cosine similarity of the maps, 0..1.
        peak_spread: mean distance between the maps' peaks over the map's diagonal.
        verdict: "collapsed" (effective groups < 2 or similarity > 0.9), "partly collapsed"
            (effective groups < L/4 or similarity > 0.5), else "diverse".
    """

    effective_groups: float
    similarity: float
    peak_spread: float
    verdict: str


def diversity(maps: np.ndarray, share: np.ndarray | None = None) -> Diversity:
    """:class:`Diversity` of one module's maps (L, h, w) (``share``: its group shares, else
    computed). Unlike counting maps that differ by a tolerance, 16 maps peaked on one spot
    with different noise are called collapsed here."""
    if share is None:
        share = semantic_groups(maps)[1]
    eff, sim, spread = effective_groups(share), map_similarity(maps), peak_spread(maps)
    L = len(maps)
    if eff < 2 or sim > 0.9:
        verdict = "collapsed"
    elif eff < max(2.0, L / 4) or sim > 0.5:
        verdict = "partly collapsed"
    else:
        verdict = "diverse"
    return Diversity(eff, sim, spread, verdict)
