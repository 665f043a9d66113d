"""A training run's recipe: :class:`TrainArgs`, one ``vt-explorer train`` flag per field,
and the fields a resumed run may change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .flags import POSITIVE, REQUIRED, flag, float_in, int_in


@dataclass
class TrainArgs:
    """Every knob of a training run. Each field is a ``vt-explorer train`` flag: its default
    and help are written here once (:func:`vt_explorer.flags.flag`)."""

    config: str = flag(REQUIRED, "registered model config (vt-explorer info)")
    train: str = flag(REQUIRED, "training images", metavar="PATH")
    out: str = flag(REQUIRED, "checkpoint path without suffix", metavar="OUT")
    val: str | None = flag(None, "evaluation images (same class folders)", metavar="PATH")
    epochs: int = flag(15, "passes over the data", type=POSITIVE)
    batch_size: int = flag(128, "images per step and process", type=POSITIVE)
    lr: float = flag(0.1, "peak one-cycle learning rate", type=float_in(0, 100, lo_open=True))
    momentum: float = flag(0.9, "Nesterov momentum", type=float_in(0, 1, hi_open=True))
    optimizer: str = flag(
        "sgd",
        "SGD with Nesterov momentum or AdamW (try --lr 1e-3 --weight-decay 0.05)",
        choices=("sgd", "adamw"),
    )
    weight_decay: float = flag(5e-4, "on weights only", type=float_in(0, 10))
    label_smoothing: float = flag(0.1, "label smoothing", type=float_in(0, 1, hi_open=True))
    warmup: float = flag(0.2, "fraction of steps spent warming up", type=float_in(0, 1))
    seed: int = flag(0, "seed; CPU runs are deterministic", type=int_in(0, 2**31 - 1))
    device: str = flag("auto", "auto (CUDA, MPS, CPU), cpu, cuda, cuda:1...")
    workers: int = flag(
        2, "threads decoding images on the first read of a dataset", type=int_in(1, 64)
    )
    flip_tta: bool = flag(True, "no flip test-time augmentation at evaluation", name="--no-tta")
    amp: bool = flag(True, "no bf16 autocast on CUDA (the CPU never uses it)")
    compile: bool = flag(False, "torch.compile the model")
    threads: int | None = flag(None, "torch CPU threads (default: all)", type=int_in(1, 1024))
    resume: bool = flag(
        False,
        "continue from OUT.resume.pt; refused when the recipe or the "
        "classes differ from the interrupted run's (the refusal lists what "
        "differs)",
    )
    resume_anyway: bool = flag(
        False,
        "with --resume: accept a changed recipe; the card then "
        "records, per epoch, which settings changed from which epoch "
        "on",
    )
    resize: str = flag(
        "stretch",
        "how images become the config's input square: the whole "
        "image (stretch) or short side to 8/7 of it and the centre cut out "
        "(center_crop); the card records it, so eval, predict and the app do "
        "the same",
        choices=("stretch", "center_crop"),
    )
    pretrained: bool = flag(
        True, "start a config with a pretrained backbone (vt_lite0...) from random weights"
    )
    finetune: bool = flag(
        False,
        "train the pretrained backbone too (slow on a CPU; default: "
        "frozen, its features computed once and cached, and only the VT "
        "head trained)",
    )
    feature_flip: bool = flag(
        True, "no random mirroring of cached feature maps (the augmentation of head training)"
    )
    backbone_lr_scale: float = flag(
        1.0,
        "with --finetune: the pretrained trunk learns at F x "
        "the schedule's rate (0.1 keeps ImageNet features while "
        "a new head learns fast)",
        type=float_in(0, 100),
        metavar="F",
    )
    decode_size: int | None = flag(
        None,
        "decode training images at NxN and enlarge each batch "
        "to the input size on the device (bilinear configs; "
        "images or a frozen trunk's cached features): for small "
        "sources like CIFAR's 32x32 it skips decoding 224x224 "
        "copies (minutes, 7.5 GB for CIFAR-10 train); the final "
        "evaluation still decodes as eval does",
        type=int_in(8, 4096),
        metavar="N",
    )
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # --set KEY=VALUE


#: TrainArgs fields that say where and how fast a run goes, not what it learns: a resumed
#: run may change them freely
RUN_ONLY_FIELDS = frozenset(
    {"out", "val", "device", "workers", "threads", "compile", "resume", "resume_anyway"}
)
