"""The Visual Transformer model library: modules, configs, registry, trace record."""

from .complexity import Complexity, StageCost, count_complexity
from .config import ModelConfig, VTConfig
from .fpn import VTFPN, ConvFPN, ResNetFPN
from .projector import Projector
from .registry import build_model, create_model, get_config, list_models, register
from .resnet import VTResNet
from .seed import SeedViTResNet, SeedViTResNetReference
from .tokenizer import FilterTokenizer, RecurrentTokenizer, TokenPositionEncoding
from .trace import Trace, VTModuleTrace
from .transformer import TokenAttention, TokenTransformer, TokenTransformerLayer
from .vt import VTModule, VTStage

__all__ = [
    "VTFPN",
    "Complexity",
    "ConvFPN",
    "FilterTokenizer",
    "ModelConfig",
    "Projector",
    "RecurrentTokenizer",
    "ResNetFPN",
    "SeedViTResNet",
    "SeedViTResNetReference",
    "StageCost",
    "TokenAttention",
    "TokenPositionEncoding",
    "TokenTransformer",
    "TokenTransformerLayer",
    "Trace",
    "VTConfig",
    "VTModule",
    "VTModuleTrace",
    "VTResNet",
    "VTStage",
    "build_model",
    "count_complexity",
    "create_model",
    "get_config",
    "list_models",
    "register",
]
