"""What the page knows between reruns: the settings record, the models on offer, and the
Streamlit caches that make a rerun redraw only what changed.

Model keys are a catalog stem (``checkpoints/NAME``) or ``upload:SHA256`` for a visitor's
own checkpoint, held in their tab's session only; :func:`short` is the name people see.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ..analysis import randomisation_check
from ..checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    card_summary,
    checkpoint_catalog,
    load_checkpoint,
    read_card,
    sha256_file,
)
from ..data import check_viewable, decode_image
from ..device import select_device
from ..explore import ImageAnalysis, analyse, view_preprocess
from ..viz import group_image, overlay, predictions_bar
from ..viz.export import image_bytes
from ..viz.figures import (
    GridMarks,
    GridTiles,
    compose_grid,
    grid_tiles,
    photo_with_box,
    tile_boxes,
)
from ..viz.linked import pixel_picker, token_weights_bar

MODEL_CACHE = 8  # checkpoints held in memory per server process (least recently used out)
OWN = "yours: "  # prefix of a visitor's own uploaded checkpoint, never a shipped name
MODULE_CHOICES = ["last", "1", "2", "3"]

Image = tuple[str, bytes, str]  # (name, bytes, SHA-256) of one readable upload


@dataclass
class Settings:
    """What the sidebar chose: the model keys to show and how to draw maps."""

    models: list[str]
    cmap: str
    alpha: float
    stretch: bool = False  # each map stretched to its own range instead of one shared scale
    module: str = "last"  # the VT module both models show: "last", or "1", "2", ... (1-based)
    view: str = "model"  # what the models are shown: their own view, or "letterbox"


@dataclass
class Picks:
    """What the visitor picked on one image, shared by both models' views.

    token: the token to highlight (tile frame, attention row and column, group), or None.
    pixel: (y, x) as fractions of the image, or None; each model maps it onto its own grid
        (:func:`vt_explorer.viz.linked.cell_of`), so grids of different sizes agree.
    pixel_key: the session-state key the pixel lives under (a click writes it there).
    token_key: the session-state key of the token picker (a click on a tile writes it).
    """

    token: int | None = None
    pixel: tuple[float, float] | None = None
    pixel_key: str = "pixel"
    token_key: str = "token"


def module_index(choice: str, n: int) -> int:
    """0-based module to show of a model with ``n`` VT modules: the last one by default (the
    recurrent one in a recurrent model, so a comparison opens on filter vs recurrent); a
    number beyond a model's modules shows its last."""
    return n - 1 if choice == "last" else min(int(choice), n) - 1


def app_arguments() -> argparse.Namespace:
    """The app's own flags, after ``--``: ``streamlit run app.py -- --checkpoint-dir DIR``."""
    parser = argparse.ArgumentParser(prog="app.py", add_help=False)
    parser.add_argument("--checkpoint-dir", action="append", default=None, metavar="DIR")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def catalog() -> dict[str, str]:
    """{name: checkpoint stem} of the folders the server's operator chose: ``--checkpoint-dir``
    (repeatable), else ``$VT_EXPLORER_CHECKPOINTS``, else the shipped ``checkpoints/``.
    Visitors pick names from it; no path typed in a browser ever reaches the file system."""
    dirs = app_arguments().checkpoint_dir
    return checkpoint_catalog([Path(d) for d in dirs] if dirs else None)


def labels() -> dict[str, str]:
    """{model key: the name shown}, this visitor's own (in their session: a label another
    tab's upload sets never reaches it); filled by the sidebar on every run."""
    return st.session_state.setdefault("model_labels", {})


def short(key: str) -> str:
    """The name a visitor sees for a model key (never a server path)."""
    return labels().get(key) or key.replace("\\", "/").rsplit("/", 1)[-1]


def model_line(key: str) -> str:
    """What a model key's checkpoint is and its held-out top-1, in one line
    (:func:`~vt_explorer.checkpoint.card_summary`), from its card alone (no weights loaded)."""
    own = st.session_state.get("own_checkpoint")
    if own is not None and key == own[0]:
        return card_summary(own[1].card)
    try:
        card = Path(key + ".json").stat()
        return _card_line(key, card.st_size, card.st_mtime_ns)
    except (CheckpointError, OSError, ValueError):
        return "(its card cannot be read)"


@st.cache_data(max_entries=256, show_spinner=False)
def _card_line(key: str, size: int, mtime_ns: int) -> str:
    """:func:`model_line` of a card file, read again only when its size or time changes."""
    return card_summary(read_card(key))


