"""Fresh views for distillation: each batch is split among view sources, then transformed.

A **source** (:class:`ViewSource`) owns a share of each batch: given the photo indices of its
rows it returns their views, and it describes itself for the model card. A **transform**
(:class:`ViewTransform`) changes the assembled batch (and marks rows whose folder label no
longer holds). :class:`Views` draws the photos, splits the batch among its sources in order
(the last one fills what the others leave) and applies the transforms; the card's
``views`` line is the join of every part's description. A new kind of view is one class
here and one field of :class:`~vt_explorer.distill.recipe.DistillArgs`.

Sources: :class:`MapCrops` (random-resized crops of the bank maps, the default),
:class:`OwnMaps` (``--real-share``), :class:`Windows` (``--window-share``),
:class:`ImageCrops` (``--image-share``). Transforms: :class:`Nudge` (``--nudge-share``),
:class:`Mix` (``--mix``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..data import mirror_at_random, normalize
from ..flags import UserError
from ..model.efficientnet import EfficientNetLite0


class ViewSource(Protocol):
    """A share of each batch: (n,) photo indices -> (n, C, h, w) float32 views."""

    share: float

    def __call__(self, idx: Tensor, g: torch.Generator) -> Tensor: ...

    def describe(self) -> str: ...


class ViewTransform(Protocol):
    """Changes a batch of views ``x`` (B, C, h, w) and its folder labels ``y`` (B,) (-1 where
    a row's label no longer holds); returns both."""

    def __call__(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]: ...

    def describe(self) -> str: ...


def random_views(
    bank: Tensor, idx: Tensor, out: int, min_scale: float, g: torch.Generator
) -> Tensor:
    """Random-resized crops of bank maps: (B, C, out, out) float32.

    For each index a crop of area ``U(min_scale, 1)`` x the map and aspect ratio log-uniform
    in [3/4, 4/3] at a uniform position is resized bilinearly (``roi_align``, aligned, 2x2
    samples per output cell) to ``out`` x ``out``; half of the crops are mirrored.
    """
    B = len(idx)
    H, W = bank.shape[-2:]
    area = torch.empty(B).uniform_(min_scale, 1.0, generator=g)
    ratio = torch.exp(torch.empty(B).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g))
    w = (torch.sqrt(area * ratio) * W).clamp(1.0, W)
    h = (torch.sqrt(area / ratio) * H).clamp(1.0, H)
    x0 = torch.rand(B, generator=g) * (W - w)
    y0 = torch.rand(B, generator=g) * (H - h)
    boxes = torch.stack([torch.arange(B, dtype=torch.float32), x0, y0, x0 + w, y0 + h], 1)
    maps = bank[idx].float()
    x = roi_align(
        maps, boxes.to(maps.device), out, spatial_scale=1.0, sampling_ratio=2, aligned=True
    )
    return mirror_at_random(x, g)


def window_views(bank: Tensor, idx: Tensor, out: int, g: torch.Generator) -> Tensor:
    """Whole-cell windows of bank maps: (B, C, out, out) float32, half of them mirrored.

    Each is the ``out`` x ``out`` block of a bank map at a uniform integer offset, copied
    without resampling: an 18x18 map (288 px) has 25 windows of 14x14, each close to the
    trunk's own map of that 224-px square of the photo (the receptive field sees past its
    edge), so unlike :func:`random_views` it keeps the trunk's per-channel statistics.
    UserError when the maps are smaller than ``out``."""
    H, W = bank.shape[-2:]
    if min(H, W) < out:
        raise UserError(
            f"window views need bank maps of at least {out}x{out}, not {H}x{W}: "
            "raise --bank-size to the model's input size or more"
        )
    B = len(idx)
    top = torch.randint(0, H - out + 1, (B,), generator=g)
    left = torch.randint(0, W - out + 1, (B,), generator=g)
    r = torch.arange(out)
    rows = (top[:, None] + r)[:, :, None]  # (B, out, 1)
    cols = (left[:, None] + r)[:, None, :]  # (B, 1, out)
    x = bank[idx[:, None, None], :, rows, cols].permute(0, 3, 1, 2).float()  # (B, C, out, out)
    return mirror_at_random(x, g).contiguous()


def mix_views(x: Tensor, g: torch.Generator) -> Tensor:
    """MixUp (lambda ~ U(0, 1)) or CutMix (a random box of area 1 - lambda) between each map
    and the batch rolled by one. (B, C, h, w) -> same shape."""
    lam = float(torch.rand((), generator=g))
    other = x.roll(1, 0)
    if float(torch.rand((), generator=g)) < 0.5:
        return lam * x + (1 - lam) * other
    h, w = x.shape[-2:]
    ch, cw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    top = int(torch.randint(0, h - ch + 1, (), generator=g))
    left = int(torch.randint(0, w - cw + 1, (), generator=g))
    out = x.clone()
    out[..., top : top + ch, left : left + cw] = other[..., top : top + ch, left : left + cw]
    return out


