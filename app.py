"""vt_explorer app (placeholder until the explorer lands): pick a model, see its summary.

Run with ``bash scripts/app.sh`` (or ``streamlit run app.py``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from vt_explorer.device import select_device
from vt_explorer.model import count_complexity, create_model, get_config, list_models

st.set_page_config(page_title="vt_explorer", layout="wide")


@st.cache_resource(show_spinner="Building the model...")
def load_model(name: str) -> torch.nn.Module:
    """Build a registered model once per process (random weights until checkpoints ship)."""
    torch.manual_seed(0)
    return create_model(name).eval()


@st.cache_data(show_spinner="Counting parameters and FLOPs...")
def summary(name: str) -> dict:
    """Parameter and FLOP counts of a registered model, per stage."""
    return count_complexity(load_model(name)).to_dict()


st.title("vt_explorer")
st.caption(
    "Visual Transformers (Wu et al., arXiv 2006.03677): a CNN whose last stage pools the "
    "feature map into a few visual tokens, relates them with a transformer and projects "
    "them back onto the pixels."
)
names = list_models("classification")
name = st.sidebar.selectbox(
    "Model", names, index=names.index("vt_resnet20"), key="model", help="a registered config"
)
cfg = get_config(name)
info = summary(name)
st.subheader(name)
st.write(cfg.description)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Parameters", f"{info['params'] / 1e6:.3f} M")
c2.metric("GMACs / image", f"{info['macs'] / 1e9:.4f}")
c3.metric("Input", f"{cfg.input_size} x {cfg.input_size}")
c4.metric("Device", str(select_device()))
rows = [
    {"stage": s, "params (M)": v["params"] / 1e6, "GMACs": v["flops"] / 2e9}
    for s, v in info["stages"].items()
]
st.dataframe(pd.DataFrame(rows), hide_index=True, key="stages")
if cfg.vt is not None:
    st.markdown(
        f"**VT stage**: {cfg.vt.num_modules} modules ({', '.join(cfg.vt.tokenizer_kinds())} "
        f"tokenizers), L = {cfg.vt.tokens} tokens of width {cfg.vt.token_dim}, "
        f"{cfg.vt.heads}-head {cfg.vt.transformer} transformer."
    )
st.info("Random weights: trained checkpoints and the token explorer arrive with later releases.")
