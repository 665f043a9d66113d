"""Can a token map be trusted? Token ablation, deletion curves, model randomisation, and
the paper's Fig. 6 statistics (entropy against uniform, share of attention on a foreground).

Token ablation works on the last VT module, whose tokens the classifier reads: removing
token ``l`` drops it from the set the module's tokenizer produced (``tokens_in``), so the
token transformer runs on the remaining L - 1 tokens and the classifier averages what comes
out. Nothing of the removed token reaches the prediction, unlike dropping it after the
transformer has already mixed it into the others.

A token's importance, for the deletion curve, is its share of the semantic-group map (the
fraction of pixels whose strongest claim is that token): what the map says it explains.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..flags import UserError
from ..model.trace import Trace
from .maps import semantic_groups, token_entropy, upsample


def ablation_applies(model: nn.Module, trace: Trace) -> bool:
    """Whether token ablation means something for this model and trace: VT modules, a
    token-average classifier (the model's ``token_ablation``), no class token."""
    return bool(trace.modules) and not trace.class_token and getattr(model, "token_ablation", False)


def _check_ablatable(model: nn.Module, trace: Trace) -> None:
    if not trace.modules:
        raise UserError("token ablation needs a VT model (this model has no visual tokens)")
    if not ablation_applies(model, trace):
        raise UserError("token ablation needs a token-average classifier (VT-ResNet, VT-Lite0)")


@torch.no_grad()
def ablated_probabilities(
    model: nn.Module, trace: Trace, keep: Tensor, class_index: int, i: int = 0
) -> Tensor:
    """Probability of ``class_index`` for image ``i`` with only some last-module tokens kept.

    keep: (R, L) bool, one row per ablation (each row must keep at least one token).
    Returns (R,) probabilities. Uses the trace's ``tokens_in`` of the last module.
    """
    _check_ablatable(model, trace)
    if keep.ndim != 2 or not bool(keep.any(1).all()):
        raise UserError("keep must be (R, L) with at least one kept token per row")
    tokens_in = trace.modules[-1].tokens_in[i].detach().float()  # (L, C_T)
    keep = keep.to(tokens_in.device)
    out = torch.empty(len(keep))
    counts = keep.sum(1)
    for n in counts.unique().tolist():  # rows keeping the same number of tokens run as a batch
        rows = (counts == n).nonzero().flatten()
        idx = torch.stack([r.nonzero().flatten() for r in keep[rows]])  # (R', n)
        logits = model.logits_from_last_tokens_in(tokens_in[idx])
        out[rows.cpu()] = torch.softmax(logits.float(), -1)[:, class_index].cpu()
    return out


@dataclass
class DeletionResult:
    """Deletion curves of one image.

    Attributes:
        order: (L,) token indices, most important first (by semantic-group share).
        importance: (L,) the share of each token.
        curve: (L,) probability of the tracked class after removing the first k tokens of
            ``order``, k = 0 .. L-1 (the last token is never removed).
        random_curve: (L,) the same, averaged over random orders.
        single: (L,) probability drop when token l alone is removed (full - ablated).
        score: area between the random and the importance curve (mean over k; > 0 means
            the map's ranking finds tokens the prediction needs sooner than chance).
        predicted: the class index whose probability is tracked (the predicted class unless
            another ``target`` was asked for).
    """

    order: np.ndarray
    importance: np.ndarray
    curve: np.ndarray
    random_curve: np.ndarray
    single: np.ndarray
    score: float
    predicted: int


def deletion_curves(
    model: nn.Module,
    trace: Trace,
    i: int = 0,
    random_orders: int = 8,
    seed: int = 0,
    target: int | None = None,
) -> DeletionResult:
    """Remove last-module tokens by importance, and in random orders; see
    :class:`DeletionResult`. ``target``: the class whose probability is tracked (default the
    predicted one)."""
    _check_ablatable(model, trace)
    maps = trace.modules[-1].tokenizer_attention[i].detach().float().cpu().numpy()
    _, share = semantic_groups(maps)
    n = len(share)
    order = np.argsort(-share, kind="stable")
    pred = int(trace.logits[i].detach().argmax()) if target is None else int(target)

    def keep_rows(perm: np.ndarray) -> Tensor:
        keep = torch.ones(n, n, dtype=torch.bool)
        for k in range(1, n):
            keep[k:, perm[k - 1]] = False  # row k has the first k tokens of perm removed
        return keep

    g = np.random.default_rng(seed)
    perms = [order] + [g.permutation(n) for _ in range(random_orders)]
    singles = ~torch.eye(n, dtype=torch.bool)
    keep = torch.cat([keep_rows(p) for p in perms] + [singles])
    probs = ablated_probabilities(model, trace, keep, pred, i).numpy()
    curves = probs[: n * len(perms)].reshape(len(perms), n)
    curve = curves[0]
    rand = curves[1:].mean(0) if random_orders else curve.copy()
    single = curve[0] - probs[n * len(perms) :]
    score = float(np.mean(rand - curve))
    return DeletionResult(order, share, curve, rand, single, score, pred)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally shaped arrays (flattened; 0 if constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean()
    den = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / den) if den > 0 else 0.0


def randomisation_steps(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Layers in the order the cascading randomisation resets them, from the model's own
    ``randomisation_groups()``: top (classifier) first, then each VT module from the last,
    its parts from the projector down, then the trunk from its last stage down. Each step
    is (name, parameter-name prefixes)."""
    return model.randomisation_groups()


@dataclass
class RandomisationResult:
    """Model-randomisation sanity check (Adebayo et al., 2018) for one image.

    Attributes:
        steps: names of the layer groups, randomised cumulatively in this order.
        correlation: (steps, modules) Spearman correlation between each VT module's maps
            (all tokens, all pixels) of the trained model and of the model randomised up
            to and including that step. Maps that explain the model fall to ~0 once the
            layers that compute them are random; maps that do not would stay high.
    """

    steps: list[str]
    correlation: np.ndarray


@torch.no_grad()
def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Give ``module``'s own parameters (not its children's) fresh random values drawn from
    ``generator`` only, with PyTorch's default initialisation of each layer kind: weights
    kaiming-uniform (a = sqrt(5)), biases uniform in +-1/sqrt(fan_in); norm layers get
    weight 1, bias 0 and, for BatchNorm, random running statistics (mean ~ N(0, 0.1^2), var
    ~ U(0.5, 1.5): the reset values 0 and 1 would not be random)."""
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    if isinstance(module, norms):
        if getattr(module, "weight", None) is not None:
            module.weight.fill_(1.0)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            dev = module.running_mean.device
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator).mul_(0.1).to(dev))
            module.running_var.copy_(torch.rand(shape, generator=generator).add_(0.5).to(dev))
        return
    params = dict(module.named_parameters(recurse=False))
    weight = params.get("weight")
    fan_in = None
    if weight is not None and weight.dim() >= 2:
        fan_in = weight[0].numel()
    for p in params.values():
        if p.dim() >= 2:
            bound = math.sqrt(6.0 / ((1 + 5) * p[0].numel()))  # kaiming_uniform_(a=sqrt(5))
        else:
            bound = 1.0 / math.sqrt(fan_in or p.numel())
        fresh = torch.rand(p.shape, generator=generator).mul_(2 * bound).sub_(bound)
        p.copy_(fresh.to(p.device, p.dtype))


