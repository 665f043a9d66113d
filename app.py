"""vt_explorer: see which image region each visual token claims, how tokens attend to one
another, what the model predicts, and how the filter and recurrent tokenizers differ.

Run with ``bash scripts/app.sh`` (or ``streamlit run app.py``). Widgets and layout only;
all numbers come from vt_explorer.explore / analysis, all figures from vt_explorer.viz.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from vt_explorer.analysis import (
    projector_groups,
    propagated_maps,
    randomisation_check,
    semantic_groups,
)
from vt_explorer.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from vt_explorer.data import decode_image
from vt_explorer.device import select_device
from vt_explorer.examples import example_images
from vt_explorer.explore import (
    ImageAnalysis,
    analyse,
    analysis_arrays,
    distinct_tokens,
    list_checkpoints,
    npz_bytes,
)
from vt_explorer.headless import parse_token_statistics, read_token_statistics
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

st.set_page_config(page_title="vt_explorer", layout="wide")
MAX_UPLOAD_BYTES = 40 * 1024 * 1024
PAGE_SIZE = 4  # images drawn per page (each costs about 0.7 s per rerun)
CMAPS = ["jet", "viridis", "inferno", "magma", "turbo", "gray"]


@st.cache_resource(show_spinner="Loading the model...")
def get_checkpoint(path: str) -> LoadedCheckpoint:
    """Load a checkpoint once per process, on the GPU when there is one."""
    return load_checkpoint(path, device=select_device())


@st.cache_data(show_spinner="Running the model...", max_entries=256)
def get_analysis(path: str, digest: str, _data: bytes, name: str) -> ImageAnalysis:
    """Trace one image once per (checkpoint, image bytes)."""
    return analyse(get_checkpoint(path), decode_image(_data, name), name)


@st.cache_data(max_entries=256)
def image_error(digest: str, _data: bytes, name: str) -> str | None:
    """Why an upload cannot be shown (None when it decodes), checked once per image."""
    try:
        decode_image(_data, name)
    except ValueError as err:
        return str(err)
    return None


@st.cache_data(show_spinner="Randomising the model layer by layer...", max_entries=64)
def get_randomisation(path: str, digest: str, _data: bytes, name: str) -> dict:
    """Cascading model-randomisation check of one image (Adebayo et al. 2018)."""
    ck = get_checkpoint(path)
    device = next(ck.model.parameters()).device
    x = ck.preprocess(decode_image(_data, name))[None].to(device)
    res = randomisation_check(ck.model, x)
    return {"steps": res.steps, "correlation": res.correlation}


@st.cache_data(max_entries=4096, show_spinner=False)
def tinted(image: np.ndarray, heat: np.ndarray, cmap: str, alpha: float) -> np.ndarray:
    """``overlay``, memoised: reruns for other views (token, layer, head, module) redraw
    nothing that did not change."""
    return overlay(image, heat, cmap, alpha)


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
    )
    c2.download_button(
        f"{label} (SVG)",
        lambda: make("svg"),
        file_name=f"{stem}.svg",
        mime="image/svg+xml",
        key=f"svg-{uid}",
    )


def short(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


# ---- sidebar: models and display ---------------------------------------------------------
st.sidebar.title("vt_explorer")
shipped = list_checkpoints()
custom = st.sidebar.text_input(
    "Your own checkpoint (path, without suffix)",
    key="custom_path",
    help="A checkpoint trained with `vt-explorer train`: PATH.safetensors + PATH.json",
)
choices = list(shipped)
if custom.strip():
    try:
        get_checkpoint(custom.strip())
        choices.insert(0, custom.strip())
    except CheckpointError as err:
        st.sidebar.error(f"Cannot use that checkpoint: {err}")
if not choices:
    st.error(
        "No checkpoints found in checkpoints/. Train one with `vt-explorer train` or enter a path."
    )
    st.stop()


def default_index(*words: str) -> int:
    """Index of the first choice whose name contains the first word that matches any."""
    for word in words:
        for i, c in enumerate(choices):
            if word in short(c):
                return i
    return 0


# default comparison: the ImageNet-pretrained VT-Lite0 pair when shipped (maps at 14x14 of a
# 224-pixel photo), else the CIFAR-scale pair (16x16 maps of the photo shrunk to 32x32)
model_a = st.sidebar.selectbox(
    "Model",
    choices,
    index=default_index("lite0-vt-recurrent", "vt-recurrent"),
    format_func=short,
    key="model_a",
)
compare = st.sidebar.checkbox("Compare with a second model", value=True, key="compare")
model_b = None
if compare and len(choices) > 1:
    model_b = st.sidebar.selectbox(
        "Second model",
        choices,
        index=default_index("lite0-vt-filter", "vt-filter"),
        format_func=short,
        key="model_b",
    )
cmap = st.sidebar.selectbox("Colour map", CMAPS, key="cmap")
alpha = st.sidebar.slider("Map opacity", 0.0, 1.0, 0.55, 0.05, key="alpha")
models = [m for m in (model_a, model_b) if m]


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
    if met:
        st.metric(
            "Top-1",
            f"{met['accuracy']:.2%}",
            help=f"on {met['n']} images of {card['dataset']['val']['source']}",
        )
        per = met.get("per_class") or {}
        st.dataframe(pd.DataFrame({"accuracy": per}).T, key=f"per-{path}")
        st.plotly_chart(confusion_heatmap(met["confusion"], met["classes"]), key=f"conf-{path}")
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


# ---- images --------------------------------------------------------------------------------
st.title("What does each visual token look at?")
st.caption(
    "A Visual Transformer pools the feature map into a few tokens by spatial attention "
    "(eq. 1 filter tokenizer, eq. 2 recurrent), relates them with a transformer and projects "
    "them back onto the pixels. Upload images to see it on your own pictures."
)
with st.expander("Model cards: data, accuracy, confusion matrix, training curves, cost"):
    for col, m in zip(st.columns(len(models)), models, strict=True):
        with col:
            show_card(m)


def show_token_statistics(path: str) -> None:
    """Dataset-level token statistics from ``vt-explorer tokens`` (PATH.tokens.json)."""
    found = Path(path + ".tokens.json")
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
        elif found.is_file():
            stats = read_token_statistics(found)
    except ValueError as err:
        st.error(f"Cannot use that file: {err}")
    if stats is None:
        st.info(f"No statistics for {short(path)} yet: run `vt-explorer tokens {path} DATA "
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


with st.expander("Dataset statistics per token (from `vt-explorer tokens`)"):
    for col, m in zip(st.columns(len(models)), models, strict=True):
        with col:
            show_token_statistics(m)

uploads = st.file_uploader(
    "Images (JPEG, PNG, WebP, BMP, GIF; any size)",
    type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
    accept_multiple_files=True,
    key="upload",
)
use_examples = (
    st.checkbox(
        "Also show the example gallery",
        value=False,
        key="examples",
        help="shown anyway while nothing is uploaded",
    )
    or not uploads
)
items: list[tuple[str, bytes]] = []
for f in uploads or []:
    items.append((f.name, f.getvalue()))
if use_examples:
    for name, img in example_images().items():
        buf = io.BytesIO()
        img.save(buf, "PNG")
        items.append((name, buf.getvalue()))


def show_module(a: ImageAnalysis, k: int, uid: str) -> None:
    """The views of one VT module of one image."""
    v = a.modules[k]
    maps = v.maps
    n = len(maps)
    t_maps, t_groups, t_proj, t_attn, t_prop, t_tok = st.tabs(
        [
            "Token maps",
            "Semantic groups",
            "Projector view",
            "Token attention",
            "Propagated (Fig. 6)",
            "Per token",
        ]
    )
    with t_maps:
        st.caption(f"Each token's spatial attention (softmax over pixels), {v.kind} tokenizer.")
        cols = st.columns(8)
        for i in range(n):
            cols[i % 8].image(
                tinted(a.tile, maps[i], cmap, alpha), caption=f"token {i}", width="stretch"
            )
        tok = st.selectbox("Enlarge token", list(range(n)), key=f"enlarge-{uid}")
        st.image(tinted(a.image, maps[tok], cmap, alpha), caption=f"token {tok}", width=360)
        downloads(
            "Token maps",
            lambda fmt: token_grid_png(
                a.image, maps, cmap, alpha, f"{a.name}: module {k + 1}", fmt=fmt
            ),
            f"{a.name}-token-maps-module{k + 1}",
            f"maps-{uid}",
        )
    with t_groups:
        labels, share = semantic_groups(maps)
        st.caption("Each pixel coloured by the token that claims it most (relative to its peak).")
        st.image(grouped(a.image, labels), width=360)
        pal = palette(n)
        legend = " ".join(
            f"<span style='background:rgb{tuple(int(c) for c in pal[i])};padding:0 6px'>"
            f"t{i} {share[i]:.0%}</span>"
            for i in np.argsort(-share)
            if share[i] > 0
        )
        st.markdown(legend, unsafe_allow_html=True)
        downloads(
            "Semantic groups",
            lambda fmt: fig_export.groups_figure(
                a.image, labels, share, f"{a.name}: semantic groups, module {k + 1}", fmt
            ),
            f"{a.name}-groups-module{k + 1}",
            f"groups-{uid}",
        )
    with t_proj:
        if v.projector is None:
            st.info("This module has no projector: the classifier reads its tokens directly.")
        else:
            plabels, mass = projector_groups(v.projector)
            st.caption(
                "For each pixel, the token it reads back from most (eq. 5 softmax over tokens)."
            )
            st.image(grouped(a.image, plabels), width=360)
            st.bar_chart(pd.DataFrame({"mean weight": mass}, index=[f"t{i}" for i in range(n)]))
            downloads(
                "Projector view",
                lambda fmt: fig_export.groups_figure(
                    a.image, plabels, mass, f"{a.name}: projector view, module {k + 1}", fmt
                ),
                f"{a.name}-projector-module{k + 1}",
                f"proj-{uid}",
            )
    with t_attn:
        layers = v.token_attention
        lay = (
            st.selectbox("Layer", list(range(len(layers))), key=f"layer-{uid}")
            if len(layers) > 1
            else 0
        )
        att = layers[lay]
        heads = ["mean"] + [str(h) for h in range(att.shape[0])]
        head = st.selectbox("Head", heads, key=f"head-{uid}")
        mat = att.mean(0) if head == "mean" else att[int(head)]
        names = (["cls"] if a.class_token else []) + [f"t{i}" for i in range(n)]
        st.plotly_chart(attention_heatmap(mat, f"layer {lay}, head {head}", names), key=f"hm-{uid}")
        downloads(
            "Token attention",
            lambda fmt: fig_export.heatmap_figure(
                mat, f"{a.name}: module {k + 1}, layer {lay}, head {head}", xticks=names,
                yticks=names, fmt=fmt,
            ),
            f"{a.name}-token-attention-module{k + 1}-layer{lay}-head{head}",
            f"att-{uid}",
        )  # fmt: skip
    with t_prop:
        st.caption("Maps after the transformer mixes them: A_hat[l] = sum_l' W[l, l'] A[l'].")
        att = v.token_attention[-1]
        if a.class_token:
            att = att[:, 1:, 1:] / att[:, 1:, 1:].sum(-1, keepdims=True)
        prop = propagated_maps(maps, att)
        cols = st.columns(8)
        for i in range(n):
            cols[i % 8].image(
                tinted(a.tile, prop[i], cmap, alpha), caption=f"token {i}", width="stretch"
            )
        downloads(
            "Propagated maps",
            lambda fmt: token_grid_png(
                a.image, prop, cmap, alpha, f"{a.name}: after the transformer, module {k + 1}",
                fmt=fmt,
            ),
            f"{a.name}-propagated-module{k + 1}",
            f"prop-{uid}",
        )  # fmt: skip
    with t_tok:
        s = v.stats
        df = pd.DataFrame(
            {
                "share of pixels": s.share,
                "projector mass": s.mass,
                "entropy (nats)": s.entropy,
                "entropy / uniform": s.entropy / s.uniform_entropy,
            },
            index=[f"t{i}" for i in range(n)],
        )
        if s.contribution is not None:
            df["logit change if removed"] = s.contribution
        st.dataframe(df.style.format("{:.3f}"), key=f"df-{uid}")
        st.download_button(
            "Per-token table (CSV)",
            df.to_csv().encode(),
            file_name=f"{a.name}-tokens-module{k + 1}.csv",
            mime="text/csv",
            key=f"csv-{uid}",
        )


def show_faithfulness(a: ImageAnalysis, path: str, name: str, data: bytes, digest: str,
                      uid: str) -> None:  # fmt: skip
    """Numbers that say whether the maps explain this prediction."""
    st.caption(
        "Does the map explain the prediction? Remove the last module's tokens (before its "
        "transformer) in the order of their share of the semantic-group map and watch the "
        "predicted class's probability; compare with random orders. A score above 0 means "
        "the tokens the map calls important matter more than chance."
    )
    counts = [distinct_tokens(m.maps) for m in a.modules]
    cols = st.columns(len(counts))
    for i, (col, c) in enumerate(zip(cols, counts, strict=True)):
        col.metric(f"distinct maps, module {i + 1}", f"{c} of {len(a.modules[i].maps)}")
    if min(counts) == 1:
        st.warning(
            "Token collapse: in at least one module every token attends to the same place, so "
            "its tokens are copies and removing one changes nothing."
        )
    d = a.deletion
    if d is not None:
        cls = a.classes[d.predicted]
        st.metric("deletion score", f"{d.score:+.4f}", help="mean gap between the curves")
        st.plotly_chart(deletion_plot(d.curve, d.random_curve, cls), key=f"del-{uid}")
        downloads(
            "Deletion curve",
            lambda fmt: fig_export.deletion_figure(d, cls, fmt),
            f"{name}-deletion",
            f"del-{uid}",
        )
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


def show_model(path: str, name: str, data: bytes, digest: str, uid: str) -> ImageAnalysis | None:
    a = get_analysis(path, digest, data, name)
    cls, p = a.top
    st.markdown(f"**{short(path)}** predicts **{cls}** ({p:.1%})")
    st.plotly_chart(predictions_bar(a.classes, a.probs), key=f"pred-{uid}")
    if not a.modules:
        st.info("A conv model: no visual tokens to show.")
        return a
    labels = [f"module {i + 1} ({m.kind})" for i, m in enumerate(a.modules)]
    k = st.radio(
        "VT module",
        list(range(len(labels))),
        format_func=lambda i: labels[i],
        horizontal=True,
        key=f"mod-{uid}",
    )
    show_module(a, k, f"{uid}-{k}")
    with st.expander("Can these maps be trusted? Token ablation and randomisation checks"):
        show_faithfulness(a, path, name, data, digest, uid)
    with st.expander("Filter vs recurrent: every module's semantic groups side by side"):
        cols = st.columns(len(a.modules))
        for i, (col, m) in enumerate(zip(cols, a.modules, strict=True)):
            col.image(
                grouped(a.image, semantic_groups(m.maps)[0]), caption=labels[i], width="stretch"
            )
    return a


# unreadable files are named first; the readable ones are shown a page at a time, each
# image in its own fragment (its widgets rerun that image only, not the whole page)
readable: list[tuple[str, bytes, str]] = []
for name, data in items:
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"{name}: file is larger than {MAX_UPLOAD_BYTES // 2**20} MB; skipped.")
        continue
    error = image_error(digest, data, name)
    if error is not None:
        st.error(f"Cannot read {error}")
        continue
    readable.append((name, data, digest))
first = 0
if len(readable) > PAGE_SIZE:
    starts = list(range(0, len(readable), PAGE_SIZE))
    first = st.radio(
        f"{len(readable)} images, {PAGE_SIZE} per page",
        starts,
        format_func=lambda i: f"{i + 1}-{min(i + PAGE_SIZE, len(readable))}",
        horizontal=True,
        key="page",
        help="a view setting redraws the images of this page only",
    )


@st.fragment
def show_image(idx: int, name: str, data: bytes, digest: str) -> None:
    """One image: every chosen model's views, their verdict and the image's downloads."""
    st.divider()
    st.subheader(name)
    cols = st.columns(len(models))
    results = []
    for j, (col, path) in enumerate(zip(cols, models, strict=True)):
        with col:
            results.append(show_model(path, name, data, digest, f"{idx}-{j}"))
    if len(results) == 2 and all(results):
        (ca, pa), (cb, pb) = results[0].top, results[1].top
        verdict = "agree" if ca == cb else "disagree"
        st.caption(
            f"The two models {verdict}: {short(models[0])} says {ca} ({pa:.1%}), {short(models[1])} says {cb} ({pb:.1%})."
        )
    a0 = results[0]
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Arrays of this image (NPZ)",
        lambda a=a0: npz_bytes(analysis_arrays(a.probs, a.modules, a.image, a.deletion)),
        file_name=f"{name}-{short(models[0])}.npz",
        mime="application/octet-stream",
        key=f"dl-npz-{idx}",
    )
    c2.download_button(
        "Arrays of this image (JSON)",
        lambda a=a0: json.dumps(
            {
                k: v.tolist()
                for k, v in analysis_arrays(a.probs, a.modules, None, a.deletion).items()
            }
            | {"classes": a.classes, "kinds": [m.kind for m in a.modules]}
        ),
        file_name=f"{name}-{short(models[0])}.json",
        mime="application/json",
        key=f"dl-json-{idx}",
    )
    c3.download_button(
        "One-page report (PNG)",
        lambda a=a0: fig_export.report_figure(
            f"{a.name} - {short(models[0])}",
            a.image,
            a.classes,
            a.probs,
            [m.maps for m in a.modules],
            [m.token_attention[0] if m.token_attention else np.zeros(0) for m in a.modules],
            [m.kind for m in a.modules],
            cmap,
            alpha,
            a.deletion,
        ),
        file_name=f"{name}-{short(models[0])}-report.png",
        mime="image/png",
        key=f"dl-report-{idx}",
    )


for idx, (name, data, digest) in enumerate(readable[first : first + PAGE_SIZE], start=first):
    show_image(idx, name, data, digest)
