"""vt_explorer: see which image region each visual token claims, how tokens attend to one
another, what the model predicts, and how the filter and recurrent tokenizers differ.

Run with ``bash scripts/app.sh`` (or ``streamlit run app.py``). Widgets and layout only;
all numbers come from vt_explorer.explore / analysis, all figures from vt_explorer.viz.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pandas as pd
import streamlit as st

from vt_explorer.analysis import projector_groups, propagated_maps, semantic_groups
from vt_explorer.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from vt_explorer.data import decode_image
from vt_explorer.device import select_device
from vt_explorer.examples import example_images
from vt_explorer.explore import ImageAnalysis, analyse, list_checkpoints
from vt_explorer.viz import (
    attention_heatmap,
    confusion_heatmap,
    curves_figure,
    group_image,
    overlay,
    palette,
    predictions_bar,
    token_grid_png,
)

st.set_page_config(page_title="vt_explorer", layout="wide")
MAX_UPLOAD_BYTES = 40 * 1024 * 1024
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


def default_index(word: str) -> int:
    for i, c in enumerate(choices):
        if word in short(c):
            return i
    return 0


model_a = st.sidebar.selectbox(
    "Model", choices, index=default_index("vt-recurrent"), format_func=short, key="model_a"
)
compare = st.sidebar.checkbox("Compare with a second model", value=True, key="compare")
model_b = None
if compare and len(choices) > 1:
    model_b = st.sidebar.selectbox(
        "Second model", choices, index=default_index("vt-filter"), format_func=short, key="model_b"
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
                overlay(a.image, maps[i], cmap, alpha), caption=f"token {i}", width="stretch"
            )
        tok = st.selectbox("Enlarge token", list(range(n)), key=f"enlarge-{uid}")
        st.image(overlay(a.image, maps[tok], cmap, alpha), caption=f"token {tok}", width=360)
        st.download_button(
            "Download token maps (PNG)",
            lambda: token_grid_png(a.image, maps, cmap, alpha, f"{a.name}: module {k + 1}"),
            file_name=f"token-maps-module{k + 1}.png",
            mime="image/png",
            key=f"dl-maps-{uid}",
        )
    with t_groups:
        labels, share = semantic_groups(maps)
        st.caption("Each pixel coloured by the token that claims it most (relative to its peak).")
        st.image(group_image(a.image, labels), width=360)
        pal = palette(n)
        legend = " ".join(
            f"<span style='background:rgb{tuple(int(c) for c in pal[i])};padding:0 6px'>"
            f"t{i} {share[i]:.0%}</span>"
            for i in np.argsort(-share)
            if share[i] > 0
        )
        st.markdown(legend, unsafe_allow_html=True)
    with t_proj:
        if v.projector is None:
            st.info("This module has no projector: the classifier reads its tokens directly.")
        else:
            plabels, mass = projector_groups(v.projector)
            st.caption(
                "For each pixel, the token it reads back from most (eq. 5 softmax over tokens)."
            )
            st.image(group_image(a.image, plabels), width=360)
            st.bar_chart(pd.DataFrame({"mean weight": mass}, index=[f"t{i}" for i in range(n)]))
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
    with t_prop:
        st.caption("Maps after the transformer mixes them: A_hat[l] = sum_l' W[l, l'] A[l'].")
        att = v.token_attention[-1]
        if a.class_token:
            att = att[:, 1:, 1:] / att[:, 1:, 1:].sum(-1, keepdims=True)
        prop = propagated_maps(maps, att)
        cols = st.columns(8)
        for i in range(n):
            cols[i % 8].image(
                overlay(a.image, prop[i], cmap, alpha), caption=f"token {i}", width="stretch"
            )
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
    with st.expander("Filter vs recurrent: every module's semantic groups side by side"):
        cols = st.columns(len(a.modules))
        for i, (col, m) in enumerate(zip(cols, a.modules, strict=True)):
            col.image(
                group_image(a.image, semantic_groups(m.maps)[0]), caption=labels[i], width="stretch"
            )
    return a


for idx, (name, data) in enumerate(items):
    digest = hashlib.sha256(data).hexdigest()
    st.divider()
    st.subheader(name)
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"{name}: file is larger than {MAX_UPLOAD_BYTES // 2**20} MB; skipped.")
        continue
    error = image_error(digest, data, name)
    if error is not None:
        st.error(f"Cannot read {error}")
        continue
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
    arrays = {
        "probs": a0.probs.tolist(),
        "classes": a0.classes,
        "modules": [{"kind": m.kind, "tokenizer_attention": m.maps.tolist()} for m in a0.modules],
    }
    st.download_button(
        "Download this image's arrays (JSON)",
        json.dumps(arrays),
        file_name=f"{name}.json",
        mime="application/json",
        key=f"dl-json-{idx}",
    )
