"""Cached features of a frozen backbone, so that a VT head trains in minutes on a CPU.

A model with a frozen trunk (``VTLite0`` with ``freeze_backbone``) splits into a fixed
function ``model.features(images)`` and a trainable ``model.head(features)``. The features
of a dataset are computed once, streaming (the decoded images are never all held at the
backbone's input size), with BatchNorm folded into the convolutions (same function,
~1.5x faster on a CPU), and cached as float16 safetensors under
``$VT_EXPLORER_CACHE/features`` keyed by the dataset's checksum, the trunk's weights, the
input size and the resize mode. A damaged cache file is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import (
    cache_dir,
    check_decode_size,
    check_source,
    decode_stream,
    describe_split,
    finish_labels,
    load_image_folder,
    normalize,
    read_cache,
    resize_batch,
    scan_source,
    source_digest,
    warn_skipped,
    write_cache,
)
from .device import inference_batch
from .model.classifier import TracedClassifier
from .model.config import ModelConfig


@dataclass
class FeatureSet:
    """A dataset's trunk features.

    Attributes:
        features: (N, C, h, w) float16 trunk outputs.
        labels: (N,) int64 class indices into ``classes``.
        classes: class names (sorted folder names).
        source: the dataset path.
        skipped: ``"path: reason"`` for every file that was not a readable image.
        sha256: checksum of the source.
    """

    features: Tensor
    labels: Tensor
    classes: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)
    sha256: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def describe(self) -> dict:
        """JSON-ready summary for model cards (the same keys as ``ImageDataset.describe``)."""
        return describe_split(self.source, self.sha256, self.labels, self.classes, self.skipped)


def has_frozen_trunk(model: nn.Module) -> bool:
    """True for a model whose ``features`` are fixed and whose ``head`` trains on them."""
    return isinstance(model, TracedClassifier) and model.frozen


def folded_trunk(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a Lite0 model with its BatchNorms folded into the convolutions
    (``EfficientNetLite0.folded``): the same function up to float rounding, faster."""
    return model.folded()


#: the full Lite0 classifier folded, head included (the distillation teacher)
folded_classifier = folded_trunk


def trunk_digest(model: nn.Module) -> str:
    """SHA-256 of the weights and buffers ``model.features`` depends on (the key of its
    feature caches)."""
    h = hashlib.sha256()
    keys = set(model.feature_keys())
    for k, v in sorted(model.state_dict().items()):
        if k in keys and v.is_floating_point():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def compute_features(
    model: nn.Module,
    path: str | os.PathLike,
    resize: str = "stretch",
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
    use_cache: bool = True,
    decode_size: int | None = None,
) -> FeatureSet:
    """Trunk features of every readable image of an ImageFolder directory or archive.

    Images are decoded and resized to ``model.cfg.input_size`` as the checkpoint will do
    (``resize``, and the config's ``extra["interpolation"]``), normalised with the model's
    mean/std, and pushed through the folded trunk in batches of ``batch_size`` (decoded in
    chunks of that size; on a CPU the trunk runs smaller batches,
    :func:`~vt_explorer.device.inference_batch`, 2-3x faster). Raises ``DatasetError`` as
    ``load_image_folder`` does.

    ``decode_size`` (bilinear configs): decode at ``decode_size`` squared instead, through
    the decoded-image cache of :func:`load_image_folder`, and enlarge each batch with
    :func:`resize_batch` (PIL's bilinear up to uint8 rounding). For small sources such as
    CIFAR's 32x32 this skips resizing every image to the input size in the decoding
    workers, which compete with the trunk for the CPU. Cached under its own key.
    """
    cfg = model.cfg
    src = check_source(path)
    digest = source_digest(src)
    interpolation = cfg.extra.get("interpolation", "bicubic")
    key = f"{digest[:24]}-{trunk_digest(model)[:16]}-{cfg.input_size}-{resize}-{interpolation}"
    if cfg.extra.get("output_stride", 32) != 32:  # the same weights, another function
        key += f"-os{cfg.extra['output_stride']}"
    if decode_size is not None:
        check_decode_size(decode_size, cfg.input_size, interpolation)
        key += f"-d{decode_size}"
    cache = cache_dir() / "features" / f"{key}.safetensors"
    hit = read_cache(cache, "features") if use_cache else None
    if hit is not None:
        t, classes, skipped = hit
        warn_skipped(skipped)  # the same words as the first read, not silence
        return FeatureSet(t["features"], t["labels"], classes, str(src), skipped, digest)

    device = torch.device(device)
    trunk = folded_trunk(model).to(device, memory_format=torch.channels_last)
    step = inference_batch(batch_size, cfg.input_size, device)  # trunk batch
    if decode_size is not None:
        ds = load_image_folder(
            src,
            decode_size,
            resize,
            use_cache=use_cache,
            progress=progress,
            workers=workers,
            interpolation=interpolation,
        )
        bar = tqdm(
            desc=f"features {src.name}", unit="img", disable=not progress, dynamic_ncols=True
        )
        outs = []
        for i in range(0, len(ds), step):
            images = resize_batch(ds.images[i : i + step].to(device), cfg.input_size)
            outs.append(_trunk_out(trunk, images, cfg))
            bar.update(images.shape[0])
        bar.close()
        classes, labels, skipped = list(ds.classes), ds.labels, list(ds.skipped)
    else:
        classes, labels, skipped, outs = _stream_features(
            trunk, device, src, cfg, resize, batch_size, step, workers, progress, interpolation
        )
    feats = torch.cat(outs).contiguous()
    fs = FeatureSet(feats, labels, classes, str(src), skipped, digest)
    if use_cache:
        write_cache(cache, {"features": feats, "labels": labels}, classes, skipped)
    return fs


def _trunk_out(trunk: nn.Module, images: Tensor, cfg: ModelConfig) -> Tensor:
    """uint8 (B, 3, S, S) -> float16 trunk features on the CPU."""
    return trunk.features(normalize(images, cfg.mean, cfg.std)).half().cpu()


def _stream_features(
    trunk: nn.Module,
    device: torch.device,
    src: Path,
    cfg: ModelConfig,
    resize: str,
    chunk: int,
    step: int,
    workers: int,
    progress: bool,
    interpolation: str,
) -> tuple[list[str], Tensor, list[str], list[Tensor]]:
    """Decode at the input size in chunks of ``chunk`` images and run the trunk on batches
    of ``step``: (classes, labels, skipped, feature chunks)."""
    class_dirs, items = scan_source(src)
    names: list[str] = []
    skipped: list[str] = []
    outs: list[Tensor] = []
    bar = tqdm(desc=f"features {src.name}", unit="img", disable=not progress, dynamic_ncols=True)
    stream = decode_stream(
        src,
        items,
        cfg.input_size,
        resize,
        workers,
        False,
        skipped,
        chunk=chunk,
        interpolation=interpolation,
    )
    for chunk_names, arrays in stream:
        if not arrays:
            continue
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device)
        outs += [_trunk_out(trunk, part, cfg) for part in images.split(step)]
        names += chunk_names
        bar.update(len(arrays))
    bar.close()
    classes, labels = finish_labels(src, class_dirs, names, skipped)
    return classes, labels, skipped, outs
