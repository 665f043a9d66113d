"""One image under one checkpoint: every number and array any view shows, computed once.

``analyse(checkpoint, image)`` traces the image a single time and builds an
:class:`ImageAnalysis`; ``analyse_batch`` does the same for many images in batched traces
(``vt-explorer explain``). The app and the CLI only draw from it, so what a user exports
is what they saw, by construction: :meth:`ImageAnalysis.to_arrays` (NPZ),
:meth:`ImageAnalysis.to_json` and :meth:`ImageAnalysis.report` are the exports of both.

Modules and transformer layers are numbered from 1 everywhere: "module 1" in the app and
figures is ``m1_maps`` in the arrays, ``m1_tokens.png`` among the files and ``"module": 1``
in JSON (Python lists such as ``ImageAnalysis.modules`` stay 0-based).

Propagated maps (the paper's Fig. 6, second row), one rule: the maps are mixed by the
attention of the module's **last** transformer layer (the one whose output the module
passes on), averaged over heads; with a class token its row and column are dropped and the
rows renormalised over the visual tokens.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .analysis import (
    DeletionResult,
    Diversity,
    TokenStats,
    ablation_applies,
    deletion_curves,
    diversity,
    projector_groups,
    propagated_maps,
    semantic_groups,
    token_stats,
)
from .checkpoint import LoadedCheckpoint, checkpoint_dir, list_checkpoints  # noqa: F401 (re-exported)
from .data import check_viewable
from .flags import UserError
from .model.trace import Trace
from .preprocess import Preprocess

DISPLAY_SIDE = 448  # longest side of the image the views are drawn on
MIN_DISPLAY_SIDE = 224  # smaller images are enlarged (nearest neighbour) to about this
TILE_SIDE = 224  # longest side of the small copies the grids of 16 overlays are drawn on


@dataclass
class ModuleView:
    """One VT module's arrays for one image (shapes as in VTModuleTrace, batch removed).

    Attributes:
        kind: "filter" or "recurrent" tokenizer.
        maps: (L, h, w) tokenizer attention (eq. 1/2 softmax over pixels).
        token_attention: per transformer layer (heads, L', L'); L' = L + 1 with a class token.
        projector: (L, h, w) eq. 5 weights (sum to 1 over L per pixel), or None.
        stats: per-token share, mass, entropy and contribution.
        groups: (h, w) int, the token that claims each pixel (semantic groups).
        projector_labels: (h, w) int, the token each pixel reads back from most, or None.
        propagated: (L, h, w) maps after the transformer (module docstring's rule), or None.
        distinct: how many of the L maps differ (:func:`distinct_tokens`; counts 16 maps
            peaked on one spot with different noise as 16: read ``diversity``).
        diversity: effective groups, map similarity, peak spread and a verdict in words.
    """

    kind: str
    maps: np.ndarray
    token_attention: list[np.ndarray]
    projector: np.ndarray | None
    stats: TokenStats
    groups: np.ndarray
    projector_labels: np.ndarray | None
    propagated: np.ndarray | None
    distinct: int
    diversity: Diversity

    def table(self) -> dict[str, np.ndarray]:
        """Per-token columns for people (the app's table, the CSV export): share of pixels,
        projector mass (only with a projector: without one it would repeat the share),
        entropy in nats and over a uniform map's, and the logit change if the token is
        removed (classifier modules)."""
        s = self.stats
        cols = {"share of pixels": s.share}
        if self.projector is not None:
            cols["projector mass"] = s.mass
        cols["entropy (nats)"] = s.entropy
        cols["entropy / uniform"] = s.entropy_ratio
        if s.contribution is not None:
            cols["logit change if removed"] = s.contribution
        return cols

    def at_pixel(self, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """What each token weighs at one cell (row, col) of the (h, w) map grid: the
        tokenizer's attention there (eq. 1/2, a softmax over pixels: uniform 1/hw), and the
        projector's weights there (eq. 5, a softmax over tokens: uniform 1/L; None without a
        projector). Shapes (L,) and (L,)."""
        r, c = cell
        proj = None if self.projector is None else self.projector[:, r, c]
        return self.maps[:, r, c], proj


@dataclass
class ViewInfo:
    """Which pixels of the photo the model saw (:meth:`Preprocess.view_box`): every map of
    an :class:`ImageAnalysis` is drawn on exactly that view.

    Attributes:
        resize: the preprocessing's resize mode ("center_crop", "stretch", "letterbox").
        box: (left, top, right, bottom) of the view in the photo's own pixels (a letterbox
            reaches past the photo where the padding is).
        photo_size: (width, height) of the photo.
        input_size: the side S of the model's S x S input.
        words: the view in words ("the centre crop ...").
    """

    resize: str
    box: tuple[float, float, float, float]
    photo_size: tuple[int, int]
    input_size: int
    words: str

    @property
    def area_share(self) -> float:
        """The share of the photo's area inside the view (1 for the whole photo)."""
        w, h = self.photo_size
        left, top, right, bottom = self.box
        inside = max(0.0, min(right, w) - max(left, 0)) * max(0.0, min(bottom, h) - max(top, 0))
        return inside / max(1, w * h)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the box in photo pixels, the photo's size, the input size, the mode."""
        return {
            "resize": self.resize,
            "box": [round(float(v), 2) for v in self.box],
            "photo_size": list(self.photo_size),
            "input_size": self.input_size,
            "description": self.words,
        }


