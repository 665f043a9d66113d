"""The sidebar: the models on offer (the operator's catalog and the visitor's own upload)
and how to draw the maps; :func:`sidebar` returns the :class:`~.state.Settings` record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from ..checkpoint import CheckpointError, load_checkpoint_bytes
from ..device import select_device
from .inputs import MAX_UPLOAD_BYTES, MAX_UPLOAD_MB
from .state import MODULE_CHOICES, OWN, Settings, catalog, labels, model_line, short

CMAPS = ["jet", "viridis", "inferno", "magma", "turbo", "gray"]
# the default comparison, the first of each tuple that is offered: the stride-16 head
# students fine-tuned with the diversity hinge (VT modules in place of Lite0's average
# pooling on its whole pretrained trunk: 85-92% held-out agreement with Lite0, tokens whose
# removal changes the answer; docs/head_vt.md), else the paper-placement ImageNet students,
# else the fine-tuned CIFAR-10 VT-Lite0 pair, else the CIFAR-scale pair. The head students
# without the hinge (imagenet-lite0-pool-vt-*) agree more (98-99%) but their token maps are
# near uniform: offered by name only.
DEFAULT_PAIR = (
    (
        "imagenet-lite0-pool-vt-recurrent-diverse",
        "imagenet-lite0-vt-recurrent",
        "cifar10-lite0-vt-recurrent",
        "vt-recurrent",
    ),
    (
        "imagenet-lite0-pool-vt-filter-diverse",
        "imagenet-lite0-vt-filter",
        "cifar10-lite0-vt-filter",
        "vt-filter",
    ),
)


def own_checkpoint_upload() -> None:
    """A visitor's own checkpoint (.safetensors + .json), held for this browser tab only;
    once loaded it is selected at once and labelled as theirs.

    The tab holds at most one: the loaded model, never the uploaded bytes. Once a pair is
    loaded, or refused, the uploader is replaced by an empty one (a fresh widget key), so
    Streamlit lets go of the files, the next attempt starts clean instead of failing beside
    the old files, and the reason for a refusal stays on screen. A refused pair keeps the
    previous models; "Forget my checkpoint" drops it."""
    gen = int(st.session_state.get("ck_upload_gen", 0))
    refused = st.session_state.pop("ck_upload_refused", None)
    if refused:
        st.sidebar.error(refused)
    own = st.session_state.get("own_checkpoint")
    if own is not None:
        st.sidebar.caption(f"Loaded: {own[2]} (this tab only; a new upload replaces it)")
        if st.sidebar.button("Forget my checkpoint", key="ck_forget"):
            st.session_state.pop("own_checkpoint", None)
            st.rerun()
    files = st.sidebar.file_uploader(
        "Your own checkpoint (NAME.safetensors + NAME.json)",
        type=["safetensors", "json"],
        accept_multiple_files=True,
        key="ck_upload" if gen == 0 else f"ck_upload-{gen}",
        help="Trained with `vt-explorer train`. Both files at once, at most "
        f"{MAX_UPLOAD_MB} MB each; kept for this browser tab only, never written to the "
        "server's checkpoint folders.",
    )
    if not files:
        return
    weights = [f for f in files if f.name.lower().endswith(".safetensors")]
    cards = [f for f in files if f.name.lower().endswith(".json")]
    if len(weights) != 1 or len(cards) != 1:
        st.sidebar.error("Upload exactly one NAME.safetensors and one NAME.json together.")
        return
    w, c = weights[0].getvalue(), cards[0].getvalue()
    _release(files)  # the bytes are read: Streamlit's upload store need not keep them
    if max(len(w), len(c)) > MAX_UPLOAD_BYTES:
        _refuse(f"Cannot use that checkpoint: a file is over {MAX_UPLOAD_MB} MB.", gen)
    name = Path(cards[0].name).stem
    key = "upload:" + hashlib.sha256(w + b"\0" + c).hexdigest()
    try:
        ck = load_checkpoint_bytes(
            w, c, name, device=select_device(), file_names=(weights[0].name, cards[0].name)
        )
    except CheckpointError as err:
        _refuse(f"Cannot use that checkpoint: {err}", gen)
    del w, c, files, weights, cards
    st.session_state["own_checkpoint"] = (key, ck, OWN + name)  # the previous one goes
    st.session_state["model_a"] = key
    st.session_state["ck_upload_gen"] = gen + 1  # an empty uploader: the bytes are let go
    st.rerun()


def _release(files: list) -> None:
    """Drop uploaded files from Streamlit's per-session upload store. It keeps a file until
    the browser removes it from the widget or the tab closes, even once the widget is gone:
    without this, every checkpoint a tab uploaded stayed in the server's memory (measured
    with a real server, benchmarks.experiments.upload_memory: +40 MB per 40 MB pair)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    store = getattr(ctx, "uploaded_file_mgr", None)
    if ctx is None or store is None:
        return
    for f in files:
        file_id = getattr(f, "file_id", None)
        if file_id is not None:
            store.remove_file(ctx.session_id, file_id)