@st.cache_resource(max_entries=64, show_spinner=False)
def picker_figure(
    key: tuple, _tile: np.ndarray, hw: tuple[int, int], cell: tuple[int, int] | None
) -> go.Figure:
    """:func:`~vt_explorer.viz.linked.pixel_picker`, kept per (model identity, image digest,
    view) ``key``, grid and picked cell: a click elsewhere on the page does not build
    (and JPEG-encode) the picker again."""
    return pixel_picker(_tile, hw, cell)


@st.cache_resource(max_entries=256, show_spinner=False)
def weights_figure(
    key: tuple, _values: np.ndarray, uniform: float, title: str, highlight: int | None
) -> go.Figure:
    """:func:`~vt_explorer.viz.linked.token_weights_bar`, kept per ``key`` (model identity,
    image digest, view, module, cell, picked token, which bars): built once per pick."""
    return token_weights_bar(_values, uniform, title, highlight)


@st.cache_data(max_entries=64, show_spinner=False)
def framed_photo(digest: str, _photo: np.ndarray, box: tuple, size: tuple[int, int]) -> bytes:
    """:func:`~vt_explorer.viz.figures.photo_with_box` as JPEG bytes, per image ``digest``
    and view box: drawn and encoded once, not on every rerun of the image."""
    return image_bytes(photo_with_box(_photo, box, size), "jpeg")


@st.cache_resource(max_entries=256, show_spinner=False)
def prediction_figure(key: tuple, _classes: list[str], _probs: np.ndarray) -> go.Figure:
    """:func:`~vt_explorer.viz.predictions_bar`, kept per (model identity, image digest,
    view) ``key``: a rerun for a token, a pixel or a tab sends the same figure without
    building it again (never changed by a caller: a resource, not copied on each read)."""
    return predictions_bar(_classes, _probs)


@st.cache_resource(show_spinner="Loading the model...", max_entries=MODEL_CACHE)
def load_cached(resolved: str, identity: str) -> LoadedCheckpoint:
    """One operator checkpoint per (resolved path, weights SHA-256), the least recently
    used of at most MODEL_CACHE dropped; on the GPU when there is one."""
    return load_checkpoint(resolved, device=select_device())