@dataclass
class ImageAnalysis:
    """Everything the views and exports of one image under one checkpoint need.

    ``image`` (and ``thumb``) is the model's own view of the photo (``view``: the centre
    crop for ImageNet models), so the maps drawn on it lie on the pixels the model saw;
    ``photo`` is the whole photo, small, for showing what was cut away."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8: at most DISPLAY_SIDE, at least ~MIN_DISPLAY_SIDE
    classes: list[str]
    probs: np.ndarray  # (K,)
    modules: list[ModuleView] = field(default_factory=list)
    class_token: bool = False
    deletion: DeletionResult | None = None  # token-ablation curves (VT classifiers)
    thumb: np.ndarray | None = None  # (h, w, 3) uint8, at most TILE_SIDE: for overlay grids
    view: ViewInfo | None = None  # which pixels of the photo the model saw
    photo: np.ndarray | None = None  # (h, w, 3) uint8 whole photo, at most TILE_SIDE
    model: dict[str, Any] = field(default_factory=dict)  # name, weights hash, preprocessing
    target: int | None = None  # the class explained when another than the predicted one

    @property
    def explained(self) -> int:
        """Index of the class the contributions and deletion curves explain."""
        return int(self.probs.argmax()) if self.target is None else self.target

    @property
    def tile(self) -> np.ndarray:
        """The image the grids of overlays are drawn on (4x fewer pixels than ``image``)."""
        return self.thumb if self.thumb is not None else self.image

    @property
    def top(self) -> tuple[str, float]:
        """(predicted class, its probability)."""
        i = int(self.probs.argmax())
        return self.classes[i], float(self.probs[i])

    def to_arrays(self, image: bool = True) -> dict[str, np.ndarray]:
        """Every array of the analysis, named for an ``.npz`` file: ``probabilities``; per
        module k (numbered from 1, as the page and the figures say "module 1")
        ``m{k}_maps``, ``m{k}_token_attention_l{j}`` (layer j from 1), ``m{k}_projector``,
        ``m{k}_groups``, ``m{k}_projector_groups``, ``m{k}_propagated``, ``m{k}_share``,
        ``m{k}_mass``, ``m{k}_entropy``, ``m{k}_contribution``; the deletion curves; and
        (``image``) the image the views are drawn on."""
        arrays: dict[str, np.ndarray] = {"probabilities": self.probs}
        for k, v in enumerate(self.modules):
            arrays[f"m{k + 1}_maps"] = v.maps
            for j, att in enumerate(v.token_attention):
                arrays[f"m{k + 1}_token_attention_l{j + 1}"] = att
            arrays[f"m{k + 1}_groups"] = v.groups
            if v.projector is not None:
                arrays[f"m{k + 1}_projector"] = v.projector
                arrays[f"m{k + 1}_projector_groups"] = v.projector_labels
            if v.propagated is not None:
                arrays[f"m{k + 1}_propagated"] = v.propagated
            arrays[f"m{k + 1}_share"] = v.stats.share
            arrays[f"m{k + 1}_mass"] = v.stats.mass
            arrays[f"m{k + 1}_entropy"] = v.stats.entropy
            if v.stats.contribution is not None:
                arrays[f"m{k + 1}_contribution"] = v.stats.contribution
        if self.deletion is not None:
            arrays["deletion_curve"] = self.deletion.curve
            arrays["deletion_random_curve"] = self.deletion.random_curve
            arrays["deletion_single_token_drop"] = self.deletion.single
        if image:
            arrays["image"] = self.image
        return arrays

    def to_json(self, top: int = 5) -> dict[str, Any]:
        """The numbers of the analysis as JSON-ready data: the top predictions, per module
        (numbered from 1) its kind, distinct maps and per-token rows, and the deletion
        result."""
        order = np.argsort(-self.probs)[:top]
        out: dict[str, Any] = {
            "image": self.name,
            "model": self.model,
            "view": None if self.view is None else self.view.to_json(),
            "classes": list(self.classes),
            "predictions": [
                {"class": self.classes[j], "probability": round(float(self.probs[j]), 6)}
                for j in order
            ],
            "explained": {
                "class": self.classes[self.explained],
                "index": self.explained,
                "probability": round(float(self.probs[self.explained]), 6),
                "predicted": self.explained == int(self.probs.argmax()),
            },
            "modules": [
                {
                    "module": k + 1,
                    "kind": v.kind,
                    "distinct_maps": v.distinct,
                    "effective_groups": round(v.diversity.effective_groups, 4),
                    "map_similarity": round(v.diversity.similarity, 4),
                    "peak_spread": round(v.diversity.peak_spread, 4),
                    "diversity": v.diversity.verdict,
                    "tokens": token_rows(v.stats),
                }
                for k, v in enumerate(self.modules)
            ],
        }
        d = self.deletion
        if d is not None:
            out["faithfulness"] = {
                "deletion_score": round(d.score, 6),
                "importance_order": d.order.tolist(),
                "deletion_curve": np.round(d.curve, 6).tolist(),
                "random_curve": np.round(d.random_curve, 6).tolist(),
                "single_token_drop": np.round(d.single, 6).tolist(),
            }
        return out

    def json_bytes(self) -> bytes:
        """:meth:`to_json` plus every array as lists (the app's JSON download)."""
        data = self.to_json()
        data["arrays"] = {k: v.tolist() for k, v in self.to_arrays(image=False).items()}
        return json.dumps(data).encode()

    def report(self, title: str, cmap: str = "jet", alpha: float = 0.5, fmt: str = "png") -> bytes:
        """The one-page report of this analysis (``vt_explorer.viz.export.report_figure``)."""
        from .viz.export import report_figure

        return report_figure(
            title,
            self.image,
            self.classes,
            self.probs,
            [v.maps for v in self.modules],
            [v.propagated for v in self.modules],
            [(v.groups, v.stats.share) for v in self.modules],
            [v.kind for v in self.modules],
            cmap,
            alpha,
            self.deletion,
            fmt,
            [v.diversity.verdict for v in self.modules],
        )


def token_rows(st: TokenStats, fg: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One JSON row per token: share, mass, entropy (and over uniform), contribution and,
    with ``fg``, its foreground share."""
    ratio = st.entropy_ratio
    rows = []
    for t in range(len(st.share)):
        row = {
            "token": t,
            "share": round(float(st.share[t]), 6),
            "mass": round(float(st.mass[t]), 6),
            "entropy": round(float(st.entropy[t]), 6),
            "entropy_ratio": round(float(ratio[t]), 6),
        }
        if st.contribution is not None:
            row["contribution"] = round(float(st.contribution[t]), 6)
        if fg is not None:
            row["foreground_share"] = round(float(fg[t]), 6)
        rows.append(row)
    return rows


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


def mixing_matrix(token_attention: list[np.ndarray], class_token: bool) -> np.ndarray | None:
    """The (L, L) matrix the propagated maps use (module docstring): the last layer's
    attention averaged over heads, without a class token's row and column, rows
    renormalised. None for a module without token attention."""
    if not token_attention:
        return None
    w = token_attention[-1].mean(0)
    if class_token:
        w = w[1:, 1:]
        w = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    return w


def true_class(
    name: str,
    classes: list[str],
    wnids: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> int | None:
    """The true class of an image, when it can be told, as an index of ``classes``: from
    ``labels`` (file name -> a class name or wnid, e.g. a visitor's CSV), else from the
    file name: a leading ImageNet wnid (``n02123045_...``, with the model's ``wnids``) or
    a class name as whole words (``my_tabby.jpg``; the longest that matches). None when
    nothing names one of these classes."""
    import re as _re

    def norm(text: str) -> str:
        return " ".join(_re.sub(r"[_\-.,]+", " ", text.lower()).split())

    index = {norm(c): i for i, c in reversed(list(enumerate(classes)))}
    by_wnid = {w: i for i, w in enumerate(wnids or []) if i < len(classes)}
    stem = Path(name).stem
    given = (labels or {}).get(name, (labels or {}).get(stem))
    if given is not None:
        key = str(given).strip()
        if key in by_wnid:
            return by_wnid[key]
        return index.get(norm(key))
    m = _re.match(r"(n\d{8})", stem)
    if m and m.group(1) in by_wnid:
        return by_wnid[m.group(1)]
    words = f" {norm(stem)} "
    found = [(len(c), i) for c, i in index.items() if c and f" {c} " in words]
    return max(found)[1] if found else None


def parse_labels_csv(data: bytes, name: str = "labels.csv") -> dict[str, str]:
    """{file name: class} from a small CSV of ``file,class`` rows (a header row ``file,...``
    is skipped; blank rows too). UserError naming ``name`` for a file that is not UTF-8
    text, over 1 MB, or with a row of fewer than two fields."""
    import csv

    if len(data) > 1 << 20:
        raise UserError(f"{name}: {len(data)} bytes; a labels CSV is at most 1 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text") from None
    out: dict[str, str] = {}
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            raise UserError(f"{name}, line {n}: expected file,class")
        if n == 1 and row[0].strip().lower() in ("file", "filename", "image", "name"):
            continue
        out[row[0].strip()] = row[1].strip()
    return out


def resolve_class(classes: list[str], text: str | int) -> int:
    """The index of a class given by name (case and ``_``/space insensitive) or by index;
    UserError naming the closest names otherwise."""
    if isinstance(text, int) or str(text).strip().isdigit():
        i = int(text)
        if 0 <= i < len(classes):
            return i
        raise UserError(f"class index {i} is not one of the model's {len(classes)} classes")

    def norm(c: str) -> str:
        return c.strip().lower().replace("_", " ")

    names = {norm(c): i for i, c in reversed(list(enumerate(classes)))}
    if norm(str(text)) in names:
        return names[norm(str(text))]
    import difflib

    close = difflib.get_close_matches(norm(str(text)), list(names), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"{text!r} is not one of the model's {len(classes)} classes{hint}")


def module_views(
    trace: Trace, i: int, model: torch.nn.Module | None = None, target: int | None = None
) -> list[ModuleView]:
    """Image ``i`` of a (batched) trace as one :class:`ModuleView` per VT module; token
    contributions for class ``target`` (default the predicted one)."""
    views = []
    for k, m in enumerate(trace.modules):
        maps = m.tokenizer_attention[i].detach().float().cpu().numpy()
        attention = [a[i].detach().float().cpu().numpy() for a in m.token_attention]
        projector = None
        if m.projector_attention is not None:
            projector = m.projector_attention[i].detach().float().cpu().numpy()
        w = mixing_matrix(attention, trace.class_token)
        views.append(
            ModuleView(
                kind=m.kind,
                maps=maps,
                token_attention=attention,
                projector=projector,
                stats=token_stats(trace, k, i, model, target),
                groups=semantic_groups(maps)[0],
                projector_labels=None if projector is None else projector_groups(projector)[0],
                propagated=None if w is None else propagated_maps(maps, w),
                distinct=distinct_tokens(maps),
                diversity=diversity(maps),
            )
        )
    return views


#: the views of a photo a user may ask for instead of the model's own (``analyse(view=)``)
VIEW_MODES = ("letterbox",)


def view_preprocess(ck: LoadedCheckpoint, view: str | None = None) -> Preprocess:
    """``ck``'s preprocessing, or the same with another resize mode (``view``: one of
    :data:`VIEW_MODES`, e.g. "letterbox" to show the model the whole photo)."""
    if view is None or view == ck.preprocess.resize:
        return ck.preprocess
    if view not in VIEW_MODES:
        raise UserError(f"unknown view {view!r}; known: {', '.join(VIEW_MODES)}")
    return dataclasses.replace(ck.preprocess, resize=view)


def analyse_trace(
    ck: LoadedCheckpoint,
    trace: Trace,
    i: int,
    img: Image.Image,
    name: str = "image",
    deletion: bool = True,
    random_orders: int = 8,
    pre: Preprocess | None = None,
    target: int | None = None,
) -> ImageAnalysis:
    """The analysis of image ``i`` of an existing (batched) trace: the one constructor of
    :class:`ImageAnalysis` that :func:`analyse` and :func:`analyse_batch` share. ``pre``:
    the preprocessing the trace was made with (default ``ck.preprocess``); the views are
    drawn on its view of the photo. ``target``: the class the token contributions, deletion
    curves and single-token drops explain (default the predicted one)."""
    pre = ck.preprocess if pre is None else pre
    if target is not None and not 0 <= target < len(ck.classes):
        raise UserError(f"class index {target} is not one of the model's {len(ck.classes)}")
    views = module_views(trace, i, ck.model, target)
    curves = None
    if deletion and views and ablation_applies(ck.model, trace):
        curves = deletion_curves(ck.model, trace, i, random_orders=random_orders, target=target)
    seen = pre.view(img, DISPLAY_SIDE)
    info = ViewInfo(
        pre.resize,
        tuple(float(v) for v in pre.view_box(img)),  # type: ignore[arg-type]
        (img.width, img.height),
        pre.input_size,
        pre.describe_view(),
    )
    return ImageAnalysis(
        name,
        display_image(seen, min_side=MIN_DISPLAY_SIDE),
        list(ck.classes),
        trace.probabilities[i].detach().float().cpu().numpy(),
        views,
        trace.class_token,
        curves,
        display_image(seen, TILE_SIDE),
        info,
        display_image(img, TILE_SIDE),
        model={
            "name": ck.card.get("name"),
            "config": ck.config.name,
            "weights_sha256": ck.card.get("weights_sha256"),
            "teacher": (ck.card.get("teacher") or {}).get("model"),
            "preprocess": {
                "input_size": pre.input_size,
                "resize": pre.resize,
                "interpolation": pre.interpolation,
                "mean": list(pre.mean),
                "std": list(pre.std),
            },
        },
        target=target,
    )


def analyse(
    ck: LoadedCheckpoint,
    img: Image.Image,
    name: str = "image",
    view: str | None = None,
    target: int | None = None,
) -> ImageAnalysis:
    """Run ``ck``'s model once on ``img`` (preprocessed as its card says, or with the view
    ``view``, :func:`view_preprocess`) and collect views; ``target``: the class to explain
    (default the predicted one). ValueError naming ``name`` for an image too thin to show
    (:func:`~vt_explorer.data.check_viewable`)."""
    return analyse_batch(ck, [(name, img)], view=view, target=target)[0]


def analyse_batch(
    ck: LoadedCheckpoint,
    images: list[tuple[str, Image.Image]],
    batch_size: int = 64,
    deletion: bool = True,
    random_orders: int = 8,
    view: str | None = None,
    target: int | None = None,
) -> list[ImageAnalysis]:
    """:func:`analyse` for many (name, image) pairs, traced ``batch_size`` at a time."""
    for name, img in images:
        check_viewable(img, name)
    pre = view_preprocess(ck, view)
    device = next(ck.model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        part = images[start : start + batch_size]
        x = torch.stack([pre(img) for _, img in part]).to(device)
        with torch.inference_mode():
            trace = ck.model.trace(x.contiguous(memory_format=torch.channels_last))
        for i, (name, img) in enumerate(part):
            out.append(analyse_trace(ck, trace, i, img, name, deletion, random_orders, pre, target))
    return out


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
