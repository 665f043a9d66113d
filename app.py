"""vt_explorer: see which image region each visual token claims, how tokens attend to one
another, what the model predicts, and how the filter and recurrent tokenizers differ.

Run with ``bash scripts/app.sh`` (or ``streamlit run app.py``). Widgets and layout only;
all numbers come from vt_explorer.explore / analysis, all figures from vt_explorer.viz.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from vt_explorer.analysis import (
    entropy_ratio,
    randomisation_check,
)
from vt_explorer.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    checkpoint_catalog,
    load_checkpoint,
    load_checkpoint_bytes,
    sha256_file,
)
from vt_explorer.data import check_viewable, decode_image
from vt_explorer.device import select_device
from vt_explorer.examples import example_images
from vt_explorer.explore import (
    ImageAnalysis,
    analyse,
    npz_bytes,
)
from vt_explorer.model.config import CIFAR10_CLASSES
from vt_explorer.tokenstats import parse_token_statistics, read_token_statistics
from vt_explorer.viz import (
    attention_heatmap,
    confusion_heatmap,
    curves_figure,
    deletion_plot,
    group_image,
    overlay,
    palette,
    predictions_bar,
    token_class_heatmap,
    token_grid_png,
)
from vt_explorer.viz import export as fig_export
from vt_explorer.viz.figures import colour_bar_png, map_scale, near_uniform

log = logging.getLogger("vt_explorer.app")
# one limit for every upload: what .streamlit/config.toml lets the server receive is what
# the app accepts (checked again here, in case the server runs with another config)
MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 2**20
PAGE_SIZE = 4  # images drawn per page (each costs about 0.7 s per rerun)
CMAPS = ["jet", "viridis", "inferno", "magma", "turbo", "gray"]
MODEL_CACHE = 8  # checkpoints held in memory per server process (least recently used out)
OWN = "yours: "  # prefix of a visitor's own uploaded checkpoint, never a shipped name


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


@st.cache_data(show_spinner="Running the model...", max_entries=256)
def get_analysis(key: str, digest: str, _data: bytes, name: str) -> ImageAnalysis:
    """Trace one image once per (checkpoint, image bytes); an uploaded checkpoint's key
    holds its weights' hash, so equal keys mean equal models."""
    return analyse(get_checkpoint(key), decode_image(_data, name), name)


@st.cache_data(max_entries=256)
def image_error(digest: str, _data: bytes, name: str) -> str | None:
    """Why an upload cannot be shown (None when it decodes and is not too thin)."""
    try:
        check_viewable(decode_image(_data, name), name)
    except ValueError as err:
        return str(err)
    return None


@st.cache_data(show_spinner="Randomising the model layer by layer...", max_entries=64)
def get_randomisation(key: str, digest: str, _data: bytes, name: str) -> dict:
    """Cascading model-randomisation check of one image (Adebayo et al. 2018)."""
    ck = get_checkpoint(key)
    device = next(ck.model.parameters()).device
    x = ck.preprocess(decode_image(_data, name))[None].to(device)
    res = randomisation_check(ck.model, x)
    return {"steps": res.steps, "correlation": res.correlation}


@st.cache_data(max_entries=4096, show_spinner=False)
def tinted(
    image: np.ndarray, heat: np.ndarray, cmap: str, alpha: float, vmax: float | None = None
) -> np.ndarray:
    """``overlay``, memoised: reruns for other views (token, layer, head, module) redraw
    nothing that did not change. ``vmax``: the grid's shared scale (None: own range)."""
    return overlay(image, heat, cmap, alpha, vmax)