@torch.no_grad()
def randomisation_check(
    model: nn.Module, images: Tensor, seed: int = 0, max_steps: int | None = None
) -> RandomisationResult:
    """Cascade-randomise a copy of ``model`` from the top down and correlate its maps with
    the trained model's on ``images`` (1, 3, S, S). ``max_steps`` stops early (trunks are
    deep; the VT layers come first)."""
    # everything happens on a private copy with a private generator: the shared model (one
    # per server process, used by every visitor's thread) and torch's global RNG are never
    # touched, so the result depends only on (image, model, seed)
    if not hasattr(model, "trace"):
        raise UserError("the randomisation check needs a traced VT classifier")
    rand = copy.deepcopy(model).eval()
    ref = [
        m.tokenizer_attention[0].detach().float().cpu().numpy() for m in rand.trace(images).modules
    ]
    if not ref:
        raise UserError("the randomisation check needs a VT model (no token maps to compare)")
    g = torch.Generator().manual_seed(seed)
    steps = randomisation_steps(rand)[:max_steps]
    names, rows = [], []
    for name, prefixes in steps:
        for mod_name, mod in rand.named_modules():
            full = mod_name + "."
            if any(full.startswith(p) for p in prefixes):
                reinitialise(mod, g)
        maps = [
            m.tokenizer_attention[0].detach().float().cpu().numpy()
            for m in rand.trace(images).modules
        ]
        names.append(name)
        rows.append([rank_correlation(a, b) for a, b in zip(ref, maps, strict=True)])
    return RandomisationResult(names, np.asarray(rows))


