"""One schema check for model cards, run before any tensor is allocated.

:func:`check_card` checks a parsed card's types and ranges (format, classes, input size,
normalisation, preprocessing, the architecture config and its VT stage);
:func:`safetensors_header` reads a weights file's header (names, dtypes, shapes) without
reading a single tensor; :func:`check_shapes` compares those shapes with the ones the
config implies, computed on PyTorch's ``meta`` device (no memory). Every failure is a
``ValueError`` whose one-line message names the field or tensor; ``load_checkpoint``
prefixes the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .model.config import ModelConfig, VTConfig
from .model.tokenizer import TOKENIZERS

#: Limits of what a card may ask for: generous for real models, small enough that a
#: hostile card cannot make the loader allocate gigabytes or loop for minutes.
MAX_CARD_BYTES = 16 * 2**20
MAX_HEADER_BYTES = 64 * 2**20
MAX_CLASSES = 100_000
INPUT_SIZE = (8, 2048)
WIDTH = (1, 16_384)  # channels, token widths
RESIZE_MODES = ("stretch", "center_crop")
INTERPOLATIONS = ("bicubic", "bilinear")

_MODEL_CHOICES = {
    "family": ("resnet", "seed", "fpn", "efficientnet"),
    "stem": ("cifar", "imagenet"),
    "block": ("basic", "bottleneck"),
}
_VT_INTS = {
    "num_modules": (1, 16),
    "tokens": (1, 1024),
    "token_dim": WIDTH,
    "depth": (1, 32),
    "heads": (1, 256),
    "projector_dim": WIDTH,
    "pos_grid": (1, 64),
    "pos_dim": WIDTH,
}
_VT_FLOATS = {"qk_ratio": (1e-3, 8.0), "mlp_ratio": (1e-3, 16.0)}
# "variant": the tokenizer kinds registered when the card is checked
_VT_CHOICES = {"variant": TOKENIZERS, "transformer": ("mhsa", "paper")}
_VT_BOOLS = ("value_proj", "scaled", "pos_encoding", "head_norm", "recurrent_norm")
_VT_OPTIONAL = ("token_dim", "projector_dim")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(field: str, v: Any, lo: int, hi: int) -> None:
    if not _is_int(v):
        raise ValueError(f"{field}: expected an integer, got {json.dumps(v)[:40]}")
    if not lo <= v <= hi:
        raise ValueError(f"{field}: {v} is outside [{lo}, {hi}]")


def _float(field: str, v: Any, lo: float, hi: float) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"{field}: expected a finite number, got {json.dumps(v)[:40]}")
    if not lo <= v <= hi:
        raise ValueError(f"{field}: {v} is outside [{lo}, {hi}]")


def _choice(field: str, v: Any, allowed: Mapping[str, Any] | tuple[str, ...]) -> None:
    if v not in allowed:
        raise ValueError(f"{field}: {json.dumps(v)[:40]} is not one of {', '.join(allowed)}")


def _triple(field: str, v: Any, positive: bool) -> None:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ValueError(
            f"{field}: expected a list of 3 numbers (R, G, B), got {json.dumps(v)[:40]}"
        )
    for i, x in enumerate(v):
        _float(f"{field}[{i}]", x, 1e-6 if positive else -10.0, 10.0)


def _classes(field: str, v: Any) -> None:
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError(f"{field}: expected a non-empty list of class names")
    if len(v) > MAX_CLASSES:
        raise ValueError(f"{field}: {len(v)} classes (at most {MAX_CLASSES})")
    if not all(isinstance(c, str) and 0 < len(c) <= 200 for c in v):
        raise ValueError(f"{field}: every class name must be a string of 1-200 characters")


def _scalars(field: str, extra: Any) -> None:
    if not isinstance(extra, dict):
        raise ValueError(f"{field}: expected an object")
    for k, v in extra.items():
        if _is_int(v):
            _int(f"{field}.{k}", v, 0, WIDTH[1])
        elif isinstance(v, float):
            _float(f"{field}.{k}", v, -1e6, 1e6)
        elif not (v is None or isinstance(v, (str, bool))):
            raise ValueError(f"{field}.{k}: expected a number, string or boolean")


def _fields_of(field: str, value: Any, cls: type, what: str = "an object") -> None:
    """``value`` must be a dict whose keys are all fields of dataclass ``cls``."""
    if not isinstance(value, dict):
        raise ValueError(f"{field}: expected {what}")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{field}: unknown fields {unknown}")


def check_vt(vt: Any) -> None:
    """Types and ranges of a card's ``config.vt`` (a dict); ValueError naming the field."""
    _fields_of("config.vt", vt, VTConfig, "an object or null")
    for k, v in vt.items():
        f = f"config.vt.{k}"
        if k in _VT_INTS:
            if not (v is None and k in _VT_OPTIONAL):
                _int(f, v, *_VT_INTS[k])
        elif k in _VT_FLOATS:
            _float(f, v, *_VT_FLOATS[k])
        elif k in _VT_CHOICES:
            _choice(f, v, _VT_CHOICES[k])
        elif k in _VT_BOOLS and not isinstance(v, bool):
            raise ValueError(f"{f}: expected true or false")