def nudge_views(
    teacher: EfficientNetLite0,
    x: Tensor,
    target: Tensor,
    steps: int,
    size: float,
    bf16: bool = False,
) -> Tensor:
    """Views moved towards the teacher's class ``target`` by signed-gradient ascent on its
    log-probability (targeted iterative FGSM): ``x <- x + size * std(x) * sign(grad log
    p_T(target | x))``, ``steps`` times, each map's standard deviation its own unit.
    Random targets show the student the teacher's answers around classes the pool lacks
    (after the boundary-supporting samples of Heo et al., AAAI 2019); the teacher labels the
    nudged map afterwards, so teacher and student still see the same view.
    x: (B, C, h, w), target: (B,) class indices. Returns a new (B, C, h, w) tensor."""
    scale = x.detach().flatten(1).std(1).clamp_min(1e-6)[:, None, None, None] * size
    rows = torch.arange(len(x), device=x.device)
    out = x.detach().clone()
    for _ in range(steps):
        out.requires_grad_(True)
        with torch.enable_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
            logp = F.log_softmax(teacher.tail(out).float(), -1)[rows, target.to(x.device)]
            (grad,) = torch.autograd.grad(logp.sum(), out)
        out = (out + scale * grad.sign()).detach()
    return out


@dataclass
class MapCrops:
    """Random-resized crops of the bank maps (:func:`random_views`) at ``side`` x ``side``:
    the default source, filling what the other sources leave."""

    bank: Tensor
    side: int
    min_scale: float
    share: float = 1.0

    def __call__(self, idx: Tensor, g: torch.Generator) -> Tensor:
        return random_views(self.bank, idx, self.side, self.min_scale, g)

    def describe(self) -> str:
        return (
            "random-resized crops of the trunk's feature map (area "
            f"{self.min_scale}-1, aspect 3/4-4/3) + flips"
        )


@dataclass
class OwnMaps:
    """The photos' own trunk maps at the model's input size (``--real-share``), mirrored at
    random: ``real`` (N, C, h, w), or (V, N, C, h, w) with V maps per photo (the centre crop
    and V - 1 fixed random-resized crops, ``--real-views``), one drawn per row."""

    real: Tensor
    share: float
    input_size: int

    def __call__(self, idx: Tensor, g: torch.Generator) -> Tensor:
        if self.real.ndim == 5:
            view = torch.randint(0, len(self.real), (len(idx),), generator=g)
            own = self.real[view, idx].float()
        else:
            own = self.real[idx].float()
        return mirror_at_random(own, g)

    def describe(self) -> str:
        more = ""
        if self.real.ndim == 5 and len(self.real) > 1:
            more = (
                f" (the centre crop and {len(self.real) - 1} fixed random-resized crops of "
                "each photo, area 25-100%)"
            )
        return (
            f"a share of {self.share} of each batch is the photos' own {self.input_size}-px "
            f"maps, mirrored{more}"
        )


@dataclass
class Windows:
    """Whole-cell windows of the bank maps (:func:`window_views`, ``--window-share``)."""

    bank: Tensor
    side: int
    share: float

    def __call__(self, idx: Tensor, g: torch.Generator) -> Tensor:
        return window_views(self.bank, idx, self.side, g)

    def describe(self) -> str:
        return (
            f"a share of {self.share} is whole-cell windows of the bank maps at "
            f"{self.side}x{self.side}, mirrored"
        )


