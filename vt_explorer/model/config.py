"""Architecture configs: plain frozen dataclasses, JSON round-trippable.

The registry (`vt_explorer.model.registry`) is the single source of named configs; a
checkpoint card stores ``ModelConfig.to_dict()`` so the exact model can be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class VTConfig:
    """Shape of a stage of VT modules (VT_PAPER.md sections 1-5).

    Defaults follow the paper where it is explicit; comments say why otherwise.
    """

    num_modules: int = 2  # R18 last stage had 2 blocks -> 2 VT modules
    tokens: int = 16  # L: the paper's default (ablation: 16/32/64 all similar)
    token_dim: int | None = None  # C_T; None = C (ICCV: no value projection)
    # the tokenizer of modules 2..: a kind registered in tokenizer.TOKENIZERS
    variant: str = "recurrent"
    transformer: Literal["mhsa", "paper"] = "mhsa"  # pre-norm multi-head, or eq. 3-4 literal
    depth: int = 1  # transformer layers per module (paper: 1)
    heads: int = 1  # heads of the token self-attention (early paper: 16)
    qk_ratio: float = 0.5  # q/k width = C_T * qk_ratio (early paper: C_T -> C_T/2)
    value_proj: bool = False  # V and output projections in the token attention
    mlp_ratio: float = 1.0  # hidden width of F1/F2 = C_T * mlp_ratio (paper: C x C)
    projector_dim: int | None = None  # width of W_Q/W_K in eq. 5; None = C
    scaled: bool = True  # divide dot products by sqrt(d) (eq. 3 and 5 omit it)
    pos_encoding: bool = False  # early-version token position encoding (section 2)
    pos_grid: int = 14  # attention maps resized to pos_grid x pos_grid
    pos_dim: int = 32  # C_P
    head_norm: bool = True  # LayerNorm on the averaged tokens before the classifier
    recurrent_norm: bool = False  # LayerNorm on T_in before eq. 2's W_{T->R} (not in the paper)
    # eq. 2's scores divided by sqrt(C) (not in the paper): soft maps at the start for wide C
    recurrent_scaled: bool = False
    # LayerScale (CaiT) on every residual branch (eq. 3, 4, 5), starting at this gain; None:
    # the paper's plain residuals. Not in the paper: for tokens in a pretrained feature space
    layer_scale: float | None = None

    def tokenizer_kinds(self) -> list[str]:
        """Tokenizer type of each module: first filter (no tokens to read yet), then
        ``variant``."""
        return ["filter"] + [self.variant] * (self.num_modules - 1)


@dataclass(frozen=True)
class ModelConfig:
    """A complete architecture: backbone, optional VT stage, head, and its data config.

    ``family`` picks the builder: ``resnet`` (conv baseline, and VT-ResNet when ``vt`` is
    set), ``seed`` (the seed's ViTResNet design, defects fixed), ``fpn`` (a ResNet with a
    conv FPN or a VT-FPN neck; not a classifier).
    """

    name: str
    family: Literal["resnet", "seed", "fpn", "efficientnet"] = "resnet"
    stem: Literal["cifar", "imagenet"] = "cifar"  # 3x3 conv / 7x7 conv + max-pool
    block: Literal["basic", "bottleneck"] = "basic"
    layers: tuple[int, ...] = (3, 3, 3)  # blocks per stage (conv stages, VT replaces last)
    widths: tuple[int, ...] = (16, 32, 64)
    vt: VTConfig | None = None
    num_classes: int = 10
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    classes: tuple[str, ...] | None = CIFAR10_CLASSES
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific knobs
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; raises ValueError on unknown or missing fields."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        d = dict(data)
        vt = d.get("vt")
        if vt is not None:
            vt_known = {f.name for f in dataclasses.fields(VTConfig)}
            bad = set(vt) - vt_known
            if bad:
                raise ValueError(f"unknown VT config fields: {sorted(bad)}")
            d["vt"] = VTConfig(**vt)
        for key in ("layers", "widths", "mean", "std", "classes"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if "name" not in d:
            raise ValueError("model config has no 'name'")
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        """Copy with fields changed. Keys that name a VTConfig field change ``vt``.

        Raises ValueError for a key that is neither a model nor a VT field.
        """
        model_fields = {f.name for f in dataclasses.fields(self)}
        vt_fields = {f.name for f in dataclasses.fields(VTConfig)}
        top = {k: v for k, v in changes.items() if k in model_fields}
        vt_changes = {k: v for k, v in changes.items() if k not in model_fields}
        bad = set(vt_changes) - vt_fields
        if bad:
            raise ValueError(f"unknown config keys: {sorted(bad)}")
        if vt_changes:
            if self.vt is None and "vt" not in top:
                raise ValueError(f"{self.name} has no VT stage; cannot set {sorted(vt_changes)}")
            base = top.get("vt", self.vt)
            top["vt"] = dataclasses.replace(base, **vt_changes)
        if "num_classes" in top and "classes" not in top:
            top["classes"] = None
        return dataclasses.replace(self, **top)