def check_config(cfg: Any) -> None:
    """Types and ranges of a card's ``config`` (a dict); ValueError naming the field."""
    _fields_of("config", cfg, ModelConfig)
    if not isinstance(cfg.get("name"), str) or not cfg["name"]:
        raise ValueError("config.name: expected a non-empty string")
    for k, allowed in _MODEL_CHOICES.items():
        if k in cfg:
            _choice(f"config.{k}", cfg[k], allowed)
    for k in ("layers", "widths"):
        if k in cfg:
            v = cfg[k]
            if not isinstance(v, (list, tuple)) or len(v) > 8:
                raise ValueError(f"config.{k}: expected a list of at most 8 integers")
            for i, x in enumerate(v):
                _int(f"config.{k}[{i}]", x, 1, 64 if k == "layers" else WIDTH[1])
    if "num_classes" in cfg:
        _int("config.num_classes", cfg["num_classes"], 1, MAX_CLASSES)
    if "input_size" in cfg:
        _int("config.input_size", cfg["input_size"], *INPUT_SIZE)
    for k in ("mean", "std"):
        if k in cfg:
            _triple(f"config.{k}", cfg[k], positive=k == "std")
    if cfg.get("classes") is not None:
        _classes("config.classes", cfg["classes"])
    if "extra" in cfg:
        _scalars("config.extra", cfg["extra"])
    if "description" in cfg and not isinstance(cfg["description"], str):
        raise ValueError("config.description: expected a string")
    if cfg.get("vt") is not None:
        check_vt(cfg["vt"])


def check_card(card: Any, format_marker: str, format_version: int) -> None:
    """Every field a loader relies on, before anything is built; ValueError naming it."""
    if not isinstance(card, dict) or card.get("format") != format_marker:
        raise ValueError("not a vt_explorer model card (no format marker)")
    version = card.get("format_version", 1)
    if not _is_int(version) or version < 1:
        raise ValueError(
            f"format_version: expected a positive integer, got {json.dumps(version)[:40]}"
        )
    if version > format_version:
        raise ValueError(
            f"format_version: card format {version} is newer than this vt_explorer "
            f"understands ({format_version}); upgrade vt_explorer"
        )
    for key in ("config", "classes", "input_size", "mean", "std"):
        if key not in card:
            raise ValueError(f"model card lacks {key!r}")
    check_config(card["config"])
    _classes("classes", card["classes"])
    _int("input_size", card["input_size"], *INPUT_SIZE)
    _triple("mean", card["mean"], positive=False)
    _triple("std", card["std"], positive=True)
    _choice("resize", card.get("resize", "stretch"), RESIZE_MODES)
    _choice("interpolation", card.get("interpolation", "bicubic"), INTERPOLATIONS)
    n = card["config"].get("num_classes", 10)
    if len(card["classes"]) != n:
        raise ValueError(f"classes: {len(card['classes'])} class names for {n} outputs")
    sha = card.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise ValueError("weights_sha256: expected 64 hex digits")
    if card.get("metrics") is not None:
        check_metrics(card["metrics"])
    if card.get("history") is not None:
        check_history(card["history"])
    if card.get("complexity") is not None:
        check_complexity(card["complexity"])
    for key in ("hardware", "code_version", "command", "name", "torch_version"):
        if card.get(key) is not None and not isinstance(card[key], str):
            raise ValueError(f"{key}: expected a string")
    if card.get("train_seconds") is not None:
        _float("train_seconds", card["train_seconds"], 0.0, 1e9)