@st.cache_data(max_entries=1024, show_spinner=False)
def grouped(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``group_image``, memoised (it depends on neither colour map nor opacity)."""
    return group_image(image, labels)


def downloads(label: str, make: Callable[[str], bytes], stem: str, uid: str) -> None:
    """PNG and SVG download buttons for one figure; the file is drawn only when clicked."""
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button(
        f"{label} (PNG)",
        lambda: make("png"),
        file_name=f"{stem}.png",
        mime="image/png",
        key=f"png-{uid}",
        on_click="ignore",
    )
    c2.download_button(
        f"{label} (SVG)",
        lambda: make("svg"),
        file_name=f"{stem}.svg",
        mime="image/svg+xml",
        key=f"svg-{uid}",
        on_click="ignore",
    )


LABELS: dict[str, str] = {}  # model key -> the name shown (filled by the sidebar)


def short(key: str) -> str:
    """The name a visitor sees for a model key (never a server path)."""
    return LABELS.get(key) or key.replace("\\", "/").rsplit("/", 1)[-1]


def own_checkpoint_upload() -> None:
    """A visitor's own checkpoint (.safetensors + .json), held for this browser tab only."""
    files = st.sidebar.file_uploader(
        "Your own checkpoint (NAME.safetensors + NAME.json)",
        type=["safetensors", "json"],
        accept_multiple_files=True,
        key="ck_upload",
        help="Trained with `vt-explorer train`. Both files at once, at most "
        f"{MAX_UPLOAD_MB} MB each; kept for this browser tab only, never written to the "
        "server's checkpoint folders.",
    )
    if not files:
        st.session_state.pop("own_checkpoint", None)
        return
    weights = [f for f in files if f.name.lower().endswith(".safetensors")]
    cards = [f for f in files if f.name.lower().endswith(".json")]
    if len(weights) != 1 or len(cards) != 1:
        st.sidebar.error("Upload exactly one NAME.safetensors and one NAME.json together.")
        return
    w, c = weights[0].getvalue(), cards[0].getvalue()
    if max(len(w), len(c)) > MAX_UPLOAD_BYTES:
        st.sidebar.error(f"Cannot use that checkpoint: a file is over {MAX_UPLOAD_MB} MB.")
        return
    name = Path(cards[0].name).stem
    key = "upload:" + hashlib.sha256(w + b"\0" + c).hexdigest()
    own = st.session_state.get("own_checkpoint")
    if own is not None and own[0] == key:
        return
    try:
        ck = load_checkpoint_bytes(w, c, name, device=select_device())
    except CheckpointError as err:
        st.session_state.pop("own_checkpoint", None)
        st.sidebar.error(f"Cannot use that checkpoint: {err}")
        return
    st.session_state["own_checkpoint"] = (key, ck, OWN + name)
    st.session_state["model_a"] = key  # selected at once, labelled as the visitor's


@dataclass
class Settings:
    """What the sidebar chose: the model keys to show and how to draw maps."""

    models: list[str]
    cmap: str
    alpha: float
    stretch: bool = False  # each map stretched to its own range instead of one shared scale
    module: str = "last"  # the VT module both models show: "last", or "1", "2", ... (1-based)


MODULE_CHOICES = ["last", "1", "2", "3"]


def module_index(choice: str, n: int) -> int:
    """0-based module to show of a model with ``n`` VT modules: the last one by default (the
    recurrent one in a recurrent model, so a comparison opens on filter vs recurrent); a
    number beyond a model's modules shows its last."""
    return n - 1 if choice == "last" else min(int(choice), n) - 1


def sidebar() -> Settings:
    """Models (operator's catalog + the visitor's own upload) and display settings."""
    st.sidebar.title("vt_explorer")
    shipped = catalog()
    LABELS.clear()
    LABELS.update({stem: name for name, stem in shipped.items()})
    own_checkpoint_upload()
    choices = list(shipped.values())
    own = st.session_state.get("own_checkpoint")
    if own is not None:
        choices.insert(0, own[0])
        LABELS[own[0]] = own[2]
    if not choices:
        st.error(
            "No checkpoints in the server's checkpoint folders. Train one with "
            "`vt-explorer train`, or upload your own in the sidebar."
        )
        st.stop()
    if st.session_state.get("model_a") not in choices:
        st.session_state.pop("model_a", None)
    if st.session_state.get("model_b") not in choices:
        st.session_state.pop("model_b", None)

    def default_index(*names: str) -> int:
        """The first of ``names`` offered (exact name, else a name ending in it), else 0."""
        for name in names:
            for i, c in enumerate(choices):
                if short(c) == name or short(c).endswith("-" + name):
                    return i
        return 0

    # default comparison: the fine-tuned VT-Lite0 pair when shipped (maps at
    # 14x14 of a 224-pixel photo), else the CIFAR-scale pair (16x16 maps of a 32x32
    # thumbnail). The ImageNet students are selectable, not the default: they do not yet
    # beat this pair on held-out agreement and token diversity (README).
    # defaults go through session state (a widget given both an index and a state value
    # warns); an uploaded checkpoint sets model_a itself
    st.session_state.setdefault(
        "model_a", choices[default_index("cifar10-lite0-vt-recurrent", "vt-recurrent")]
    )
    model_a = st.sidebar.selectbox("Model", choices, format_func=short, key="model_a")
    compare = st.sidebar.checkbox("Compare with a second model", value=True, key="compare")
    model_b = None
    if compare and len(choices) > 1:
        st.session_state.setdefault(
            "model_b", choices[default_index("cifar10-lite0-vt-filter", "vt-filter")]
        )
        model_b = st.sidebar.selectbox("Second model", choices, format_func=short, key="model_b")
    cmap = st.sidebar.selectbox("Colour map", CMAPS, key="cmap")
    alpha = st.sidebar.slider("Map opacity", 0.0, 1.0, 0.55, 0.05, key="alpha")
    stretch = st.sidebar.checkbox(
        "Stretch each map to its own range",
        value=False,
        key="stretch",
        help="Off (default): every tile of a grid shares one colour scale from 0, with a "
        "colour bar, so a near-uniform map looks near-uniform. On: each tile uses its full "
        "colour range, which makes diffuse maps look as sharp as peaked ones.",
    )
    module = st.sidebar.selectbox(
        "VT module",
        MODULE_CHOICES,
        key="module",
        format_func=lambda c: "the last (default)" if c == "last" else f"module {c}",
        help="One choice for both models. The last module is the recurrent one in a recurrent "
        "model, so the default comparison is filter vs recurrent; module 1 is always filter.",
    )
    return Settings([m for m in (model_a, model_b) if m], cmap, alpha, stretch, module)


def show_card(path: str) -> None:
    """The model card: data, accuracy, per-class accuracy, confusion, curves, cost."""
    card = get_checkpoint(path).card
    cfg = card["config"]
    met = card.get("metrics") or {}
    st.markdown(f"#### {short(path)}")
    st.write(
        f"Architecture `{cfg['name']}`; input {card['input_size']} px; "
        f"{len(card['classes'])} classes; trained on {card.get('hardware', 'unknown hardware')} "
        f"in {card.get('train_seconds', '?')} s; code {card.get('code_version', '?')}."
    )
    if "accuracy" in met:
        source = ((card.get("dataset") or {}).get("val") or {}).get("source", "its test set")
        st.metric("Top-1", f"{met['accuracy']:.2%}", help=f"on {met['n']} images of {source}")
        per = met.get("per_class") or {}
        if len(per) <= 20:
            st.dataframe(pd.DataFrame({"accuracy": per}).T, key=f"per-{path}")
        if met.get("confusion") is not None and len(met["confusion"]) <= 20:
            st.plotly_chart(confusion_heatmap(met["confusion"], met["classes"]), key=f"conf-{path}")
    for source, h in (met.get("holdout") or {}).items():
        top1 = (
            ""
            if h.get("top1") is None
            else f", top-1 {h['top1']:.1%} (teacher {h['teacher_top1']:.1%})"
        )
        st.write(f"Held out **{source}** ({h['n']} images): agreement with the teacher "
                 f"{h['agreement']:.1%}{top1}.")  # fmt: skip
    if card.get("history"):
        st.plotly_chart(curves_figure(card["history"]), key=f"curves-{path}")
    stages = (card.get("complexity") or {}).get("stages") or {}
    if stages:
        st.dataframe(
            pd.DataFrame(
                {
                    s: {"params (M)": v["params"] / 1e6, "GMACs": v["flops"] / 2e9}
                    for s, v in stages.items()
                }
            ).T,
            key=f"cost-{path}",
        )
    if card.get("command"):
        st.code(card["command"], language="bash")


def show_token_statistics(path: str) -> None:
    """Dataset-level token statistics from ``vt-explorer tokens`` (PATH.tokens.json)."""
    found = None if path.startswith("upload:") else Path(path + ".tokens.json")
    up = st.file_uploader(
        f"tokens.json for {short(path)}",
        type=["json"],
        key=f"tokfile-{path}",
        help="written by `vt-explorer tokens CHECKPOINT DATA --out DIR`",
    )
    stats = None
    try:
        if up is not None:
            stats = parse_token_statistics(up.getvalue(), up.name)
        elif found is not None and found.is_file():
            stats = read_token_statistics(found)
    except ValueError as err:
        st.error(f"Cannot use that file: {err}")
    if stats is None:
        st.info(f"No statistics for {short(path)} yet: run `vt-explorer tokens CHECKPOINT DATA "
                f"--out DIR` and upload DIR/tokens.json.")  # fmt: skip
        return
    st.caption(
        f"{stats['n']} images of {short(stats['data'])} (top-1 {stats['accuracy']:.2%}). "
        "Share: the fraction of an image a token wins in the semantic-group map, averaged "
        "per class. Entropy / uniform: 1 = the token looks everywhere."
    )
    for k, kind in enumerate(stats["module_kinds"]):
        share = np.asarray(stats["mean_share"][k])
        st.plotly_chart(
            token_class_heatmap(share, stats["classes"], f"module {k + 1} ({kind}): mean share"),
            key=f"tokhm-{path}-{k}",
        )
        ent = np.asarray(stats["entropy_ratio"][k])
        dom = np.asarray(stats["dominant"][k]).sum(0)
        st.dataframe(
            pd.DataFrame(
                {"entropy / uniform": ent, "images where largest": dom},
                index=[f"t{i}" for i in range(len(ent))],
            ).T,
            key=f"tokdf-{path}-{k}",
        )


def map_grid(
    a: ImageAnalysis, maps: np.ndarray, uid: str, cfg: Settings, share: np.ndarray | None = None
) -> float | None:
    """A grid of 16 overlays on one colour scale (or each stretched, as the sidebar says),
    each tile labelled with its share of the pixels and its entropy over a uniform map's;
    a colour bar marks 0, the uniform value and the top. Returns the shared top (or None)."""
    vmax, uniform = map_scale(maps)
    top = None if cfg.stretch else vmax
    ratio = entropy_ratio(maps)
    cols = st.columns(8)
    for i in range(len(maps)):
        part = "" if share is None else f" {share[i]:.0%}"
        cols[i % 8].image(tinted(a.tile, maps[i], cfg.cmap, cfg.alpha, top),
                          caption=f"t{i}{part} H/Hu {ratio[i]:.2f}", width="stretch")  # fmt: skip
    if cfg.stretch:
        st.caption("Each tile stretched to its own range: brightness is not comparable "
                   "between tiles.")  # fmt: skip
    else:
        st.image(colour_bar_png(cfg.cmap, vmax, uniform), width=340,
                 caption="one colour scale for every tile, from 0 to the largest value")  # fmt: skip
    if near_uniform(maps, uniform, 0.1):
        st.info("Maps ~ uniform: every token looks everywhere (all values within 10% of "
                f"1/HW = {uniform:.3g}).")  # fmt: skip
    return top


def show_maps_tab(a: ImageAnalysis, k: int, uid: str, cfg: Settings) -> None:
    """Every token's spatial map of module k, one enlarged, and the grid's downloads."""
    v = a.modules[k]
    st.caption(f"Each token's spatial attention (softmax over pixels), {v.kind} tokenizer. "
               "Tile captions: share of the pixels the token wins; entropy over a uniform "
               "map's (1 = looks everywhere).")  # fmt: skip
    top = map_grid(a, v.maps, uid, cfg, v.stats.share)
    tok = st.selectbox("Enlarge token", list(range(len(v.maps))), key=f"enlarge-{uid}")
    st.image(tinted(a.image, v.maps[tok], cfg.cmap, cfg.alpha, top), caption=f"token {tok}",
             width=360)  # fmt: skip
    downloads(
        "Token maps",
        lambda fmt: token_grid_png(a.image, v.maps, cfg.cmap, cfg.alpha,
                                   f"{a.name}: module {k + 1}", fmt=fmt, shared=not cfg.stretch),
        f"{a.name}-token-maps-module{k + 1}",
        f"maps-{uid}",
    )  # fmt: skip


def show_groups_tab(a: ImageAnalysis, k: int, uid: str) -> None:
    """The semantic-group map of module k with each token's share."""
    v = a.modules[k]
    labels, share = v.groups, v.stats.share
    st.caption("Each pixel coloured by the token that claims it most (relative to its peak).")
    st.image(grouped(a.image, labels), width=360)
    pal = palette(len(v.maps))
    legend = " ".join(
        f"<span style='background:rgb{tuple(int(c) for c in pal[i])};padding:0 6px'>"
        f"t{i} {share[i]:.0%}</span>"
        for i in np.argsort(-share)
        if share[i] > 0
    )
    st.markdown(legend, unsafe_allow_html=True)
    if v.diversity.verdict != "diverse":
        st.warning(f"Tokens {v.diversity.verdict}: the colours may come from tiny differences "
                   "between near-identical maps.")  # fmt: skip
    group_downloads(a, labels, share, ("Semantic groups", "semantic groups", "groups"), k, uid)


def group_downloads(
    a: ImageAnalysis, labels: np.ndarray, weights: np.ndarray, names: tuple[str, str, str],
    k: int, uid: str,
) -> None:  # fmt: skip
    """PNG/SVG downloads of a per-pixel token labelling of module k (semantic groups or the
    projector view); ``names``: (button label, title words, file and key word)."""
    label, title, word = names
    downloads(
        label,
        lambda fmt: fig_export.groups_figure(
            a.image, labels, weights, f"{a.name}: {title}, module {k + 1}", fmt
        ),
        f"{a.name}-{word}-module{k + 1}",
        f"{word}-{uid}",
    )


def show_projector_tab(a: ImageAnalysis, k: int, uid: str) -> None:
    """Module k's projector: the token each pixel reads back from most (eq. 5)."""
    v = a.modules[k]
    if v.projector_labels is None:
        st.info("This module has no projector: the classifier reads its tokens directly.")
        return
    plabels, mass = v.projector_labels, v.stats.mass
    st.caption("For each pixel, the token it reads back from most (eq. 5 softmax over tokens).")
    st.image(grouped(a.image, plabels), width=360)
    names = [f"t{i:02d}" for i in range(len(mass))]  # zero-padded: sorted as numbers
    st.bar_chart(pd.DataFrame({"mean weight": mass}, index=names))
    group_downloads(a, plabels, mass, ("Projector view", "projector view", "projector"), k, uid)


def show_attention_tab(a: ImageAnalysis, k: int, uid: str) -> None:
    """Module k's token-to-token attention for a chosen layer and head (or their mean)."""
    v = a.modules[k]
    layers = v.token_attention
    if not layers:
        st.info("This module has no token attention.")
        return
    lay = 0  # 0-based here, shown 1-based
    if len(layers) > 1:
        lay = st.selectbox("Layer", list(range(len(layers))), key=f"layer-{uid}",
                           format_func=lambda j: f"layer {j + 1}")  # fmt: skip
    att = layers[lay]
    heads = ["mean"] + [str(h) for h in range(att.shape[0])]
    head = st.selectbox("Head", heads, key=f"head-{uid}")
    mat = att.mean(0) if head == "mean" else att[int(head)]
    names = (["cls"] if a.class_token else []) + [f"t{i}" for i in range(len(v.maps))]
    st.plotly_chart(attention_heatmap(mat, f"layer {lay + 1}, head {head}", names), key=f"hm-{uid}")
    downloads(
        "Token attention",
        lambda fmt: fig_export.heatmap_figure(
            mat, f"{a.name}: module {k + 1}, layer {lay + 1}, head {head}", xticks=names,
            yticks=names, fmt=fmt, uniform=1.0 / mat.shape[-1],
        ),
        f"{a.name}-token-attention-module{k + 1}-layer{lay + 1}-head{head}",
        f"att-{uid}",
    )  # fmt: skip


def show_propagated_tab(a: ImageAnalysis, k: int, uid: str, cfg: Settings) -> None:
    """Module k's maps after the transformer mixes them (Fig. 6, second row)."""
    prop = a.modules[k].propagated
    if prop is None:
        st.info("This module has no token attention to propagate the maps with.")
        return
    st.caption("Maps after the transformer mixes them: A_hat[l] = sum_l' W[l, l'] A[l'], W the "
               "last layer's attention (mean over heads).")  # fmt: skip
    w = a.modules[k].token_attention[-1].mean(0)
    if near_uniform(w[-len(prop) :, -len(prop) :], 1.0 / w.shape[-1]):
        st.info("The attention is ~ uniform, so every propagated map is ~ the mean of all "
                "maps: the tiles are (near) identical.")  # fmt: skip
    map_grid(a, prop, uid, cfg)
    downloads(
        "Propagated maps",
        lambda fmt: token_grid_png(a.image, prop, cfg.cmap, cfg.alpha,
                                   f"{a.name}: after the transformer, module {k + 1}", fmt=fmt,
                                   shared=not cfg.stretch),
        f"{a.name}-propagated-module{k + 1}",
        f"prop-{uid}",
    )  # fmt: skip


def show_token_table(a: ImageAnalysis, k: int, uid: str) -> None:
    """Module k's per-token numbers as a table and a CSV download."""
    v = a.modules[k]
    s = v.stats
    cols = {"share of pixels": s.share}
    if v.projector is not None:  # without a projector "mass" would repeat the share
        cols["projector mass"] = s.mass
    cols |= {"entropy (nats)": s.entropy, "entropy / uniform": s.entropy / s.uniform_entropy}
    df = pd.DataFrame(cols, index=[f"t{i}" for i in range(len(s.share))])
    if s.contribution is not None:
        df["logit change if removed"] = s.contribution
    st.dataframe(df.style.format("{:.3f}"), key=f"df-{uid}", height=36 * (len(df) + 1) + 3)
    st.download_button(
        "Per-token table (CSV)",
        df.to_csv().encode(),
        file_name=f"{Path(a.name).stem}-tokens-module{k + 1}.csv",
        mime="text/csv",
        key=f"csv-{uid}",
        on_click="ignore",
    )


# short names, so that all six fit a column of the side-by-side view without scrolling
TABS = ["Maps", "Groups", "Projector", "Attention", "Fig. 6", "Table"]


def show_module(a: ImageAnalysis, k: int, uid: str, cfg: Settings) -> None:
    """The views of one VT module of one image, one tab each."""
    t_maps, t_groups, t_proj, t_attn, t_prop, t_tok = st.tabs(TABS)
    with t_maps:
        show_maps_tab(a, k, uid, cfg)
    with t_groups:
        show_groups_tab(a, k, uid)
    with t_proj:
        show_projector_tab(a, k, uid)
    with t_attn:
        show_attention_tab(a, k, uid)
    with t_prop:
        show_propagated_tab(a, k, uid, cfg)
    with t_tok:
        show_token_table(a, k, uid)


def deletion_verdict(score: float) -> str:
    """The deletion score in words (|score| under 0.01: no measurable effect)."""
    if score > 0.01:
        return "tokens matter: removing the ones the map ranks first hurts more than chance"
    if score < -0.01:
        return "the map's ranking is worse than chance for this prediction"
    return "tokens redundant for this prediction: removing them in any order changes little"


def show_faithfulness(a: ImageAnalysis, path: str, image: tuple[str, bytes, str], uid: str) -> None:
    """Numbers (and verdicts in words) that say whether the maps explain this prediction."""
    name, data, digest = image
    st.caption(
        "Does the map explain the prediction? Remove the last module's tokens (before its "
        "transformer) in the order of their share of the semantic-group map and watch the "
        "predicted class's probability; compare with random orders. A score above 0 means "
        "the tokens the map calls important matter more than chance."
    )
    cols = st.columns(len(a.modules))
    for i, (col, m) in enumerate(zip(cols, a.modules, strict=True)):
        d = m.diversity
        col.metric(f"module {i + 1}: {d.verdict}", f"{d.effective_groups:.1f} groups",
                   help=f"effective number of semantic groups (exp of their entropy) of "
                   f"{len(m.maps)} tokens; mean map similarity {d.similarity:.2f}; "
                   f"{m.distinct} of {len(m.maps)} maps differ at all")  # fmt: skip
    if any(m.diversity.verdict == "collapsed" for m in a.modules):
        st.warning(
            "Token collapse: in at least one module the tokens attend to (nearly) the same "
            "place, so its maps are copies and its group picture comes from leftover noise."
        )
    d = a.deletion
    if d is not None:
        cls = a.classes[d.predicted]
        st.metric("deletion score", f"{d.score:+.4f}", help="mean gap between the curves")
        st.caption(deletion_verdict(d.score))
        st.plotly_chart(deletion_plot(d.curve, d.random_curve, cls), key=f"del-{uid}")
        downloads("Deletion curve", lambda fmt: fig_export.deletion_figure(d, cls, fmt),
                  f"{Path(name).stem}-deletion", f"del-{uid}")  # fmt: skip
    if st.checkbox(
        "Run the model-randomisation check (a few seconds)",
        key=f"rand-{uid}",
        help="Adebayo et al. 2018: re-initialise the layers from the top down; maps that "
        "depend on the learned weights should stop matching the trained model's.",
    ):
        r = get_randomisation(path, digest, data, name)
        df = pd.DataFrame(
            r["correlation"],
            index=[f"up to {s}" for s in r["steps"]],
            columns=[f"module {i + 1} maps" for i in range(r["correlation"].shape[1])],
        )
        st.caption("Spearman rank correlation with the trained model's maps.")
        st.dataframe(df.style.format("{:.2f}"), key=f"randdf-{uid}")


def show_model(path: str, image: tuple[str, bytes, str], uid: str, cfg: Settings) -> ImageAnalysis:
    """One model's prediction and views of one image."""
    name, data, digest = image
    a = get_analysis(path, digest, data, name)
    cls, p = a.top
    st.markdown(f"**{short(path)}** predicts **{cls}** ({p:.1%})")
    if len(a.classes) == 10 and set(a.classes) == set(CIFAR10_CLASSES):
        st.caption("This model knows only CIFAR-10's ten classes.")
    st.plotly_chart(predictions_bar(a.classes, a.probs), key=f"pred-{uid}")
    if not a.modules:
        st.info("A conv model: no visual tokens to show.")
        return a
    labels = [f"module {i + 1} ({m.kind})" for i, m in enumerate(a.modules)]
    k = module_index(cfg.module, len(a.modules))
    st.caption(f"Showing {labels[k]} of {len(labels)} (sidebar: VT module)")
    show_module(a, k, f"{uid}-{k}", cfg)
    with st.expander("Can these maps be trusted? Token ablation and randomisation checks"):
        show_faithfulness(a, path, image, uid)
    with st.expander("Filter vs recurrent: every module's semantic groups side by side"):
        cols = st.columns(len(a.modules))
        for i, (col, m) in enumerate(zip(cols, a.modules, strict=True)):
            col.image(grouped(a.image, m.groups), caption=labels[i], width="stretch")
    return a


def image_inputs() -> list[tuple[str, bytes]]:
    """(name, bytes) of the uploaded images, and of the example gallery when asked for (or
    while nothing is uploaded)."""
    uploads = st.file_uploader(
        f"Images (JPEG, PNG, WebP, BMP, GIF, TIFF; up to {MAX_UPLOAD_MB} MB and 64 megapixels each)",
        type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
        accept_multiple_files=True,
        key="upload",
    )
    examples = st.checkbox("Also show the example gallery", value=False, key="examples",
                           help="shown anyway while nothing is uploaded")  # fmt: skip
    items = [(f.name, f.getvalue()) for f in uploads or []]
    if examples or not uploads:
        for name, img in example_images().items():
            buf = io.BytesIO()
            img.save(buf, "PNG")
            items.append((name, buf.getvalue()))
    return items


def readable_images(items: list[tuple[str, bytes]]) -> list[tuple[str, bytes, str]]:
    """(name, bytes, SHA-256) of the images that can be shown; the others are named first."""
    readable = []
    for name, data in items:
        digest = hashlib.sha256(data).hexdigest()
        if len(data) > MAX_UPLOAD_BYTES:
            st.error(f"{name}: file is larger than {MAX_UPLOAD_MB} MB; skipped.")
            continue
        error = image_error(digest, data, name)
        if error is not None:
            st.error(f"Cannot show {error}")
            continue
        readable.append((name, data, digest))
    return readable


def page_start(n: int) -> int:
    """Index of the first image of the page chosen (PAGE_SIZE images per page)."""
    if n <= PAGE_SIZE:
        return 0
    return st.radio(
        f"{n} images, {PAGE_SIZE} per page",
        list(range(0, n, PAGE_SIZE)),
        format_func=lambda i: f"{i + 1}-{min(i + PAGE_SIZE, n)}",
        horizontal=True,
        key="page",
        help="a view setting redraws the images of this page only",
    )


@st.fragment
def show_image(idx: int, image: tuple[str, bytes, str], cfg: Settings) -> None:
    """One image: every chosen model's views, their verdict and the image's downloads (a
    fragment: its own widgets rerun this image only)."""
    name = image[0]
    st.divider()
    st.subheader(name)
    results: list[ImageAnalysis | None] = []
    for j, (col, path) in enumerate(zip(st.columns(len(cfg.models)), cfg.models, strict=True)):
        with col:
            try:
                results.append(show_model(path, image, f"{idx}-{j}", cfg))
            except Exception as err:  # one line on the page, the traceback in the server log
                log.exception("analysing %s with %s", name, path)
                shown = str(err).splitlines()[0][:300] if isinstance(err, ValueError) else ""
                st.error(
                    f"{name}: {short(path)} could not analyse it ({type(err).__name__}"
                    f"{': ' + shown if shown else ''}); the details are in the server log."
                )
                results.append(None)
    if len(results) == 2 and all(results):
        (ca, pa), (cb, pb) = results[0].top, results[1].top
        verdict = "agree" if ca == cb else "disagree"
        st.caption(f"The two models {verdict}: {short(cfg.models[0])} says {ca} ({pa:.1%}), "
                   f"{short(cfg.models[1])} says {cb} ({pb:.1%}).")  # fmt: skip
    for j, (path, a) in enumerate(zip(cfg.models, results, strict=True)):
        if a is not None:
            image_downloads(a, short(path), f"{idx}-{j}", cfg)


def image_downloads(a: ImageAnalysis, model: str, uid: str, cfg: Settings) -> None:
    """NPZ, JSON and report of one image under one model, named after both."""
    stem = f"{Path(a.name).stem}-{model}"
    c1, c2, c3 = st.columns(3)
    c1.download_button(f"Arrays, {model} (NPZ)", lambda: npz_bytes(a.to_arrays()),
                       file_name=f"{stem}.npz", mime="application/octet-stream",
                       key=f"dl-npz-{uid}", on_click="ignore")  # fmt: skip
    c2.download_button(f"Arrays, {model} (JSON)", a.json_bytes, file_name=f"{stem}.json",
                       mime="application/json", key=f"dl-json-{uid}", on_click="ignore")  # fmt: skip
    c3.download_button(f"One-page report, {model} (PNG)",
                       lambda: a.report(f"{a.name} - {model}", cfg.cmap, cfg.alpha),
                       file_name=f"{stem}-report.png", mime="image/png",
                       key=f"dl-report-{uid}", on_click="ignore")  # fmt: skip


def thumbnail_url(image: np.ndarray, side: int = 64) -> str:
    """A small PNG of ``image`` as a data URL (for the overview table's image column)."""
    im = Image.fromarray(image)
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def overview(readable: list[tuple[str, bytes, str]], cfg: Settings) -> int | None:
    """With several images, a sortable table first: each image's thumbnail, every model's
    top-1 and confidence, whether two models agree, the last module's diversity verdict and
    the deletion score. Selecting a row shows only that image; returns its index (None:
    nothing selected, the images are shown a page at a time)."""
    rows = []
    for name, data, digest in readable:
        row: dict = {"image": name}
        tops = []
        for path in cfg.models:
            m = short(path)
            try:
                a = get_analysis(path, digest, data, name)
            except Exception:  # the image's own section names the error
                log.exception("overview: %s with %s", name, path)
                row[f"{m}: top-1"] = "error"
                continue
            row.setdefault("thumbnail", thumbnail_url(a.tile))
            cls, p = a.top
            tops.append(cls)
            row[f"{m}: top-1"], row[f"{m}: confidence %"] = cls, round(100 * p, 1)
            row[f"{m}: tokens"] = a.modules[-1].diversity.verdict if a.modules else "-"
            row[f"{m}: deletion score"] = None if a.deletion is None else a.deletion.score
        if len(cfg.models) == 2:
            row["agree"] = len(tops) == 2 and tops[0] == tops[1]
        rows.append(row)
    df = pd.DataFrame(rows)
    st.caption("Click a row to show that image alone (click again to go back to all images); "
               "click a column header to sort. Tokens: the last module's diversity verdict.")  # fmt: skip
    event = st.dataframe(
        df,
        key="overview",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        column_config={"thumbnail": st.column_config.ImageColumn("thumbnail", width="small")}
        | {
            c: st.column_config.NumberColumn(format="%.1f" if "confidence" in c else "%+.4f")
            for c in df.columns
            if "confidence" in c or "deletion" in c
        },
    )
    picked = event.selection.rows if event is not None else []
    return int(picked[0]) if picked else None


def main() -> None:
    """The page: sidebar, model cards and dataset statistics, then the images, a page at
    a time (unreadable files named first)."""
    st.set_page_config(page_title="vt_explorer", layout="wide")
    cfg = sidebar()
    st.title("What does each visual token look at?")
    st.caption(
        "A Visual Transformer pools the feature map into a few tokens by spatial attention "
        "(eq. 1 filter tokenizer, eq. 2 recurrent), relates them with a transformer and "
        "projects them back onto the pixels. Upload images to see it on your own pictures."
    )
    # toggles, not expanders: an expander's charts are computed and sent even when closed
    c1, c2 = st.columns(2)
    if c1.toggle("Model cards: data, accuracy, curves, cost", key="cards"):
        for col, m in zip(st.columns(len(cfg.models)), cfg.models, strict=True):
            with col:
                show_card(m)
    if c2.toggle("Dataset statistics per token (`vt-explorer tokens`)", key="stats"):
        for col, m in zip(st.columns(len(cfg.models)), cfg.models, strict=True):
            with col:
                show_token_statistics(m)
    readable = readable_images(image_inputs())
    chosen = overview(readable, cfg) if len(readable) > 1 else None
    if chosen is not None:
        show_image(chosen, readable[chosen], cfg)
        return
    first = page_start(len(readable))
    for idx, image in enumerate(readable[first : first + PAGE_SIZE], start=first):
        show_image(idx, image, cfg)


if __name__ == "__main__":
    main()