@st.cache_data(max_entries=256, show_spinner=False)
def weights_digest(resolved: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a weights file, recomputed only when its size or time changes."""
    return sha256_file(resolved + ".safetensors")


def get_checkpoint(key: str) -> LoadedCheckpoint:
    """The loaded checkpoint behind a model key: a catalog stem, or the visitor's upload."""
    own = st.session_state.get("own_checkpoint")
    if own is not None and key == own[0]:
        return own[1]
    resolved = str(Path(key).resolve())
    st_ = Path(resolved + ".safetensors").stat()
    return load_cached(resolved, weights_digest(resolved, st_.st_size, st_.st_mtime_ns))


def model_identity(key: str) -> str:
    """What a model key's results are cached under: the key and its weights' SHA-256 (an
    upload's key already holds it), so a weights file replaced on the server never shows
    the old model's results."""
    if key.startswith("upload:"):
        return key
    resolved = str(Path(key).resolve())
    st_ = Path(resolved + ".safetensors").stat()
    return f"{key}@{weights_digest(resolved, st_.st_size, st_.st_mtime_ns)}"


def get_analysis(
    key: str,
    digest: str,
    data: bytes,
    name: str,
    view: str = "model",
    target: int | None = None,
) -> ImageAnalysis:
    """Trace one image once per (model weights, image bytes, view, explained class).
    ``view``: "model" (the checkpoint's own preprocessing) or "letterbox" (the whole photo,
    padded to a square); ``target``: the class to explain (None: the predicted one)."""
    return _analysis(key, model_identity(key), digest, data, name, view, target)


@st.cache_data(show_spinner="Running the model...", max_entries=256)
def _analysis(
    key: str,
    weights: str,
    digest: str,
    _data: bytes,
    name: str,
    view: str,
    target: int | None = None,
) -> ImageAnalysis:
    shown = None if view == "model" else view
    img = decode_image(_data, name)
    return analyse(get_checkpoint(key), img, name, view=shown, target=target)


@st.cache_resource(show_spinner="Loading EfficientNet-Lite0...")
def reference_model() -> LoadedCheckpoint:
    """The plain ImageNet Lite0 classifier the ImageNet VTs were distilled from, with the
    ImageNet preprocessing (centre crop, bilinear), held once per server process."""
    from ..distill import teacher_model
    from ..preprocess import Preprocess

    model = teacher_model(select_device())
    cfg = model.cfg
    pre = Preprocess(
        cfg.input_size, cfg.mean, cfg.std, "center_crop", cfg.extra.get("interpolation", "bilinear")
    )
    card = {"name": cfg.name, "classes": list(cfg.classes or [])}
    return LoadedCheckpoint(model=model, card=card, preprocess=pre, config=cfg)


@st.cache_data(max_entries=256, show_spinner=False)
def reference_top5(digest: str, _data: bytes, name: str, view: str = "model") -> list:
    """Lite0's own top-5 [(class, probability)] for one image, on the same view of it."""
    import torch

    ref = reference_model()
    pre = view_preprocess(ref, None if view == "model" else view)
    device = next(ref.model.parameters()).device
    with torch.inference_mode():
        p = torch.softmax(ref.model(pre(decode_image(_data, name))[None].to(device)), -1)[0]
    top = p.topk(5)
    return [
        (ref.card["classes"][int(i)], float(v))
        for v, i in zip(top.values, top.indices, strict=True)
    ]


@st.cache_data(max_entries=256)
def image_error(digest: str, _data: bytes, name: str) -> str | None:
    """Why an upload cannot be shown (None when it decodes and is not too thin)."""
    try:
        check_viewable(decode_image(_data, name), name)
    except ValueError as err:
        return str(err)
    return None


def image_digest(data: bytes) -> str:
    """SHA-256 of an upload's bytes: the image's identity in every cache."""
    return hashlib.sha256(data).hexdigest()


def get_randomisation(key: str, digest: str, data: bytes, name: str, view: str = "model") -> dict:
    """Cascading model-randomisation check of one image (Adebayo et al. 2018), on the same
    view of it as the other views (``view`` as in :func:`get_analysis`), once per model
    weights."""
    return _randomisation(key, model_identity(key), digest, data, name, view)


@st.cache_data(show_spinner="Randomising the model layer by layer...", max_entries=64)
def _randomisation(key: str, weights: str, digest: str, _data: bytes, name: str, view: str) -> dict:
    ck = get_checkpoint(key)
    device = next(ck.model.parameters()).device
    pre = view_preprocess(ck, None if view == "model" else view)
    x = pre(decode_image(_data, name))[None].to(device)
    res = randomisation_check(ck.model, x)
    return {"steps": res.steps, "correlation": res.correlation}


# picture caches are bounded by memory: at most ~0.6 MB an overlay or group image (448 px)
# and ~1.5 MB a map grid, so about 150 + 150 + 100 MB per server process at worst
@st.cache_data(max_entries=256, show_spinner=False)
def tinted(
    image: np.ndarray, heat: np.ndarray, cmap: str, alpha: float, vmax: float | None = None
) -> np.ndarray:
    """``overlay``, memoised: reruns for other views (token, layer, head, module) redraw
    nothing that did not change. ``vmax``: the grid's shared scale (None: own range)."""
    return overlay(image, heat, cmap, alpha, vmax)


@st.cache_data(max_entries=256, show_spinner=False)
def grouped(
    image: np.ndarray, labels: np.ndarray, token: int | None, cell: tuple[int, int] | None
) -> np.ndarray:
    """``group_image``, memoised: one token's group highlighted, one cell ringed."""
    return group_image(image, labels, highlight=token, pixel=cell)


@st.cache_resource(max_entries=64, show_spinner=False)
def _grid_tiles(
    key: tuple,
    _image: np.ndarray,
    _maps: np.ndarray,
    _share: np.ndarray | None,
    cmap: str,
    alpha: float,
    stretch: bool,
) -> GridTiles:
    """The overlays of one grid at tile size, per (model, image, module, which maps) ``key``
    and drawing setting; never changed by a caller (a resource: not copied on each read)."""
    return grid_tiles(_image, _maps, cmap, alpha, "", not stretch, _share)


@st.cache_data(max_entries=64, show_spinner=False)
def grid_picture(
    key: tuple,
    _image: np.ndarray,
    _maps: np.ndarray,
    _share: np.ndarray | None,
    cmap: str,
    alpha: float,
    stretch: bool,
    cell: tuple[int, int] | None,
    token: int | None,
) -> tuple[bytes, tuple[int, int], list[tuple[int, int, int, int]]]:
    """A grid of one module's maps as one JPEG picture
    (:func:`~vt_explorer.viz.figures.token_grid`, four tiles a row), its (width, height)
    and each tile's box in it (:func:`~vt_explorer.viz.figures.tile_boxes`), memoised by
    ``key`` (model, image, module, which maps) and the drawing settings: the same picture
    the PNG download writes. A new token or pixel only recomposes the tiles, which are kept
    per drawing setting; the JPEG is encoded once, here, not by the page on every rerun."""
    parts = _grid_tiles(key, _image, _maps, _share, cmap, alpha, stretch)
    picture = compose_grid(parts, 4, GridMarks(cell, token, _share))
    return image_bytes(np.asarray(picture), "jpeg"), picture.size, tile_boxes(parts, 4)
