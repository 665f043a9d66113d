"""Distil ImageNet's 1000 classes from the EfficientNet-Lite0 classifier into VT heads.

There is no ImageNet training set here, but there is an ImageNet teacher. The student
(``vt_lite0_imagenet``: Lite0's frozen blocks 0-10, then VT modules) and the teacher
(Lite0's blocks 11-15 and head) read the *same* stride-16 trunk features, so one trunk pass
serves both and the student learns exactly the part the paper replaces: the last stage.

The recipe is "patient and consistent" function matching (Beyer et al., CVPR 2022):

1. **Feature bank.** Every pool photo goes through the frozen trunk once, at a larger
   size than the model's (``bank_size``, default 288 px: an 18x18 map), and is cached
   (float16, ``$VT_EXPLORER_CACHE/features``).
2. **Fresh views, in feature space.** Each training sample is a random-resized crop of a
   bank map (area 8%-100%, aspect 3/4-4/3, bilinear, ``torchvision.ops.roi_align``) to the
   model's 14x14, mirrored at random, and with probability ``mix`` mixed with another
   sample (MixUp or CutMix on the maps). Crops of the feature map stand in for crops of the
   photo (the trunk's receptive field makes them close, not equal); what matters for
   function matching is that teacher and student see the same map. But a resampled crop is
   smoother than a map the trunk computes itself (about half its variance per channel),
   and a student fitted to crops alone agrees with the teacher much less on the trunk's own
   224-px maps, the maps every evaluation and the app give it (``benchmarks/view_gap.py``).
   With ``real_share`` > 0 that share of each batch is the pool photos' own 224-px maps
   (a second cached bank, mirrored at random) instead of crops; with ``window_share`` > 0
   a further share is whole-cell 14x14 windows of the 18x18 bank maps (:func:`window_views`:
   crops of a 224-px square of the photo that need no resampling, 25 positions per photo);
   with ``image_share`` > 0 a further share is fresh random-resized crops of the photos
   themselves, each through the trunk (:class:`ImageCrops`: Beyer et al.'s views exactly,
   at a trunk pass per view, cheap on a GPU).
3. **Teacher on every view.** The teacher's tail labels each (mixed) map; the loss is the KL
   divergence from its temperature-softened outputs, ``T^2 KL(p_T || p_S)``, plus
   ``ce_weight`` x cross-entropy on the hard label where the photo's folder is a wnid and
   the map is not mixed.
4. **Optional classifier reuse** (after SimKD, Chen et al. CVPR 2022; ``reuse_classifier``):
   the student's pooled tokens are projected to 1280-d and the teacher's own classifier,
   frozen, gives the logits. With ``feature_weight`` > 0 the projection also matches the
   teacher's pooled 1280-d feature on the same view (``feature_weight`` x mean squared
   error, SimKD's loss; ``kd_weight`` = 0 leaves that loss alone): 1280 numbers per view
   instead of a distribution dominated by the few classes the pool shows.
5. **Optional token diversity** (not in the paper; default off): ``diversity_weight`` x the
   mean pairwise cosine similarity of each VT module's token maps (:func:`token_overlap`,
   the measure ``analysis.map_similarity`` reports), a remedy for recurrent tokens that
   collapse onto one spot of a photo. With ``diversity_margin`` > 0 the term is a hinge:
   only each image's similarity above the margin is penalised, so maps already apart are
   left to the distillation loss.

Measured on held-out sources (never trained on; a source given both as data and as
held-out is split: its fixed held-out sample is left out of the bank): top-1 agreement with the
teacher, top-1 and top-5 against the folder labels, every ``eval_every`` samples: the
learning curve the card records. Resumable (``--resume``): the state after the last
evaluation is kept in ``OUT.resume.pt`` (tensors only). ``--init CHECKPOINT`` starts from a
finished student of the same config instead of the pretrained initialisation: a second stage
with its own one-cycle schedule, for a run longer than one sitting; the card records the
checkpoint, its weights' hash and ``samples_in_all``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align
from tqdm.auto import tqdm

from .checkpoint import atomic_write, save_checkpoint
from .data import (
    DatasetError,
    ImageDataset,
    fixed_sample,
    load_image_folder,
    mirror_at_random,
    normalize,
)
from .device import select_device
from .features import FeatureSet, compute_features, folded_classifier, folded_trunk
from .flags import POSITIVE, REQUIRED, flag, float_in, int_in
from .model import create_model, get_config
from .model.efficientnet import EfficientNetLite0

TEACHER = "efficientnet_lite0"


@dataclass
class DistillArgs:
    """One distillation run. Each field is a ``vt-explorer distill`` flag: its default and
    help are written here once (:func:`vt_explorer.flags.flag`)."""

    data: list[str] = flag(REQUIRED, "pool photos: folders or .tar.gz of class folders (wnid "
                           "folders give hard labels for --ce-weight; other folder names are "
                           "unlabelled)", nargs="+", metavar="PATH")  # fmt: skip
    out: str = flag(REQUIRED, "checkpoint path without suffix", metavar="OUT")
    holdout: list[str] = flag(None, "sources never trained on, evaluated along the way (wnid "
                              "folders also give top-1/top-5; others agreement only); one also "
                              "given as --data is split: its held-out sample leaves the pool",
                              nargs="*", metavar="PATH", default_factory=list)  # fmt: skip
    holdout_limit: int = flag(2000, "images per held-out source, a fixed sample (seed 0; "
                              "eval --sample N measures the same images)", type=POSITIVE)  # fmt: skip
    student: str = flag(
        "vt_lite0_imagenet",
        "student config: vt_lite0_imagenet[_filter] "
        "(the paper's placement) or vt_lite0_os16_CUT[_filter] (CUT: block15, "
        "head_conv, pool; vt-explorer info lists them)",
    )
    wnids: str | None = flag(None, "the 1000 wnids in class order (default: "
                             "imagenet_wnids.txt beside a data source)", metavar="FILE")  # fmt: skip
    samples: int = flag(300_000, "training views in all", type=POSITIVE)
    batch_size: int = flag(128, "views per step", type=POSITIVE)
    lr: float = flag(2e-3, "AdamW peak learning rate, one-cycle", type=float_in(0, 1, lo_open=True))
    weight_decay: float = flag(0.05, "AdamW weight decay", type=float_in(0, 10))
    warmup: float = flag(0.05, "warm-up fraction of steps", type=float_in(0, 1))
    kd_weight: float = flag(1.0, "weight of the KL term (0: feature matching alone, with "
                            "--feature-weight)", type=float_in(0, 100))  # fmt: skip
    temperature: float = flag(1.0, "softening of both outputs in the KL term",
                              type=float_in(0, 100, lo_open=True))  # fmt: skip
    ce_weight: float = flag(0.0, "weight of cross-entropy on wnid folder labels (0: KL only)",
                            type=float_in(0, 100))  # fmt: skip
    diversity_weight: float = flag(0.0, "weight of the token-diversity term: mean pairwise "
                                   "cosine similarity of each module's token maps (0: the "
                                   "paper's loss; > 0 fights recurrent tokens collapsing "
                                   "onto one spot)", type=float_in(0, 100))  # fmt: skip
    diversity_margin: float = flag(0.0, "with --diversity-weight: penalise only each image's "
                                   "map similarity above this margin (a hinge; 0: all of it)",
                                   type=float_in(0, 1))  # fmt: skip
    reuse_classifier: bool = flag(False, "classifier reuse (after SimKD): the student's pooled "
                                  "tokens are projected to 1280-d and read by the teacher's own "
                                  "classifier, frozen; trained by the same KL loss (not the "
                                  "paper's head)")  # fmt: skip
    feature_weight: float = flag(0.0, "weight of feature matching (needs --reuse-classifier): "
                                 "mean squared error between the student's projected 1280-d "
                                 "feature and the teacher's pooled feature (SimKD)",
                                 type=float_in(0, 1000))  # fmt: skip
    bf16: bool = flag(False, "label views and run the student's forward pass in bfloat16 "
                      "(autocast; weights, loss and held-out measures stay float32): about 1.6x "
                      "faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs; the "
                      "teacher's top-1 changes on 1 to 2 photos in 100")  # fmt: skip
    bank_size: int = flag(288, "photos enter the trunk at this size once; views are crops of "
                          "the resulting map (288: 18x18)", type=int_in(64, 1024))  # fmt: skip
    min_scale: float = flag(0.08, "smallest crop area as a fraction of the map",
                            type=float_in(0.01, 1))  # fmt: skip
    real_share: float = flag(0.0, "share of each batch taken from the photos' own trunk maps "
                             "at the model's input size (224 px: 14x14, mirrored at random) "
                             "instead of crops of the bank: resampled crops are smoother than "
                             "the trunk's own maps, on which the student is evaluated "
                             "(benchmarks/view_gap.py)", type=float_in(0, 1))  # fmt: skip
    real_views: int = flag(1, "with --real-share: the photos' own maps per photo: the centre "
                           "crop, plus real_views - 1 fixed random-resized crops of the photo "
                           "(area 25 to 100 percent), each through the trunk once (cached)",
                           type=int_in(1, 16))  # fmt: skip
    window_share: float = flag(0.0, "share of each batch taken as whole-cell windows of the "
                               "bank maps at the model's map size (an 18x18 bank map has 25 "
                               "14x14 windows: crops of a 224-px square of the 288-px photo, "
                               "not resampled, so with the trunk's own statistics), mirrored "
                               "at random, instead of resampled crops",
                               type=float_in(0, 1))  # fmt: skip
    image_share: float = flag(0.0, "share of each batch taken as fresh random-resized crops "
                              "of the photos in image space (the same crop geometry as the "
                              "map crops, --min-scale, on the photos decoded once at "
                              "--bank-size and kept in memory as uint8: 4.7 GB for the ImageNet "
                              "pool at 288 px), each through the "
                              "frozen trunk at the model's input size, mirrored at random: "
                              "unlimited distinct views with the trunk's own statistics, at "
                              "a trunk pass per view (a whole bfloat16 step on the 2-core "
                              "CPU: 840 views/s with map crops, 390 with a quarter image "
                              "crops, 100 with all; benchmarks/bench_distill.py)", type=float_in(0, 1))  # fmt: skip
    nudge_share: float = flag(0.0, "share of each batch nudged, before the teacher labels it, "
                              "towards a random one of the 1000 classes by the teacher's own "
                              "gradient (--nudge-steps signed steps): views that show the "
                              "teacher's answers for classes the pool lacks",
                              type=float_in(0, 1))  # fmt: skip
    nudge_steps: int = flag(2, "with --nudge-share: signed-gradient steps per nudged view",
                            type=int_in(1, 100))  # fmt: skip
    nudge_size: float = flag(0.05, "with --nudge-share: each step's size, in units of the "
                             "map's own standard deviation", type=float_in(0, 10, lo_open=True))  # fmt: skip
    mix: float = flag(0.5, "probability that a batch is mixed (half MixUp, half CutMix; "
                      "Beyer et al.'s recipe. Up to 300,000 views 0 agreed better on held-out "
                      "photos, so scripts/distill_cpu.sh uses 0)", type=float_in(0, 1))  # fmt: skip
    eval_every: int = flag(50_000, "samples between held-out evaluations and resume states",
                           type=POSITIVE)  # fmt: skip
    seed: int = flag(0, "seed", type=int_in(0, 2**31 - 1))
    device: str = flag("auto", "auto (CUDA, MPS, CPU), cpu, cuda...")
    threads: int | None = flag(None, "torch CPU threads (default: all)", type=int_in(1, 1024))
    resume: bool = flag(False, "continue from OUT.resume.pt (the same recipe)")
    init: str | None = flag(None, "start from this checkpoint's weights (the same student "
                            "config, e.g. a shipped student): a second stage with its own "
                            "one-cycle schedule, to lengthen a run; the card records it",
                            metavar="CHECKPOINT")  # fmt: skip
    #: ``--set KEY=VALUE``: fields of the student's config changed (as ``train``'s)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_wnids(path: str | os.PathLike) -> list[str]:
    """The 1000 ImageNet wnids in class-index order, one per line; ValueError otherwise."""
    p = Path(path)
    try:
        wnids = [w.strip() for w in p.read_text().split() if w.strip()]
    except OSError as err:
        raise ValueError(f"{p}: cannot read the wnid list ({err.strerror})") from None
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or not all(w.startswith("n") for w in wnids):
        raise ValueError(f"{p}: expected 1000 distinct ImageNet wnids (n01440764 ...)")
    return wnids


def find_wnids(args: DistillArgs) -> list[str]:
    """``args.wnids``, else an ``imagenet_wnids.txt`` beside one of the data sources."""
    if args.wnids:
        return read_wnids(args.wnids)
    for src in [*args.data, *args.holdout]:
        cand = Path(src).expanduser().resolve().parent / "imagenet_wnids.txt"
        if cand.is_file():
            return read_wnids(cand)
    raise ValueError("no imagenet_wnids.txt beside the data: pass --wnids FILE")


def teacher_model(
    device: torch.device, fold: bool = False, student: nn.Module | None = None
) -> EfficientNetLite0:
    """The full Lite0 ImageNet classifier (pretrained, eval mode); ``fold``: its BatchNorms
    folded into the convolutions (:func:`~vt_explorer.features.folded_classifier`: the same
    function up to float rounding, faster; what ``distill`` labels its views with).

    With ``student`` (a ``VTLite0``) the teacher runs at the student's output stride and
    its :meth:`~EfficientNetLite0.tail` starts where the student's trunk ends, so it labels
    the student's own cached trunk maps (at output stride 16 that is the dilated Lite0,
    which agrees with the plain one on 95.7% of ImageNet photos at the same top-1)."""
    cfg = get_config(TEACHER)
    if student is not None:
        os_ = student.cfg.extra.get("output_stride", 32)
        cfg = cfg.replace(extra={**cfg.extra, "output_stride": os_})
    teacher = create_model(cfg)
    if student is not None:
        teacher.tail_start = student.trunk_blocks
    teacher.load_pretrained()
    teacher = teacher.eval()
    return (folded_classifier(teacher) if fold else teacher).to(device)


#: views the teacher labels at once on a CPU: its 14x14 maps of 672-1152 channels fit the
#: caches (measured on the 2-core VM, 128 views channels-last: 0.158 s in one batch, 0.108 s
#: in batches of 32, 0.113 s of 16; bfloat16 0.061 s at 32 and 64). Accelerators get one batch.
TEACHER_CPU_CHUNK = 32


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe is not None and torch.backends.mkldnn.is_available() and probe())
    return False


@torch.no_grad()
def label_views(teacher: EfficientNetLite0, x: Tensor, bf16: bool = False) -> tuple[Tensor, Tensor]:
    """The teacher's pooled 1280-d feature and logits for views ``x`` (B, 112, h, w), both
    float32: on a CPU in chunks of :data:`TEACHER_CPU_CHUNK`, in bfloat16 autocast with
    ``bf16``. The same function at any chunk size up to float rounding."""
    step = TEACHER_CPU_CHUNK if x.device.type == "cpu" else len(x)
    feats, logits = [], []
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for part in x.split(step):
            f = teacher.tail_features(part)
            feats.append(f.float())
            logits.append(teacher._fc(f).float())
    return torch.cat(feats), torch.cat(logits)


def wnid_labels(fs: FeatureSet, wnids: list[str]) -> Tensor:
    """Each sample's ImageNet class index from its folder name, -1 for a folder that is not a
    wnid (unlabelled: Caltech-101's categories, say). A folder named like a wnid that is not
    one of the 1000 is a DatasetError naming it."""
    index = {w: i for i, w in enumerate(wnids)}
    if any(c.startswith("n") and c[1:].isdigit() and c not in index for c in fs.classes):
        bad = [c for c in fs.classes if c.startswith("n") and c[1:].isdigit() and c not in index]
        raise DatasetError(f"{fs.source}: wnid folders not among the 1000 classes: {bad[:5]}")
    per_class = torch.tensor([index.get(c, -1) for c in fs.classes])
    return per_class[fs.labels]


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
    x = roi_align(maps, boxes.to(maps.device), out, spatial_scale=1.0, sampling_ratio=2,
                  aligned=True)  # fmt: skip
    return mirror_at_random(x, g)


def window_views(bank: Tensor, idx: Tensor, out: int, g: torch.Generator) -> Tensor:
    """Whole-cell windows of bank maps: (B, C, out, out) float32, half of them mirrored.

    Each is the ``out`` x ``out`` block of a bank map at a uniform integer offset, copied
    without resampling: an 18x18 map (288 px) has 25 windows of 14x14, each close to the
    trunk's own map of that 224-px square of the photo (the receptive field sees past its
    edge; the zero padding of the photo's border is only where the window touches it), so
    unlike :func:`random_views` it keeps the trunk's per-channel statistics. ValueError when
    the maps are smaller than ``out``."""
    H, W = bank.shape[-2:]
    if min(H, W) < out:
        raise ValueError(f"window views need bank maps of at least {out}x{out}, not {H}x{W}: "
                         "raise --bank-size to the model's input size or more")  # fmt: skip
    B = len(idx)
    top = torch.randint(0, H - out + 1, (B,), generator=g)
    left = torch.randint(0, W - out + 1, (B,), generator=g)
    r = torch.arange(out)
    rows = (top[:, None] + r)[:, :, None]  # (B, out, 1)
    cols = (left[:, None] + r)[:, None, :]  # (B, 1, out)
    x = bank[idx[:, None, None], :, rows, cols].permute(0, 3, 1, 2).float()  # (B, C, out, out)
    return mirror_at_random(x, g).contiguous()


class ImageCrops:
    """Fresh views in image space (``--image-share``): random-resized crops of decoded photos
    through the frozen trunk, the views of Beyer et al. without a feature-space shortcut.

    images: (N, 3, S, S) uint8 photos (the pool at ``--bank-size``, on the CPU); trunk: a
    folded trunk (:func:`~vt_explorer.features.folded_trunk`) on the training device;
    mean/std: the model's normalisation. Calling it with (B,) photo indices draws B crops
    with :func:`random_views`'s geometry and flips (on the trunk's device), resizes them to
    ``size`` px and returns their trunk maps, (B, C, size/16, size/16) float32.
    """

    def __init__(self, images: Tensor, trunk: nn.Module, mean: tuple, std: tuple) -> None:
        self.images, self.trunk, self.mean, self.std = images, trunk.eval(), mean, std
        self.device = next(trunk.parameters()).device

    @torch.no_grad()
    def __call__(
        self, idx: Tensor, size: int, min_scale: float, g: torch.Generator, bf16: bool = False
    ) -> Tensor:
        photos = self.images[idx].to(self.device)
        views = random_views(photos, torch.arange(len(idx)), size, min_scale, g)  # 0-255 floats
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.trunk.features(normalize(views, self.mean, self.std)).float()


def _pool_images(
    args: DistillArgs, student: nn.Module, holdouts: list, bank_sets: list[FeatureSet],
    progress: bool,
) -> list[ImageDataset]:  # fmt: skip
    """Each ``--data`` source's photos decoded at ``--bank-size`` as the bank saw them (the
    same centre crop and interpolation; cached), minus the held-out sample of a source that
    is also held out: row for row the photos of ``bank_sets``. DatasetError when a source
    decodes to another number of photos than its bank (the source changed in between)."""
    held = {Path(src).expanduser().resolve() for src, _, _ in holdouts}
    interpolation = student.cfg.extra.get("interpolation", "bicubic")
    out = []
    for src, fs in zip(args.data, bank_sets, strict=True):
        ds = load_image_folder(src, args.bank_size, "center_crop", progress=progress,
                               interpolation=interpolation)  # fmt: skip
        if Path(src).expanduser().resolve() in held:
            ds = _without_holdout(ds, args.holdout_limit)
        if len(ds) != len(fs) or not torch.equal(ds.labels, fs.labels):
            raise DatasetError(f"{src}: {len(ds)} photos decoded but {len(fs)} trunk maps in "
                               "the bank; the source changed: run again")  # fmt: skip
        out.append(ds)
    return out


def nudge_views(
    teacher: EfficientNetLite0, x: Tensor, target: Tensor, steps: int, size: float,
    bf16: bool = False,
) -> Tensor:  # fmt: skip
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


@torch.no_grad()
def holdout_metrics(
    student: nn.Module, teacher: EfficientNetLite0, fs: FeatureSet, labels: Tensor, device, bs=256
) -> dict[str, float | None]:
    """Top-1 agreement with the teacher, and top-1 / top-5 of both against the wnid folder
    labels (None for an unlabelled source), on a held-out feature set (centre view)."""
    student.eval()
    agree = s1 = s5 = t1 = t5 = 0
    for i in range(0, len(fs), bs):
        x = fs.features[i : i + bs].to(device).float()
        y = labels[i : i + bs].to(device)
        s = student.head(x).logits
        t = teacher.tail(x)
        agree += int((s.argmax(1) == t.argmax(1)).sum())
        s_top = s.topk(5, 1).indices
        t_top = t.topk(5, 1).indices
        s1 += int((s_top[:, 0] == y).sum())
        t1 += int((t_top[:, 0] == y).sum())
        s5 += int((s_top == y[:, None]).any(1).sum())
        t5 += int((t_top == y[:, None]).any(1).sum())
    student.train()
    out: dict[str, float | None] = {"n": len(fs), "agreement": round(agree / max(1, len(fs)), 6)}
    labelled = int((labels >= 0).sum())
    for k, v in (("top1", s1), ("top5", s5), ("teacher_top1", t1), ("teacher_top5", t5)):
        out[k] = round(v / labelled, 6) if labelled else None  # unlabelled sources: agreement only
    return out


def _select(ds: FeatureSet | ImageDataset, keep: Tensor) -> Any:
    """The rows ``keep`` of a source's trunk maps or decoded photos (and their labels)."""
    field = "features" if isinstance(ds, FeatureSet) else "images"
    return dataclasses.replace(ds, **{field: getattr(ds, field)[keep]}, labels=ds.labels[keep])