def foreground_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each token's attention that falls on the foreground (the paper's Fig. 6
    question: do tokens attend to the object?).

    maps: (L, h, w), each summing to 1; mask: (H, W) bool or 0/1 at any resolution (resized
    bilinearly to h x w, i.e. partial cells count partly). Returns (L,) in [0, 1]; a uniform map gives the mask's area fraction.
    """
    m = upsample(np.asarray(mask, dtype=np.float32)[None], maps.shape[-2:])[0].clip(0, 1)
    p = maps / np.maximum(maps.reshape(len(maps), -1).sum(1), 1e-12)[:, None, None]
    return (p * m[None]).reshape(len(maps), -1).sum(1)


def entropy_ratio(maps: np.ndarray) -> np.ndarray:
    """Each token's map entropy divided by a uniform map's (1 = uniform, 0 = one pixel)."""
    ent, uniform = token_entropy(maps)
    return ent / uniform if uniform > 0 else np.zeros_like(ent)


def step_label(name: str) -> str:
    """A randomisation step for people, modules numbered from 1 as everywhere on the page:
    ``vt0.projector`` -> ``module 1 projector``; other names (classifier, block14, stem)
    unchanged."""
    return re.sub(r"^vt(\d+)\.", lambda m: f"module {int(m.group(1)) + 1} ", name)


def randomisation_verdict(correlations: Sequence[float]) -> str:
    """In words, from the rank correlations of each module's maps with the trained model's
    once every step is randomised (the check's last row): below 0.5 on average the maps
    depend on the learned weights, as they should; otherwise they mostly show the input
    (Adebayo et al. 2018's failure)."""
    mean = float(np.mean(correlations)) if len(correlations) else float("nan")
    if not np.isfinite(mean):
        return "no verdict: the check returned no correlations"
    if mean < 0.5:
        return (
            f"passes: with every step randomised the maps keep a correlation of only "
            f"{mean:.2f} with the trained model's, so they depend on what it learned"
        )
    return (
        f"fails: with every step randomised the maps still correlate {mean:.2f} with the "
        "trained model's; they show the input more than what the model learned"
    )


def format_score(score: float, digits: int = 3) -> str:
    """A signed score for people: ``+0.089``, ``-0.044``, and ``0.000`` (no sign) for
    anything that rounds to zero, never ``-0.000``."""
    v = round(float(score), digits)
    return f"{0.0:.{digits}f}" if v == 0 else f"{v:+.{digits}f}"


def deletion_verdict(score: float) -> str:
    """A deletion score in words (|score| under 0.01: no measurable effect): "tokens
    matter", "the map's ranking is worse than chance" or "tokens redundant"."""
    if score > 0.01:
        return "tokens matter: removing the ones the map ranks first hurts more than chance"
    if score < -0.01:
        return "the map's ranking is worse than chance for this prediction"
    return "tokens redundant for this prediction: removing them in any order changes little"
