"""One registry of named model configs (timm-style), the single source of model shapes.

    >>> from vt_explorer.model import create_model, list_models
    >>> model = create_model("vt_resnet20")            # CIFAR VT-ResNet-20, recurrent
    >>> model = create_model("vt_resnet18", num_classes=5)

The app, the CLI, the tests and training all build models through :func:`create_model`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, VTConfig
from .efficientnet import PRETRAINED_PACKAGE, EfficientNetLite0, VTLite0
from .fpn import ResNetFPN
from .resnet import VTResNet
from .seed import SeedViTResNet

_REGISTRY: dict[str, ModelConfig] = {}


def imagenet_classes() -> tuple[str, ...] | None:
    """The 1000 ImageNet class names in index order (torchvision's list), or None if absent."""
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES
    except ImportError:
        return None
    return tuple(_IMAGENET_CATEGORIES) if len(_IMAGENET_CATEGORIES) == 1000 else None


def register(cfg: ModelConfig) -> ModelConfig:
    """Add ``cfg`` to the registry under ``cfg.name`` (names are unique)."""
    if cfg.name in _REGISTRY:
        raise ValueError(f"model {cfg.name!r} is already registered")
    _REGISTRY[cfg.name] = cfg
    return cfg


def list_models(task: str | None = None) -> list[str]:
    """Registered names in registration order; ``task`` = "classification" or "fpn" filters."""
    names = list(_REGISTRY)
    if task is None:
        return names
    if task not in ("classification", "fpn"):
        raise ValueError(f"unknown task {task!r}")
    return [n for n in names if (_REGISTRY[n].family == "fpn") == (task == "fpn")]


def get_config(name: str) -> ModelConfig:
    """The registered config called ``name``; KeyError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_REGISTRY)}") from None


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture a config describes (random weights)."""
    if cfg.family == "resnet":
        return VTResNet(cfg)
    if cfg.family == "seed":
        return SeedViTResNet(cfg)
    if cfg.family == "fpn":
        return ResNetFPN(cfg)
    if cfg.family == "efficientnet":
        return VTLite0(cfg) if cfg.vt is not None else EfficientNetLite0(cfg)
    raise ValueError(f"unknown model family {cfg.family!r}")


def create_model(name: str | ModelConfig, **overrides: Any) -> nn.Module:
    """Build a registered model by name (or from a config), with optional field overrides.

    Overrides may name any :class:`ModelConfig` field (``num_classes=5``) or any
    :class:`VTConfig` field (``tokens=32``, ``variant="filter"``, ``transformer="paper"``).
    """
    cfg = get_config(name) if isinstance(name, str) else name
    if overrides:
        cfg = cfg.replace(**overrides)
    return build_model(cfg)


# --- CIFAR scale (32x32 input) -------------------------------------------------------------
# ResNet-20 (He et al. 2016): 16/32/64 channels, 3 blocks per stage. The VT variants replace
# stage 3 (3 blocks) by 3 VT modules working at stage 2's 16x16 resolution on C = 32 channels.
_CIFAR_VT = VTConfig(
    num_modules=3,  # as many modules as the replaced stage had blocks
    tokens=16,  # L = 16 as in the paper
    token_dim=128,  # C_T = 2x the replaced stage's 64 channels (R18: 1024 = 2 x 512)
    heads=4,
    qk_ratio=0.5,  # early paper: q/k reduced to C_T / 2
    mlp_ratio=2.0,
)
register(
    ModelConfig(
        name="resnet20",
        description="CIFAR ResNet-20, the conv baseline (stage 3 = 3 basic blocks at 8x8)",
    )
)
register(
    ModelConfig(
        name="vt_resnet20",
        vt=_CIFAR_VT,
        description="CIFAR VT-ResNet-20: stage 3 -> 3 VT modules at 16x16 (filter, recurrent x2)",
    )
)
register(
    ModelConfig(
        name="vt_resnet20_filter",
        vt=VTConfig(**{**_CIFAR_VT.__dict__, "variant": "filter"}),
        description="CIFAR VT-ResNet-20 with every tokenizer filter-based",
    )
)
register(
    ModelConfig(
        name="vit_resnet_seed",
        family="seed",
        extra={"tokens": 8, "token_dim": 128, "depth": 6, "heads": 8, "mlp_dim": 256},
        description="The seed's ViTResNet design (class token, 6x8-head transformer), fixed",
    )
)

# --- ImageNet scale (224x224 input) --------------------------------------------------------
_IMAGENET = dict(
    stem="imagenet",
    widths=(64, 128, 256, 512),
    num_classes=1000,
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    classes=None,
)
# "VT-C512-L16-CT1024": C = 256 (stage 3 output, 14x14), L = 16, C_T = 1024; early-version
# transformer widths (16 heads, q/k at C_T / 2, F1/F2 of C_T x C_T).
_IMAGENET_VT = VTConfig(num_modules=2, tokens=16, token_dim=1024, heads=16, qk_ratio=0.5)
for _depth, _layers in (("18", (2, 2, 2, 2)), ("34", (3, 4, 6, 3))):
    register(
        ModelConfig(
            name=f"resnet{_depth}",
            layers=_layers,
            **_IMAGENET,
            description=f"ResNet-{_depth}, equal to torchvision's (keys, params, FLOPs)",
        )
    )
    register(
        ModelConfig(
            name=f"vt_resnet{_depth}",
            layers=_layers,
            vt=VTConfig(**{**_IMAGENET_VT.__dict__, "num_modules": _layers[-1]}),
            **_IMAGENET,
            description=f"VT-ResNet-{_depth}: stage 4 -> {_layers[-1]} VT modules at 14x14",
        )
    )

# --- VT-FPN vs conv FPN on ResNet-50 (512x512 input) ------------------------------------------
for _neck, _desc in (("conv", "conventional FPN (laterals + 3x3 outputs)"), ("vt", "VT-FPN")):
    register(
        ModelConfig(
            name=f"fpn_r50_{_neck}",
            family="fpn",
            block="bottleneck",
            layers=(3, 4, 6, 3),
            **{**_IMAGENET, "input_size": 512, "num_classes": 0},
            extra={"neck": _neck, "out_channels": 256, "tokens": 8, "token_dim": 1024},
            description=f"ResNet-50 + {_desc}",
        )
    )

# --- EfficientNet-Lite0, ImageNet-pretrained (224x224 input) -----------------------------------
# The plain classifier (ImageNet head) and VT-Lite0: blocks 11-15 and the 1280-wide head conv
# (stride 32) replaced by VT modules at stride 16 (14x14, C = 112), as the paper does for
# ResNets. Two modules (filter, then recurrent or filter) with C_T = 256: measured on the
# 2-core CPU, 3 modules at C_T = 384 train the head 2.5x slower (320 vs 790 img/s).
_LITE0 = dict(
    family="efficientnet",
    layers=(),
    widths=(),
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)
# bilinear resizing (as the weights were trained: 7 of the nine photos right; bicubic: 6)
_LITE0_EXTRA = {"pretrained": PRETRAINED_PACKAGE, "padding": "same", "interpolation": "bilinear"}
register(
    ModelConfig(
        name="efficientnet_lite0",
        num_classes=1000,
        classes=imagenet_classes(),
        extra={**_LITE0_EXTRA, "dropout": 0.2},
        **_LITE0,
        description="EfficientNet-Lite0 with its ImageNet head (weights: pip package "
        f"{PRETRAINED_PACKAGE})",
    )
)
_LITE0_VT = VTConfig(
    num_modules=2,
    tokens=16,
    token_dim=256,
    heads=4,
    qk_ratio=0.5,
    mlp_ratio=2.0,
    recurrent_norm=True,  # keeps recurrent maps from collapsing (see RecurrentTokenizer)
)
for _variant, _what in (("recurrent", "filter, recurrent"), ("filter", "filter x2")):
    register(
        ModelConfig(
            name="vt_lite0" + ("" if _variant == "recurrent" else "_filter"),
            vt=VTConfig(**{**_LITE0_VT.__dict__, "variant": _variant}),
            extra={**_LITE0_EXTRA, "freeze_backbone": True},
            **_LITE0,
            description=f"VT-Lite0: ImageNet Lite0 blocks 0-10 (frozen) + 2 VT modules at "
            f"stride 16, 14x14 at 224x224 ({_what})",
        )
    )
# ImageNet students distilled from the Lite0 classifier (vt-explorer distill): the same
# trunk and VT stage as VT-Lite0, with ImageNet's 1000 classes
for _variant, _what in (("recurrent", "filter, recurrent"), ("filter", "filter x2")):
    register(
        ModelConfig(
            name="vt_lite0_imagenet" + ("" if _variant == "recurrent" else "_filter"),
            vt=VTConfig(**{**_LITE0_VT.__dict__, "variant": _variant}),
            num_classes=1000,
            classes=imagenet_classes(),
            extra={**_LITE0_EXTRA, "freeze_backbone": True},
            **_LITE0,
            description=f"VT-Lite0 for ImageNet's 1000 classes ({_what}), distilled from the "
            "Lite0 classifier's blocks 11-15 and head on its own frozen trunk",
        )
    )

# --- VT on Lite0's whole pretrained trunk, run at output stride 16 ---------------------------
# The stride-32 stage runs at stride 16 (block 11 at stride 1, blocks 12-15 dilated by 2; the
# same weights, 77.0% ImageNet top-1 as plain), so maps stay 14x14 at 224 px and the VT can
# be placed later than the paper's cut (extra["cut"], efficientnet.LITE0_CUTS): it then has
# less of Lite0 to learn from the pool. One pair per placement; docs/distillation.md compares
# them and README.md says which pair the app shows by default.
_OS16_EXTRA = {**_LITE0_EXTRA, "freeze_backbone": True, "output_stride": 16}
_OS16_PLACEMENTS = {
    # cut: (what the VT reads, VT overrides, extra overrides)
    "block15": (
        "blocks 0-14 (192 ch) and replaces block 15, the head conv, pool and classifier",
        {},
        {},
    ),
    "head_conv": ("block 15 (320 ch) and replaces the head conv, pool and classifier", {}, {}),
    # the tokens live in the head conv's 1280-wide space (no value projection, C_T = C) and
    # Lite0's classifier reads their average, frozen: the VT replaces only global average
    # pooling. eq. 5's W_Q/W_K at 128 wide and F1/F2 at C_T / 2 keep the module small;
    # LayerScale at 1e-4 starts every residual branch near zero, so the untrained student is
    # Lite0 with its average pooling replaced by the token average (measured: with plain
    # residuals the random branches push the tokens off the classifier's space and 100k
    # views reach only 70.7% agreement on Imagenette-val). The recurrent tokenizer's scores
    # are divided by sqrt(C): unscaled, its 1280-wide filters start as one-pixel maps
    # (51% agreement before training, 80% after 50k views against 99% for the filter one).
    "pool": (
        "the head conv's 1280-wide features (kept, frozen) and replaces only the "
        "global average pooling; Lite0's classifier reads the token average, frozen",
        {
            "token_dim": None,
            "projector_dim": 128,
            "mlp_ratio": 0.5,
            "qk_ratio": 0.25,
            "head_norm": False,
            "layer_scale": 1e-4,
            "recurrent_scaled": True,
        },
        {"lite0_classifier": True},
    ),
}
for _cut, (_reads, _vt_over, _extra_over) in _OS16_PLACEMENTS.items():
    for _variant, _what in (("recurrent", "filter, recurrent"), ("filter", "filter x2")):
        register(
            ModelConfig(
                name=f"vt_lite0_os16_{_cut}" + ("" if _variant == "recurrent" else "_filter"),
                # recurrent_scaled only where there is a recurrent tokenizer (filter x2
                # has none, and its shipped card says False)
                vt=VTConfig(
                    **{
                        **_LITE0_VT.__dict__,
                        **_vt_over,
                        "variant": _variant,
                        "recurrent_scaled": _vt_over.get("recurrent_scaled", False)
                        and _variant == "recurrent",
                    }
                ),
                num_classes=1000,
                classes=imagenet_classes(),
                extra={**_OS16_EXTRA, "cut": _cut, **_extra_over},
                **_LITE0,
                description=f"VT on ImageNet Lite0 at output stride 16 ({_what}): the VT "
                f"reads {_reads}; distilled from Lite0",
            )
        )