def _subset(fs: FeatureSet, limit: int) -> FeatureSet:
    """The held-out sample of ``fs`` (:func:`~vt_explorer.data.fixed_sample`)."""
    return fs if len(fs) <= limit else _select(fs, fixed_sample(len(fs), limit))


def _without_holdout(fs: FeatureSet | ImageDataset, limit: int) -> Any:
    """``fs`` (trunk maps or decoded photos) minus its held-out sample
    (:func:`~vt_explorer.data.fixed_sample`): the training part of a source that is also
    held out. DatasetError when nothing is left to
    train on."""
    keep = torch.ones(len(fs), dtype=torch.bool)
    keep[fixed_sample(len(fs), limit)] = False
    if not keep.any():
        raise DatasetError(f"{fs.source}: all {len(fs)} images are held out (--holdout-limit "
                           f"{limit}); nothing is left to train on")  # fmt: skip
    return _select(fs, keep.nonzero().squeeze(1))


def _features(
    model: nn.Module, src: str, size: int, device, progress: bool, resize: str = "center_crop"
) -> FeatureSet:
    """Trunk features of one source at ``size`` px (centre crop, or ``resize``), cached."""
    cfg = model.cfg.replace(input_size=size)
    sized = create_model(cfg)
    sized.load_state_dict(model.state_dict())
    return compute_features(sized, src, resize, device, progress=progress)