class ImageCrops:
    """Fresh views in image space (``--image-share``): random-resized crops of decoded photos
    through the frozen trunk, the views of Beyer et al. without a feature-space shortcut.

    images: (N, 3, S, S) uint8 photos (the pool at ``--bank-size``, on the CPU); trunk: a
    folded trunk (``VTLite0.folded()``) on the training device; mean/std: the model's
    normalisation. Called with (B,) photo indices it draws B crops with
    :func:`random_views`'s geometry and flips (on the trunk's device), resizes them to
    ``size`` px and returns their trunk maps, (B, C, size/16, size/16) float32.
    """

    def __init__(
        self,
        images: Tensor,
        trunk: nn.Module,
        mean: tuple,
        std: tuple,
        size: int = 224,
        min_scale: float = 0.08,
        share: float = 1.0,
        bf16: bool = False,
    ) -> None:
        self.images, self.trunk, self.mean, self.std = images, trunk.eval(), mean, std
        self.size, self.min_scale, self.share, self.bf16 = size, min_scale, share, bf16
        self.device = next(trunk.parameters()).device

    @torch.no_grad()
    def __call__(self, idx: Tensor, g: torch.Generator) -> Tensor:
        photos = self.images[idx].to(self.device)
        views = random_views(photos, torch.arange(len(idx)), self.size, self.min_scale, g)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.trunk.features(normalize(views, self.mean, self.std)).float()

    def describe(self) -> str:
        return (
            f"a share of {self.share} is fresh random-resized crops of the photos in image "
            f"space (area {self.min_scale}-1 of the {self.images.shape[-1]}-px photo), "
            "mirrored, through the trunk"
        )


@dataclass
class Nudge:
    """``--nudge-share``: that share of the batch, rows at random, moved towards random
    classes by :func:`nudge_views` before the teacher labels it (no longer a photo of its
    folder's class)."""

    teacher: EfficientNetLite0
    share: float
    steps: int
    size: float
    bf16: bool = False

    def __call__(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        n = round(self.share * len(x))
        if n:
            rows = torch.randperm(len(x), generator=g)[:n].to(x.device)
            target = torch.randint(0, self.teacher.cfg.num_classes, (n,), generator=g)
            x[rows] = nudge_views(self.teacher, x[rows], target, self.steps, self.size, self.bf16)
            y[rows] = -1
        return x, y

    def describe(self) -> str:
        return (
            f"a share of {self.share} is nudged towards random classes by the teacher's "
            f"gradient ({self.steps} signed steps of {self.size} std)"
        )


@dataclass
class Mix:
    """``--mix``: with probability ``p`` the whole batch is mixed (:func:`mix_views`), and no
    row keeps its folder label."""

    p: float

    def __call__(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        if float(torch.rand((), generator=g)) < self.p:
            return mix_views(x, g), torch.full_like(y, -1)
        return x, y

    def describe(self) -> str:
        return f"MixUp/CutMix with p={self.p}"


@dataclass
class Views:
    """Each batch: ``batch_size`` photos drawn uniformly (their folder labels from ``hard``,
    -1 for unlabelled), split among ``sources`` in order (each takes ``round(share *
    batch_size)`` rows of what is left; the last takes the rest), then ``transforms``."""

    sources: list[ViewSource]
    hard: Tensor
    transforms: list[ViewTransform] = field(default_factory=list)

    def __call__(
        self, batch_size: int, g: torch.Generator, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """(views (B, C, h, w) float32 on ``device``, folder labels (B,))."""
        idx = torch.randint(0, len(self.hard), (batch_size,), generator=g)
        parts, start = [], 0
        for i, src in enumerate(self.sources):
            left = batch_size - start
            n = left if i == len(self.sources) - 1 else min(round(src.share * batch_size), left)
            if n:
                parts.append(src(idx[start : start + n], g).to(device))
                start += n
        x, y = torch.cat(parts), self.hard[idx].to(device)
        for t in self.transforms:
            x, y = t(x, y, g)
        return x, y

    def describe(self) -> str:
        """The card's ``views`` line: the default source first, then the others in batch
        order, then the transforms."""
        parts = [self.sources[-1], *self.sources[:-1], *self.transforms]
        return "; ".join(p.describe() for p in parts)


def make_views(
    args,
    teacher: EfficientNetLite0,
    bank: Tensor,
    hard: Tensor,
    side: int,
    real: Tensor | None = None,
    crops: ImageCrops | None = None,
) -> Views:
    """The views a recipe (:class:`~vt_explorer.distill.recipe.DistillArgs`) asks for, from
    the pool's bank maps (N, C, H, W), folder labels (N,), own maps ``real`` and photo crops
    ``crops`` (each used only when its share is above 0)."""
    sources: list[ViewSource] = []
    if real is not None and args.real_share > 0:
        sources.append(OwnMaps(real, args.real_share, side * 16))
    if args.window_share > 0:
        sources.append(Windows(bank, side, args.window_share))
    if crops is not None and args.image_share > 0:
        crops.share = args.image_share
        sources.append(crops)
    sources.append(MapCrops(bank, side, args.min_scale))
    transforms: list[ViewTransform] = []
    if args.nudge_share > 0:
        transforms.append(
            Nudge(teacher, args.nudge_share, args.nudge_steps, args.nudge_size, args.bf16)
        )
    transforms.append(Mix(args.mix))
    return Views(sources, hard, transforms)
