"""What the app shows for one image and one checkpoint, computed once (no Streamlit here).

``analyse(checkpoint, image)`` runs the model's trace a single time and turns everything
the views need into numpy arrays; the app caches the result, so changing a view (token,
module, head, colour map, opacity) never reruns the model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .analysis import (
    DeletionResult,
    TokenStats,
    ablation_applies,
    deletion_curves,
    token_stats,
)
from .checkpoint import LoadedCheckpoint, checkpoint_dir, list_checkpoints  # noqa: F401 (re-exported)
from .data import check_viewable
from .model.trace import Trace

DISPLAY_SIDE = 448  # longest side of the image the views are drawn on
TILE_SIDE = 224  # longest side of the small copies the grids of 16 overlays are drawn on


@dataclass
class ModuleView:
    """One VT module's arrays for one image (shapes as in VTModuleTrace, batch removed)."""

    kind: str
    maps: np.ndarray  # (L, h, w) tokenizer attention
    token_attention: list[np.ndarray]  # per layer (heads, L', L')
    projector: np.ndarray | None  # (L, h, w) or None
    stats: TokenStats


@dataclass
class ImageAnalysis:
    """Everything the views of one image under one checkpoint need."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8, downscaled for display
    classes: list[str]
    probs: np.ndarray  # (K,)
    modules: list[ModuleView] = field(default_factory=list)
    class_token: bool = False
    deletion: DeletionResult | None = None  # token-ablation curves (VT classifiers)
    thumb: np.ndarray | None = None  # (h, w, 3) uint8, at most TILE_SIDE: for overlay grids

    @property
    def tile(self) -> np.ndarray:
        """The image the grids of overlays are drawn on (4x fewer pixels than ``image``)."""
        return self.thumb if self.thumb is not None else self.image

    @property
    def top(self) -> tuple[str, float]:
        """(predicted class, its probability)."""
        i = int(self.probs.argmax())
        return self.classes[i], float(self.probs[i])


def display_image(img: Image.Image, side: int = DISPLAY_SIDE, min_side: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 copy whose longest side is at most ``side`` pixels; an image whose
    longest side is under ``min_side`` is enlarged (nearest neighbour) to about that size."""
    im = img.convert("RGB")
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR
        )
    elif max(im.size) < min_side:
        k = max(1, min_side // max(im.size))
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
    return np.asarray(im, dtype=np.uint8).copy()


def analyse(ck: LoadedCheckpoint, img: Image.Image, name: str = "image") -> ImageAnalysis:
    """Run ``ck``'s model once on ``img`` (preprocessed as its card says) and collect views.
    ValueError naming ``name`` for an image too thin to show (:func:`~vt_explorer.data.check_viewable`)."""
    check_viewable(img, name)
    device = next(ck.model.parameters()).device
    x = ck.preprocess(img)[None].to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        trace = ck.model.trace(x)
    probs = trace.probabilities[0].cpu().numpy()
    views = module_views(trace, 0, ck.model)
    deletion = None
    if views and ablation_applies(ck.model, trace):
        deletion = deletion_curves(ck.model, trace, 0)
    return ImageAnalysis(
        name,
        display_image(img),
        ck.classes,
        probs,
        views,
        trace.class_token,
        deletion,
        display_image(img, TILE_SIDE),
    )


def analysis_arrays(
    probs: np.ndarray,
    views: list[ModuleView],
    image: np.ndarray | None = None,
    deletion: DeletionResult | None = None,
) -> dict[str, np.ndarray]:
    """Every array of one image's analysis, named for an ``.npz`` file: ``probabilities``,
    per module k ``m{k}_maps``, ``m{k}_token_attention_l{j}``, ``m{k}_projector``,
    ``m{k}_share``, ``m{k}_mass``, ``m{k}_entropy``, and the deletion curves and image."""
    arrays: dict[str, np.ndarray] = {"probabilities": probs}
    for k, v in enumerate(views):
        arrays[f"m{k}_maps"] = v.maps
        for j, att in enumerate(v.token_attention):
            arrays[f"m{k}_token_attention_l{j}"] = att
        if v.projector is not None:
            arrays[f"m{k}_projector"] = v.projector
        arrays[f"m{k}_share"] = v.stats.share
        arrays[f"m{k}_mass"] = v.stats.mass
        arrays[f"m{k}_entropy"] = v.stats.entropy
    if deletion is not None:
        arrays["deletion_curve"] = deletion.curve
        arrays["deletion_random_curve"] = deletion.random_curve
        arrays["deletion_single_token_drop"] = deletion.single
    if image is not None:
        arrays["image"] = image
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of a compressed ``.npz`` file (``numpy.load`` reads it)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def distinct_tokens(maps: np.ndarray, tol: float = 1e-3) -> int:
    """How many of the L maps differ (max abs difference > ``tol`` of the largest value):
    L for healthy tokens, 1 when every token attends to the same place (token collapse)."""
    flat = maps.reshape(len(maps), -1)
    scale = max(float(np.abs(flat).max()), 1e-12)
    reps: list[np.ndarray] = []
    for row in flat:
        if all(np.abs(row - r).max() > tol * scale for r in reps):
            reps.append(row)
    return len(reps)


def module_views(trace: Trace, i: int, model: torch.nn.Module | None = None) -> list[ModuleView]:
    """Image ``i`` of a (batched) trace as one :class:`ModuleView` per VT module."""
    views = []
    for k, m in enumerate(trace.modules):
        views.append(
            ModuleView(
                kind=m.kind,
                maps=m.tokenizer_attention[i].detach().float().cpu().numpy(),
                token_attention=[a[i].detach().float().cpu().numpy() for a in m.token_attention],
                projector=None
                if m.projector_attention is None
                else m.projector_attention[i].detach().float().cpu().numpy(),
                stats=token_stats(trace, k, i, model),
            )
        )
    return views