def _refuse(message: str, gen: int) -> None:
    """Drop the visitor's refused pair: the message is kept for the next run, the uploader
    is replaced by an empty one, the previous models stay."""
    st.session_state["ck_upload_refused"] = message
    st.session_state["ck_upload_gen"] = gen + 1
    st.rerun()


def model_choices() -> list[str]:
    """Model keys on offer: the visitor's own checkpoint first, then the operator's catalog
    (fills this session's :func:`~.state.labels` with the names people see); stops the page
    when there is none."""
    shipped = catalog()
    shown = labels()
    shown.clear()
    shown.update({stem: name for name, stem in shipped.items()})
    own_checkpoint_upload()
    choices = list(shipped.values())
    own = st.session_state.get("own_checkpoint")
    if own is not None:
        choices.insert(0, own[0])
        shown[own[0]] = own[2]
    if not choices:
        st.error(
            "No checkpoints in the server's checkpoint folders. Train one with "
            "`vt-explorer train`, or upload your own in the sidebar."
        )
        st.stop()
    for slot in ("model_a", "model_b"):
        if st.session_state.get(slot) not in choices:
            st.session_state.pop(slot, None)
    return choices


def default_model(choices: list[str], names: tuple[str, ...]) -> str:
    """The first of ``names`` offered (exact name, else a name ending in -NAME), else the
    first choice."""
    for name in names:
        for c in choices:
            if short(c) == name or short(c).endswith("-" + name):
                return c
    return choices[0]


def _describe(key: str) -> None:
    """One line under a model picker: what the model is and its held-out top-1."""
    st.sidebar.caption(model_line(key))


def sidebar() -> Settings:
    """Models (operator's catalog + the visitor's own upload) and display settings."""
    st.sidebar.title("vt_explorer")
    choices = model_choices()
    # defaults go through session state (a widget given both an index and a state value
    # warns); an uploaded checkpoint sets model_a itself
    st.session_state.setdefault("model_a", default_model(choices, DEFAULT_PAIR[0]))
    names = {k: short(k) for k in choices}  # this session's names, bound to its widgets
    models = [st.sidebar.selectbox("Model", choices, format_func=names.__getitem__, key="model_a")]
    _describe(models[0])
    if st.sidebar.checkbox("Compare with a second model", value=True, key="compare") and (
        len(choices) > 1
    ):
        st.session_state.setdefault("model_b", default_model(choices, DEFAULT_PAIR[1]))
        models.append(
            st.sidebar.selectbox(
                "Second model", choices, format_func=names.__getitem__, key="model_b"
            )
        )
        _describe(models[1])
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
    view = st.sidebar.radio(
        "What the models see",
        ["model", "letterbox"],
        key="view",
        format_func=lambda v: (
            "their own view (ImageNet models: the centre crop)"
            if v == "model"
            else "the whole photo, padded to a square (letterbox)"
        ),
        help="ImageNet models were trained on centre crops: by default they see the central "
        "square of each photo and every map is drawn on that square (the photo above each "
        "column frames it). Letterbox pads the photo to a square with the mean colour, so the "
        "model sees all of it, smaller, as it was not trained to.",
    )
    return Settings(models, cmap, alpha, stretch, module, view)