def distill(
    args: DistillArgs,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run a distillation; returns the card written beside ``args.out`` (see module doc)."""
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    wnids = find_wnids(args)
    cfg = get_config(args.student)
    if args.overrides:
        cfg = cfg.replace(**args.overrides)
    if args.feature_weight > 0 and not args.reuse_classifier:
        raise ValueError("--feature-weight matches the teacher's 1280-d feature through the "
                         "reused classifier's projection: add --reuse-classifier")  # fmt: skip
    if args.kd_weight == 0 and args.feature_weight == 0:
        raise ValueError("--kd-weight 0 needs --feature-weight > 0: nothing would be learned")
    if args.reuse_classifier:
        cfg = cfg.replace(extra={**cfg.extra, "reuse_classifier": True})
    if args.bf16 and not bf16_supported(device):
        raise ValueError(f"--bf16: {device} does not compute bfloat16 natively (a CPU needs "
                         "AVX-512 BF16 or AMX); it would be slower than float32: drop --bf16")  # fmt: skip
    if args.real_share + args.window_share + args.image_share > 1:
        raise ValueError(f"--real-share {args.real_share} + --window-share {args.window_share} "
                         f"+ --image-share {args.image_share} is more than the whole batch")  # fmt: skip
    if args.real_views > 1 and args.real_share == 0:
        raise ValueError("--real-views chooses among the photos' own maps: add --real-share")
    if args.window_share > 0 and args.bank_size < cfg.input_size:
        raise ValueError(f"--window-share needs --bank-size of at least the model's input size "
                         f"({cfg.input_size}), not {args.bank_size}")  # fmt: skip
    if cfg.num_classes != 1000:
        raise ValueError(f"{args.student}: a student needs 1000 outputs, not {cfg.num_classes}")
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    resume_path = stem.with_name(stem.name + ".resume.pt")
    log_path = stem.with_name(stem.name + ".log.jsonl")

    torch.manual_seed(args.seed)
    student = create_model(cfg)
    student.load_pretrained()
    init = _init_from(student, args.init) if args.init else None
    teacher = teacher_model(device, fold=True, student=student)  # labels every view
    bank_sets, holdouts, real_sets = _feature_sets(args, student, wnids, device, progress)
    bank = torch.cat([fs.features for fs in bank_sets])
    views = [torch.cat([fs.features for fs in sets]) for sets in real_sets]
    real = (views[0] if len(views) == 1 else torch.stack(views)) if views else None
    hard = torch.cat([wnid_labels(fs, wnids) for fs in bank_sets])
    crops = None
    if args.image_share > 0:
        images = torch.cat([ds.images for ds in _pool_images(args, student, holdouts, bank_sets,
                                                             progress)])  # fmt: skip
        crops = ImageCrops(images, folded_trunk(student).to(device, memory_format=torch.channels_last),
                           student.cfg.mean, student.cfg.std)  # fmt: skip
    student.to(device).train()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps = max(1, args.samples // args.batch_size)
    step, curve, elapsed_before = 0, [], 0.0
    loss_avg: float | None = None
    g = torch.Generator().manual_seed(args.seed)
    if args.resume and resume_path.is_file():
        state = _read_state(resume_path, args)
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        step, curve = int(state["step"]), json.loads(state["curve"])
        elapsed_before = float(state["elapsed"])
        loss_avg = float(state["loss_avg"])
        if progress:
            print(f"resuming {stem} after {step * args.batch_size} samples")

    eval_steps = max(1, args.eval_every // args.batch_size)
    bar = tqdm(total=steps, initial=step, desc="distill", unit="step", disable=not progress)
    side = cfg.input_size // 16
    while step < steps:
        if on_step is not None:
            on_step(step)
        lr = _one_cycle(step, steps, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = distill_step(args, student, teacher, opt, bank, hard, side, g, real, crops)
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_avg:.3f}", lr=f"{lr:.2g}")
        if step % eval_steps == 0 or step == steps:
            seconds = elapsed_before + time.time() - t_start
            point = {"samples": step * args.batch_size, "loss": round(loss_avg, 5),
                     "seconds": round(seconds, 1)}  # fmt: skip
            for src, fs, labels in holdouts:
                point[Path(src).name] = holdout_metrics(student, teacher, fs, labels, device)
            curve.append(point)
            if progress:
                shown = {k: v["agreement"] for k, v in point.items() if isinstance(v, dict)}
                tqdm.write(f"{point['samples']} samples: loss {loss_avg:.3f}, agreement {shown}")
            state = {"model": student.state_dict(), "optimizer": opt.state_dict(),
                     "generator": g.get_state(), "step": step, "curve": json.dumps(curve),
                     "elapsed": seconds, "loss_avg": loss_avg,
                     "args": dataclasses.asdict(args)}  # fmt: skip
            _save_point(log_path, resume_path, point, state)
    bar.close()
    return _write_card(
        args, student, wnids, bank_sets, holdouts, curve, t_start, elapsed_before, init
    )


def _feature_sets(
    args: DistillArgs, student: nn.Module, wnids: list[str], device: torch.device, progress: bool
) -> tuple[
    list[FeatureSet], list[tuple[str, FeatureSet, Tensor]], list[list[FeatureSet]]
]:  # fmt: skip
    """The pool's trunk maps at bank size; each held-out source's at the model's own input
    size (a fixed sample of ``holdout_limit``) with its wnid labels; and, with
    ``real_share`` > 0, the pool's maps at the model's input size, one list of sets per real
    view (``real_views``: the centre crop, then fixed random-resized crops; else empty). A
    source that is both is split: the pool keeps the images that are not in its held-out
    sample."""
    held: dict[Path, int] = {}
    holdouts = holdout_sets(student, args.holdout, args.holdout_limit, wnids, device, progress,
                            sizes=held)  # fmt: skip
    bank_sets = _pool_sets(args, student, args.bank_size, held, device, progress)
    real_sets: list[list[FeatureSet]] = []
    if args.real_share > 0:  # the same photos in the same order, at the model's input size
        for k in range(args.real_views):  # view 0 the centre crop, k the k-th fixed crop
            real_sets.append(_pool_sets(args, student, student.cfg.input_size, held, device,
                                        progress, f"crop{k}" if k else "center_crop"))  # fmt: skip
    return bank_sets, holdouts, real_sets


def _pool_sets(
    args: DistillArgs, student: nn.Module, size: int, held: dict[Path, int],
    device: torch.device, progress: bool, resize: str = "center_crop",
) -> list[FeatureSet]:  # fmt: skip
    """Each ``--data`` source's trunk maps at ``size`` px (cached), minus the held-out sample
    of a source that is also held out (``held``: its image count by resolved path,
    :func:`_without_holdout`): the same photos in the same order at any size."""
    out = []
    for src in args.data:
        fs = _features(student, src, size, device, progress, resize)
        n_held = held.get(Path(src).expanduser().resolve())
        if n_held is not None:  # the same files in the same order at both sizes
            if n_held != len(fs):
                raise DatasetError(f"{src}: {len(fs)} images at {size} px, {n_held} held out")
            fs = _without_holdout(fs, args.holdout_limit)
        out.append(fs)
    return out


def holdout_sets(
    model: nn.Module, sources: Sequence[str], limit: int, wnids: list[str],
    device: torch.device, progress: bool = True, sizes: dict[Path, int] | None = None,
) -> list[tuple[str, FeatureSet, Tensor]]:  # fmt: skip
    """Each held-out source's trunk features at the model's input size (centre crop, cached),
    its fixed sample of at most ``limit`` images (:func:`~vt_explorer.data.fixed_sample`) and
    their wnid labels: what ``distill`` evaluates along the way (:func:`holdout_metrics`).
    ``sizes``, when given, receives each source's full image count by resolved path."""
    out = []
    for src in sources:
        full = _features(model, src, model.cfg.input_size, device, progress)
        if sizes is not None:
            sizes[Path(src).expanduser().resolve()] = len(full)
        fs = _subset(full, limit)
        out.append((src, fs, wnid_labels(fs, wnids)))
    return out


def _save_point(log: Path, resume: Path, point: dict[str, Any], state: dict[str, Any]) -> None:
    """Append a learning-curve point to the log and write the resume state atomically."""
    with open(log, "a") as f:
        f.write(json.dumps(point) + "\n")
    atomic_write(resume, lambda tmp: torch.save(state, tmp))


def distill_step(
    args: DistillArgs, student: nn.Module, teacher: EfficientNetLite0, opt, bank: Tensor,
    hard: Tensor, side: int, g: torch.Generator, real: Tensor | None = None,
    crops: ImageCrops | None = None,
) -> Tensor:  # fmt: skip
    """One optimisation step on a batch of fresh views (random crops of bank maps; with
    ``real`` and ``args.real_share`` > 0 that share of the batch is ``real``'s maps of the
    same photos, mirrored at random; then ``args.window_share`` of it whole-cell windows of
    the bank maps, :func:`window_views`; with ``crops``, ``args.image_share`` of it fresh
    crops of the photos through the trunk, :class:`ImageCrops`; ``args.nudge_share`` of the views, at random,
    nudged towards random classes by the teacher, :func:`nudge_views`; mixed with
    probability ``args.mix``), labelled by the teacher; returns the loss."""
    device = next(student.parameters()).device
    idx = torch.randint(0, len(bank), (args.batch_size,), generator=g)
    x = random_views(bank, idx, side, args.min_scale, g)
    n_real = round(args.real_share * args.batch_size) if real is not None else 0
    if n_real:  # crops were drawn for the whole batch: the other views do not depend on it
        if real.ndim == 5:  # (V, N, C, h, w): one of each photo's real views at random
            view = torch.randint(0, len(real), (n_real,), generator=g)
            own = real[view, idx[:n_real]].float()
        else:
            own = real[idx[:n_real]].float()
        x[:n_real] = mirror_at_random(own, g)
    n_window = min(round(args.window_share * args.batch_size), args.batch_size - n_real)
    if n_window:  # the next share: whole-cell windows of the same bank maps
        x[n_real : n_real + n_window] = window_views(bank, idx[n_real : n_real + n_window], side, g)
    x = x.to(device)
    start = n_real + n_window
    n_image = min(round(args.image_share * args.batch_size), args.batch_size - start)
    if crops is not None and n_image:  # the next share: crops of the photos, through the trunk
        x[start : start + n_image] = crops(idx[start : start + n_image], side * 16,
                                           args.min_scale, g, args.bf16)  # fmt: skip
    y = hard[idx].to(device)
    n_nudge = round(args.nudge_share * args.batch_size)
    if n_nudge:  # any of the views above, chosen at random
        rows = torch.randperm(args.batch_size, generator=g)[:n_nudge].to(device)
        target = torch.randint(0, teacher._fc.out_features, (n_nudge,), generator=g)
        x[rows] = nudge_views(teacher, x[rows], target, args.nudge_steps, args.nudge_size,
                              args.bf16)  # fmt: skip
        y[rows] = -1  # no longer a photo of its folder's class
    mixed = float(torch.rand((), generator=g)) < args.mix
    if mixed:
        x = mix_views(x, g)
    t_feature, t_logits = label_views(teacher, x, args.bf16)
    projected: list[Tensor] = []
    hook = (
        student.fc.proj.register_forward_hook(lambda _m, _i, out: projected.append(out))
        if args.feature_weight > 0
        else None
    )
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            out = student.head(x, need_weights=args.diversity_weight > 0)
    finally:
        if hook is not None:
            hook.remove()
    s_logits = out.logits.float()
    loss = args.kd_weight * kd_loss(s_logits, t_logits, args.temperature)
    if projected:
        loss = loss + args.feature_weight * F.mse_loss(projected[0].float(), t_feature)
    if args.diversity_weight > 0:
        overlap = torch.stack(
            [token_overlap(m.tokenizer_attention, args.diversity_margin) for m in out.modules]
        )
        loss = loss + args.diversity_weight * overlap.mean()
    if args.ce_weight > 0 and not mixed and (y >= 0).any():
        loss = loss + args.ce_weight * F.cross_entropy(s_logits[y >= 0], y[y >= 0])
    if not torch.isfinite(loss):
        raise ValueError(f"distillation diverged: loss {loss.item()}; lower --lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def _one_cycle(step: int, total: int, peak: float, warmup: float) -> float:
    w = max(1, int(total * warmup))
    if step < w:
        return peak * (step + 1) / w
    t = (step - w) / max(1, total - w)
    return peak * 0.5 * (1 + math.cos(math.pi * t))


#: what a ``distill`` resume state holds, and the settings a resumed run may change
DISTILL_STATE_KEYS = frozenset({"model", "optimizer", "generator", "step", "curve", "elapsed",
                                "loss_avg", "args"})  # fmt: skip
DISTILL_RUN_ONLY = frozenset({"device", "threads", "resume", "eval_every"})


def _read_state(path: Path, args: DistillArgs) -> dict[str, Any]:
    """The resume state at ``path`` (train's reader), refused for another recipe."""
    from .train import changed_settings, describe_changes, read_resume_state

    state = read_resume_state(path, DISTILL_STATE_KEYS, "vt-explorer distill")
    diff = changed_settings(state["args"], args, DISTILL_RUN_ONLY)
    if diff:
        raise ValueError(f"{path}: --resume with a different recipe ({describe_changes(diff)})")
    return state


def _describe_pool(fs: FeatureSet, holdouts, limit: int) -> dict[str, Any]:
    """A pool source as the card records it; a split source says its held-out sample left."""
    out = fs.describe()
    here = Path(fs.source).expanduser().resolve()
    if any(Path(src).expanduser().resolve() == here for src, _, _ in holdouts):
        out["minus_holdout"] = f"its held-out sample (--holdout-limit {limit}, seed 0) left out"
    return out


def _config_changes(saved: Any, now: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted field: (saved, now)} for every field of two model configs that differs (the
    class list shown by its length)."""
    import dataclasses

    a = saved if isinstance(saved, dict) else dataclasses.asdict(saved)
    b = now if isinstance(now, dict) else dataclasses.asdict(now)
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out.update(_config_changes(x, y, f"{prefix}{k}."))
        elif isinstance(x, (list, tuple)) and len(str(x)) > 80:
            out[f"{prefix}{k}"] = (f"{len(x)} entries", f"{len(y or ())} entries")
        else:
            out[f"{prefix}{k}"] = (x, y)
    return out


def _init_from(student: nn.Module, path: str) -> dict[str, Any]:
    """Load ``path``'s weights into ``student`` (``--init``); returns what the card records.
    A checkpoint of another config is refused, naming both."""
    from .checkpoint import load_checkpoint
    from .train import describe_changes

    ck = load_checkpoint(path)
    if ck.config.name != student.cfg.name:
        raise ValueError(f"--init {path}: a {ck.config.name} checkpoint, not the student "
                         f"{student.cfg.name}")  # fmt: skip
    if ck.config != student.cfg:
        diff = _config_changes(ck.config, student.cfg)
        raise ValueError(f"--init {path}: a {ck.config.name} checkpoint with other settings "
                         f"than the student's ({describe_changes(diff)})")  # fmt: skip
    student.load_state_dict(ck.model.state_dict())
    done = ck.card.get("distillation", {})
    return {
        "checkpoint": Path(path).name,
        "weights_sha256": ck.card.get("weights_sha256"),
        "samples_in_all": int(done.get("samples_in_all", done.get("samples", 0))),
    }


def _write_card(
    args, student, wnids, bank_sets, holdouts, curve, t_start, elapsed_before, init=None
):
    from .train import code_version, hardware

    wall = elapsed_before + time.time() - t_start
    metrics = curve[-1] if curve else {}
    card = {
        "teacher": {
            "model": TEACHER,
            "package": student.cfg.extra.get("pretrained"),
            "part": f"blocks {student.trunk_blocks}-15 + head, on the student's own trunk "
            "features"
            + (
                ", at output stride 16 (dilated)"
                if student.cfg.extra.get("output_stride", 32) == 16
                else ""
            ),
        },
        "wnids": wnids,
        "dataset": {
            "pool": [_describe_pool(fs, holdouts, args.holdout_limit) for fs in bank_sets],
            "holdout": [fs.describe() for _, fs, _ in holdouts],
        },
        "distillation": {
            "temperature": args.temperature,
            "ce_weight": args.ce_weight,
            "diversity_weight": args.diversity_weight,
            "diversity_margin": args.diversity_margin,
            "reuse_classifier": args.reuse_classifier,
            "kd_weight": args.kd_weight,
            "feature_weight": args.feature_weight,
            "views": "random-resized crops of the trunk's feature map (area "
            f"{args.min_scale}-1, aspect 3/4-4/3) + flips, MixUp/CutMix with p={args.mix}"
            + (
                f"; a share of {args.real_share} of each batch is the photos' own "
                f"{student.cfg.input_size}-px maps, mirrored"
                + (
                    f" (the centre crop and {args.real_views - 1} fixed random-resized crops "
                    "of each photo, area 25-100%)"
                    if args.real_views > 1
                    else ""
                )
                if args.real_share
                else ""
            )
            + (
                f"; a share of {args.window_share} is whole-cell windows of the bank maps "
                f"at {student.cfg.input_size // 16}x{student.cfg.input_size // 16}, mirrored"
                if args.window_share
                else ""
            )
            + (
                f"; a share of {args.image_share} is fresh random-resized crops of the photos "
                f"in image space (area {args.min_scale}-1 of the {args.bank_size}-px photo), "
                "mirrored, through the trunk"
                if args.image_share
                else ""
            )
            + (
                f"; a share of {args.nudge_share} is nudged towards random classes by the "
                f"teacher's gradient ({args.nudge_steps} signed steps of {args.nudge_size} std)"
                if args.nudge_share
                else ""
            ),
            "samples": (curve[-1]["samples"] if curve else 0),
            "bank_size": args.bank_size,
        },
        "recipe": dataclasses.asdict(args),
        "learning_curve": curve,
        "metrics": {"holdout": {k: v for k, v in metrics.items() if isinstance(v, dict)}},
        "eval": {"flip_tta": False},
        "finished": True,
        "train_seconds": round(wall, 1),
        "hardware": hardware(),
        "command": shlex.join(["vt-explorer", *sys.argv[1:]]),
        "code_version": code_version(),
        "torch_version": torch.__version__,
    }
    if init is not None:
        card["init"] = init
        card["distillation"]["samples_in_all"] = (
            init["samples_in_all"] + card["distillation"]["samples"]
        )
    save_checkpoint(student.to("cpu").eval(), args.out, card, resize="center_crop")
    Path(args.out).with_name(Path(args.out).name + ".resume.pt").unlink(missing_ok=True)
    return card


def parse_sources(values: Sequence[str]) -> list[str]:
    """Check each source path exists (folders or archives); DatasetError naming a missing one."""
    from .data import check_source

    return [str(check_source(v)) for v in values]