def _fraction(field: str, v: Any, optional: bool = False) -> None:
    if optional and v is None:
        return
    _float(field, v, 0.0, 1.0)


def check_metrics(m: Any) -> None:
    """The card's ``metrics`` as the app shows them: accuracy and its image count, per-class
    accuracies, the confusion matrix over its classes, and each held-out source's agreement,
    top-1 and top-5; ValueError naming the first field at fault."""
    if not isinstance(m, dict):
        raise ValueError("metrics: expected an object")
    if "accuracy" in m:
        _fraction("metrics.accuracy", m["accuracy"])
        if "n" not in m:
            raise ValueError("metrics.n: missing (the number of images the accuracy is over)")
    if "n" in m:
        _int("metrics.n", m["n"], 0, 10**9)
    per = m.get("per_class")
    if per is not None:
        if not isinstance(per, dict):
            raise ValueError("metrics.per_class: expected an object")
        for k, v in per.items():
            _fraction(f"metrics.per_class.{str(k)[:40]}", v, optional=True)
    if m.get("classes") is not None:
        _classes("metrics.classes", m["classes"])
    conf = m.get("confusion")
    if conf is not None:
        n = len(m.get("classes") or [])
        if not isinstance(conf, list) or len(conf) != n:
            raise ValueError(f"metrics.confusion: expected {n} rows (one per metrics.classes)")
        for i, row in enumerate(conf):
            if not isinstance(row, list) or len(row) != n or not all(map(_is_int, row)):
                raise ValueError(f"metrics.confusion[{i}]: expected {n} integers")
    if m.get("holdout") is not None:
        for f, h in _entries("metrics.holdout", m["holdout"]):
            _int(f"{f}.n", h.get("n"), 0, 10**9)
            _fraction(f"{f}.agreement", h.get("agreement"))
            for k in ("top1", "top5", "teacher_top1", "teacher_top5"):
                _fraction(f"{f}.{k}", h.get(k), optional=True)
            if (h.get("top1") is None) != (h.get("teacher_top1") is None):
                raise ValueError(f"{f}: top1 and teacher_top1 go together")


def _entries(field: str, value: Any) -> Iterator[tuple[str, dict]]:
    """(dotted field name, object) for each entry of an object of objects (held-out
    sources, stages); ValueError naming the first that is not one."""
    if not isinstance(value, dict):
        raise ValueError(f"{field}: expected an object")
    for name, v in value.items():
        f = f"{field}.{str(name)[:40]}"
        if not isinstance(v, dict):
            raise ValueError(f"{f}: expected an object")
        yield f, v


def check_history(history: Any) -> None:
    """The card's training ``history`` (one object per epoch, its numbers plotted)."""
    if not isinstance(history, list):
        raise ValueError("history: expected a list of epochs")
    for i, h in enumerate(history):
        if not isinstance(h, dict) or not _is_int(h.get("epoch")):
            raise ValueError(f"history[{i}]: expected an object with an integer epoch")
        for k in ("train_loss", "train_acc", "val_acc"):
            v = h.get(k)
            if v is not None:
                _float(f"history[{i}].{k}", v, -1e9, 1e9)


def check_complexity(c: Any) -> None:
    """The card's ``complexity``: parameters and FLOPs of each stage."""
    if not isinstance(c, dict):
        raise ValueError("complexity: expected an object")
    if c.get("stages") is None:
        return
    for f, v in _entries("complexity.stages", c["stages"]):
        for k in ("params", "flops"):
            _float(f"{f}.{k}", v.get(k), 0.0, 1e18)


def read_json_bounded(data: bytes) -> Any:
    """``json.loads`` that refuses files over :data:`MAX_CARD_BYTES` and absurd nesting."""
    if len(data) > MAX_CARD_BYTES:
        raise ValueError(f"{len(data)} bytes (a model card is at most {MAX_CARD_BYTES} bytes)")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"invalid JSON ({err})") from None


def safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header, without reading any
    tensor. ValueError when the file is not safetensors or its header is inconsistent."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("not a readable safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise ValueError("not a readable safetensors file (header length out of range)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError("not a readable safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ValueError("not a readable safetensors file (header is not an object)")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ValueError(f"not a readable safetensors file (bad entry {name[:40]!r})")
        shape = info["shape"]
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise ValueError(f"not a readable safetensors file (bad shape of {name[:40]!r})")
        out[name] = (str(info.get("dtype")), tuple(shape))
    return out


def meta_model(cfg: ModelConfig, build: Any) -> nn.Module:
    """The model ``cfg`` describes, built on the ``meta`` device: shapes without memory."""
    with torch.device("meta"):
        return build(cfg)


@dataclass
class Budget:
    """What one model may cost a server, for one image at its input size. Defaults admit
    every shipped model about ten times over (the largest: 11.6M parameters, 0.9 GMACs,
    about 100 MB of activations); an operator sets others with the environment variables
    ``VT_EXPLORER_MAX_MPARAMS``, ``VT_EXPLORER_MAX_GMACS`` and ``VT_EXPLORER_MAX_ACTIVATION_MB``."""

    mparams: float = 120.0
    gmacs: float = 10.0
    activation_mb: float = 1024.0

    @classmethod
    def from_env(cls) -> Budget:
        """The defaults, each replaced by its environment variable where it is set."""
        out = cls()
        for f, var in (
            ("mparams", "VT_EXPLORER_MAX_MPARAMS"),
            ("gmacs", "VT_EXPLORER_MAX_GMACS"),
            ("activation_mb", "VT_EXPLORER_MAX_ACTIVATION_MB"),
        ):
            if os.environ.get(var, "").strip():
                try:
                    setattr(out, f, float(os.environ[var]))
                except ValueError:
                    raise ValueError(f"{var}: expected a number") from None
        return out


def model_cost(model: nn.Module, input_size: int) -> tuple[int, int, int]:
    """(parameters and buffers, multiply-adds, activation bytes) of one ``input_size`` image
    through a model built on the ``meta`` device (:func:`meta_model`): nothing is allocated
    or computed, so a hostile card costs a fraction of a second. Activations: the outputs of
    every leaf module of a traced forward pass, as float32. Puts ``model`` in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    params = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    total = [0]

    def count(_m: nn.Module, _i: Any, out: Any) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    x = torch.empty(1, 3, input_size, input_size, device="meta")
    try:
        with FlopCounterMode(display=False) as flops, torch.no_grad():
            model.trace(x) if hasattr(model, "trace") else model(x)
    finally:
        for h in hooks:
            h.remove()
    return params, flops.get_total_flops() // 2, total[0] * 4


def check_budget(model: nn.Module, input_size: int, budget: Budget | None = None) -> None:
    """ValueError, in one line naming the measure and the limit, for a meta-device model
    (:func:`model_cost`) over ``budget`` (default :meth:`Budget.from_env`): checked before
    the real model is built, so a small file cannot make a server allocate gigabytes."""
    budget = budget or Budget.from_env()
    params, macs, act = model_cost(model, input_size)
    for what, value, limit, var in (
        ("parameters", params / 1e6, budget.mparams, "MPARAMS"),
        ("multiply-adds per image", macs / 1e9, budget.gmacs, "GMACS"),
        ("activation memory per image", act / 2**20, budget.activation_mb, "ACTIVATION_MB"),
    ):
        if value > limit:
            unit = {"MPARAMS": "M", "GMACS": " G", "ACTIVATION_MB": " MB"}[var]
            raise ValueError(
                f"the model needs {value:,.1f}{unit} {what}, more than this server allows "
                f"({limit:,.0f}{unit}; VT_EXPLORER_MAX_{var})"
            )


def check_shapes(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    header: Mapping[str, tuple[str, tuple[int, ...]]],
    card_name: str,
) -> None:
    """The tensors the architecture needs against those the weights file holds; ValueError
    with the first missing, unexpected or differently shaped tensor."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = sorted(k for k in set(expected) & set(header) if tuple(expected[k]) != header[k][1])
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            detail.append(
                f"{len(wrong)} wrong shapes (e.g. {k}: file {header[k][1]}, "
                f"{card_name} implies {tuple(expected[k])})"
            )
        raise ValueError(
            f"weights do not match the architecture in {card_name}: " + "; ".join(detail)
        )
