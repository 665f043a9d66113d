"""A distillation run's recipe (:class:`DistillArgs`, one ``vt-explorer distill`` flag per
field) and its validation (:func:`check_recipe`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

# absolute: ruff knows flag() as vt_explorer.flags.flag (pyproject: extend-immutable-calls)
from vt_explorer.flags import POSITIVE, REQUIRED, UserError, flag, float_in, int_in

from ..device import bf16_supported
from ..model.config import ModelConfig


@dataclass
class DistillArgs:
    """One distillation run. Each field is a ``vt-explorer distill`` flag: its default and
    help are written here once (:func:`vt_explorer.flags.flag`)."""

    data: list[str] = flag(
        REQUIRED,
        "pool photos: folders or .tar.gz of class folders (wnid "
        "folders give hard labels for --ce-weight; other folder names are "
        "unlabelled)",
        nargs="+",
        metavar="PATH",
    )
    out: str = flag(REQUIRED, "checkpoint path without suffix", metavar="OUT")
    holdout: list[str] = flag(
        None,
        "sources never trained on, evaluated along the way (wnid "
        "folders also give top-1/top-5; others agreement only); one also "
        "given as --data is split: its held-out sample leaves the pool",
        nargs="*",
        metavar="PATH",
        default_factory=list,
    )
    holdout_limit: int = flag(
        2000,
        "images per held-out source, a fixed sample (seed 0; "
        "eval --sample N measures the same images)",
        type=POSITIVE,
    )
    student: str = flag(
        "vt_lite0_imagenet",
        "student config: vt_lite0_imagenet[_filter] "
        "(the paper's placement) or vt_lite0_os16_CUT[_filter] (CUT: block15, "
        "head_conv, pool; vt-explorer info lists them)",
    )
    wnids: str | None = flag(
        None,
        "the 1000 wnids in class order (default: imagenet_wnids.txt beside a data source)",
        metavar="FILE",
    )
    samples: int = flag(300_000, "training views in all", type=POSITIVE)
    batch_size: int = flag(128, "views per step", type=POSITIVE)
    lr: float = flag(
        2e-3,
        "AdamW peak learning rate, one-cycle (warm-up from lr/25, cosine down to lr/1e4)",
        type=float_in(0, 1, lo_open=True),
    )
    weight_decay: float = flag(0.05, "AdamW weight decay", type=float_in(0, 10))
    warmup: float = flag(0.05, "warm-up fraction of steps", type=float_in(0, 1))
    kd_weight: float = flag(
        1.0,
        "weight of the KL term (0: feature matching alone, with --feature-weight)",
        type=float_in(0, 100),
    )
    temperature: float = flag(
        1.0, "softening of both outputs in the KL term", type=float_in(0, 100, lo_open=True)
    )
    ce_weight: float = flag(
        0.0, "weight of cross-entropy on wnid folder labels (0: KL only)", type=float_in(0, 100)
    )
    diversity_weight: float = flag(
        0.0,
        "weight of the token-diversity term: mean pairwise "
        "cosine similarity of each module's token maps (0: the "
        "paper's loss; > 0 fights tokens collapsing onto one "
        "spot or onto one map)",
        type=float_in(0, 100),
    )
    diversity_margin: float = flag(
        0.0,
        "with --diversity-weight: penalise only each image's "
        "map similarity above this margin (a hinge; 0: all of it)",
        type=float_in(0, 1),
    )
    balance_weight: float = flag(
        0.0,
        "weight of the group-balance term: how far each image's "
        "effective number of token groups (the share of the pixels "
        "each token claims, soft) falls short of --balance-groups "
        "(0: off; not in the paper)",
        type=float_in(0, 100),
    )
    balance_groups: float = flag(
        8.0,
        "with --balance-weight: the effective number of groups an image's tokens "
        "should reach (at most the number of tokens)",
        type=float_in(1, 1024),
    )
    reuse_classifier: bool = flag(
        False,
        "classifier reuse (after SimKD): the student's pooled "
        "tokens are projected to 1280-d and read by the teacher's "
        "own classifier, frozen; trained by the same KL loss (not "
        "the paper's head)",
    )
    feature_weight: float = flag(
        0.0,
        "weight of feature matching (needs --reuse-classifier or a "
        "pool student): mean squared error between the 1280-d "
        "feature the classifier reads (the projection, or the token "
        "average) and the teacher's pooled feature (SimKD)",
        type=float_in(0, 1000),
    )
    bf16: bool = flag(
        False,
        "label views and run the student's forward pass in bfloat16 "
        "(autocast; weights, loss and held-out measures stay float32): faster "
        "on CPUs with AVX-512 BF16 or AMX and on recent GPUs; the teacher's "
        "top-1 changes on a few photos in 100",
    )
    bank_size: int = flag(
        288,
        "photos enter the trunk at this size once; views are crops of "
        "the resulting map (288: 18x18)",
        type=int_in(64, 1024),
    )
    min_scale: float = flag(
        0.08, "smallest crop area as a fraction of the map", type=float_in(0.01, 1)
    )
    real_share: float = flag(
        0.0,
        "share of each batch taken from the photos' own trunk maps "
        "at the model's input size (224 px: 14x14, mirrored at random) "
        "instead of crops of the bank: resampled crops are smoother than "
        "the trunk's own maps, on which the student is evaluated",
        type=float_in(0, 1),
    )
    real_views: int = flag(
        1,
        "with --real-share: the photos' own maps per photo: the centre "
        "crop, plus real_views - 1 fixed random-resized crops of the photo "
        "(area 25 to 100 percent), each through the trunk once (cached)",
        type=int_in(1, 16),
    )
    window_share: float = flag(
        0.0,
        "share of each batch taken as whole-cell windows of the "
        "bank maps at the model's map size (an 18x18 bank map has 25 "
        "14x14 windows: crops of a 224-px square of the 288-px photo, "
        "not resampled, so with the trunk's own statistics), mirrored "
        "at random, instead of resampled crops",
        type=float_in(0, 1),
    )
    image_share: float = flag(
        0.0,
        "share of each batch taken as fresh random-resized crops "
        "of the photos in image space (--min-scale; the photos decoded "
        "once at --bank-size and kept in memory as uint8), each through "
        "the frozen trunk at the model's input size, mirrored at random: "
        "unlimited distinct views with the trunk's own statistics, at a "
        "trunk pass per view (cheap on a GPU, slow on a CPU: "
        "benchmarks/bench_distill.py)",
        type=float_in(0, 1),
    )
    nudge_share: float = flag(
        0.0,
        "share of each batch nudged, before the teacher labels it, "
        "towards a random one of the 1000 classes by the teacher's own "
        "gradient (--nudge-steps signed steps): views that show the "
        "teacher's answers for classes the pool lacks",
        type=float_in(0, 1),
    )
    nudge_steps: int = flag(
        2, "with --nudge-share: signed-gradient steps per nudged view", type=int_in(1, 100)
    )
    nudge_size: float = flag(
        0.05,
        "with --nudge-share: each step's size, in units of the map's own standard deviation",
        type=float_in(0, 10, lo_open=True),
    )
    mix: float = flag(
        0.5,
        "probability that a batch is mixed (half MixUp, half CutMix; "
        "Beyer et al.'s recipe; the CPU scripts use 0, docs/distillation.md)",
        type=float_in(0, 1),
    )
    eval_every: int = flag(
        50_000, "samples between held-out evaluations and resume states", type=POSITIVE
    )
    seed: int = flag(0, "seed", type=int_in(0, 2**31 - 1))
    device: str = flag("auto", "auto (CUDA, MPS, CPU), cpu, cuda...")
    threads: int | None = flag(None, "torch CPU threads (default: all)", type=int_in(1, 1024))
    resume: bool = flag(False, "continue from OUT.resume.pt (the same recipe)")
    init: str | None = flag(
        None,
        "start from this checkpoint's weights (the same student "
        "config, e.g. a shipped student): a second stage with its own "
        "one-cycle schedule, to lengthen a run; the card records it",
        metavar="CHECKPOINT",
    )
    #: ``--set KEY=VALUE``: fields of the student's config changed (as ``train``'s)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


#: settings a resumed run may change (where and how fast it runs, not what it learns)
RUN_ONLY = frozenset({"device", "threads", "resume", "eval_every"})


def check_recipe(args: DistillArgs, cfg: ModelConfig, device: torch.device) -> None:
    """Refuse, before any work and in one line (:class:`UserError`), a recipe that cannot
    run or would learn nothing: for the student config ``cfg`` on ``device``."""
    if (
        args.feature_weight > 0
        and not args.reuse_classifier
        and not cfg.extra.get("lite0_classifier")
    ):
        raise UserError(
            "--feature-weight matches the teacher's 1280-d feature through the "
            "reused classifier's projection (or Lite0's own classifier, cut pool): "
            f"add --reuse-classifier, or pick a pool student, not {args.student}"
        )
    if args.balance_weight > 0 and cfg.vt is not None and args.balance_groups > cfg.vt.tokens:
        raise UserError(
            f"--balance-groups {args.balance_groups:g}: {args.student} has only "
            f"{cfg.vt.tokens} tokens per module"
        )
    if args.kd_weight == 0 and args.feature_weight == 0:
        raise UserError("--kd-weight 0 needs --feature-weight > 0: nothing would be learned")
    if args.bf16 and not bf16_supported(device):
        raise UserError(
            f"--bf16: {device} does not compute bfloat16 natively (a CPU needs AVX-512 BF16 "
            "or AMX); it would be slower than float32: drop --bf16"
        )
    if args.real_share + args.window_share + args.image_share > 1:
        raise UserError(
            f"--real-share {args.real_share} + --window-share {args.window_share} + "
            f"--image-share {args.image_share} is more than the whole batch"
        )
    if args.real_views > 1 and args.real_share == 0:
        raise UserError("--real-views chooses among the photos' own maps: add --real-share")
    if args.window_share > 0 and args.bank_size < cfg.input_size:
        raise UserError(
            f"--window-share needs --bank-size of at least the model's input size "
            f"({cfg.input_size}), not {args.bank_size}"
        )
    if cfg.num_classes != 1000:
        raise UserError(f"{args.student}: a student needs 1000 outputs, not {cfg.num_classes}")
