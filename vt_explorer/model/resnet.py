"""ResNet building blocks (torchvision's layout and state-dict keys) and the VT-ResNet classifier.

``VTResNet(cfg)`` is a plain ResNet when ``cfg.vt`` is None (its keys and numbers equal
torchvision's for resnet18/34), and a VT-ResNet otherwise: the last conv stage is replaced
by ``cfg.vt.num_modules`` VT modules working at the previous stage's resolution, and the
classifier averages the final tokens (VT_PAPER.md section 5).
"""

from __future__ import annotations

from torch import Tensor, nn

from .classifier import TokenAverageHead, TracedClassifier, init_weights
from .config import ModelConfig
from .trace import Trace
from .vt import VTStage


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; (B, Cin, H, W) -> (B, C, H/s, W/s). torchvision keys."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(conv1x1(cin, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels) with a residual. torchvision (v1.5) keys."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(conv1x1(cin, out, stride), nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


def make_layer(block: str, cin: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A ResNet stage of ``blocks`` blocks, the first one strided."""
    cls = BLOCKS[block]
    mods = [cls(cin, planes, stride)]
    mods += [cls(planes * cls.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*mods)


class ResNetTrunk(nn.Module):
    """Stem and the first ``num_stages`` conv stages of a ResNet, attributes named as in
    torchvision (``conv1``, ``bn1``, ``maxpool``, ``layer1``...).

    CIFAR stem: 3x3 conv, stride 1. ImageNet stem: 7x7 conv stride 2 + 3x3 max-pool.
    Stage i > 1 halves the resolution. Subclasses add what follows.
    """

    def _build_trunk(self, cfg: ModelConfig, num_stages: int) -> int:
        """Create stem + stages; return the output channels."""
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            cin = 64
        elif cfg.stem == "cifar":
            cin = cfg.widths[0]
            self.conv1 = conv3x3(3, cin)
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}")
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if cfg.stem == "imagenet" else nn.Identity()
        self.num_stages = num_stages
        expansion = BLOCKS[cfg.block].expansion
        for i in range(num_stages):
            stride = 1 if i == 0 else 2
            layer = make_layer(cfg.block, cin, cfg.widths[i], cfg.layers[i], stride)
            setattr(self, f"layer{i + 1}", layer)
            cin = cfg.widths[i] * expansion
        return cin

    def _init_weights(self) -> None:
        """torchvision's initialisation (:func:`~vt_explorer.model.classifier.init_weights`)."""
        init_weights(self)

    def _run_trunk(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def _trunk_stages(self) -> dict[str, list[str]]:
        stages = {"stem": ["conv1", "bn1"]}
        for i in range(self.num_stages):
            stages[f"layer{i + 1}"] = [f"layer{i + 1}"]
        return stages

    def _trunk_randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """The conv stages from the last down, then the stem."""
        layers = [(f"layer{i}", [f"layer{i}."]) for i in range(self.num_stages, 0, -1)]
        return [*layers, ("stem", ["conv1.", "bn1."])]


class VTResNet(TokenAverageHead, ResNetTrunk, TracedClassifier):
    """ResNet classifier; with ``cfg.vt`` its last stage is a VT stage (VT_PAPER.md section 5).

    Shapes: images (B, 3, S, S) -> logits (B, num_classes). Conv: features after the last
    stage are average-pooled into ``fc``. VT: the stage before the replaced one gives X
    (B, C, H, W); VT modules produce tokens (B, L, C_T); their mean (B, C_T) goes through
    ``head_norm`` (LayerNorm, optional) into ``fc``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = len(cfg.layers)
        if cfg.vt is None:
            channels = self._build_trunk(cfg, n)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            head_dim = channels
        else:
            channels = self._build_trunk(cfg, n - 1)
            self.vt = VTStage(channels, cfg.vt)
            head_dim = self.vt.token_dim
            self.head_norm = nn.LayerNorm(head_dim) if cfg.vt.head_norm else nn.Identity()
        self.fc = nn.Linear(head_dim, cfg.num_classes)
        self._init_weights()

    def _run(self, images: Tensor, need_weights: bool) -> Trace:
        x = self._run_trunk(images)
        if self.cfg.vt is None:
            return Trace(logits=self.fc(self.avgpool(x).flatten(1)))
        _, tokens, traces = self.vt(x, need_weights)
        return Trace(logits=self.forward_head(tokens), modules=traces)

    def randomisation_groups(self) -> list[tuple[str, list[str]]]:
        """Classifier, VT modules from the last (parts from the projector down), conv
        stages from the last, stem."""
        if self.cfg.vt is None:
            return [("classifier", ["fc."]), *self._trunk_randomisation_groups()]
        return [*self.vt_randomisation_groups(), *self._trunk_randomisation_groups()]

    def stage_modules(self) -> dict[str, list[str]]:
        """Top-level children grouped by stage, for per-stage parameter and FLOP counts."""
        stages = self._trunk_stages()
        if self.cfg.vt is None:
            stages["head"] = ["fc"]
        else:
            stages["vt"] = ["vt"]
            stages["head"] = ["head_norm", "fc"]
        return stages
