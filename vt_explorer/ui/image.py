"""One image on the page: its predictions, the pickers shared by both models (a token to
highlight, a pixel), one tab per view (:data:`VIEWS`, each a function of
:mod:`vt_explorer.ui.views`) and the downloads. Only the open tab is drawn
(``st.tabs(on_change="rerun")``), and the image is a fragment: a widget of one image reruns
that image only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import streamlit as st

from ..explore import ImageAnalysis, npz_bytes
from ..exports import zip_bytes
from ..model.config import CIFAR10_CLASSES
from ..viz.linked import cell_of
from .state import (
    Image,
    Picks,
    Settings,
    framed_photo,
    get_analysis,
    model_identity,
    model_line,
    module_index,
    prediction_figure,
    reference_top5,
    short,
)
from .views import (
    UNSURE_BELOW,
    Slot,
    view_all_modules,
    view_attention,
    view_checks,
    view_groups,
    view_maps,
    view_pixel,
    view_projector,
    view_propagated,
    view_table,
)

log = logging.getLogger("vt_explorer.app")

# the tabs, in order; short names so that every tab is visible without scrolling
VIEWS: dict[str, Callable[[Slot, Settings, Picks], None]] = {
    "Maps": view_maps,
    "Groups": view_groups,
    "Projector": view_projector,
    "Attention": view_attention,
    "Fig. 6": view_propagated,
    "Pixel": view_pixel,
    "Table": view_table,
    "Checks": view_checks,
    "All modules": view_all_modules,
}


def view_row(
    view: Callable[[Slot, Settings, Picks], None],
    slots: list[Slot | None],
    cfg: Settings,
    picks: Picks,
) -> None:
    """One view as one row: each model's figure in its own column, under its title."""
    for col, s in zip(st.columns(len(slots)), slots, strict=True):
        with col:
            if s is None:
                continue
            if not s.a.modules:
                st.info(f"{short(s.key)} is a conv model: no visual tokens to show.")
                continue
            st.markdown(f"**{s.title}**")
            view(s, cfg, picks)


def _predict(key: str, image: Image, uid: str, cfg: Settings) -> Slot | None:
    """One model's prediction of the image in its column; its slot (None on an error,
    which is one line here and a traceback in the server log)."""
    name, data, digest = image
    try:
        a = get_analysis(key, digest, data, name, cfg.view)
    except Exception as err:
        log.exception("analysing %s with %s", name, key)
        shown = str(err).splitlines()[0][:300] if isinstance(err, ValueError) else ""
        st.error(
            f"{name}: {short(key)} could not analyse it ({type(err).__name__}"
            f"{': ' + shown if shown else ''}); the details are in the server log."
        )
        return None
    cls, p = a.top
    unsure = f" - unsure: the top class has only {p:.0%}" if p < UNSURE_BELOW else ""
    st.markdown(f"**{short(key)}** predicts **{cls}** ({p:.1%}){unsure}")
    st.caption(model_line(key))
    _view_note(a, digest)
    if len(a.classes) == 10 and set(a.classes) == set(CIFAR10_CLASSES):
        st.caption("This model knows only CIFAR-10's ten classes.")
    chart = prediction_figure((model_identity(key), digest, cfg.view), a.classes, a.probs)
    st.plotly_chart(chart, key=f"pred-{uid}")
    if a.model.get("teacher"):  # an ImageNet VT: the network it stands in for, as reference
        ref = reference_top5(digest, data, name, cfg.view)
        st.caption(
            "Lite0 itself (the network this VT was distilled from, its teacher): "
            + ", ".join(f"{c} {p:.0%}" for c, p in ref)
        )
    if not a.modules:
        return Slot(key, a, 0, image, uid)
    target = _class_picker(a, uid)
    if target is not None:
        a = get_analysis(key, digest, data, name, cfg.view, target)
    k = module_index(cfg.module, len(a.modules))
    st.caption(
        f"Showing module {k + 1} ({a.modules[k].kind}) of {len(a.modules)} (sidebar: VT module)"
    )
    return Slot(key, a, k, image, uid)


def _class_picker(a: ImageAnalysis, uid: str) -> int | None:
    """Which class the token numbers explain: the predicted one (default), any of the top 5,
    or any class (type to search); None for the predicted one. Each model has its own
    picker: two models' class lists need not agree."""
    order = [int(i) for i in np.argsort(-a.probs)]
    pred = order[0]
    options: list[int | None] = [None, *order[1:]]

    def label(i: int | None) -> str:
        j = pred if i is None else i
        what = "the predicted class: " if i is None else ""
        return f"{what}{a.classes[j]} ({a.probs[j]:.1%})"

    return st.selectbox(
        "Explain the class",
        options,
        format_func=label,
        key=f"target-{uid}",
        help="Token contributions, the deletion curve and single-token drops follow the "
        "class picked here: the most probable come first, type to find any other.",
    )


def _view_note(a: ImageAnalysis, digest: str) -> None:
    """Which part of the photo the model saw: the whole photo, small, with the view framed
    and the rest dimmed, when the view is not the whole photo; always one line in words."""
    v = a.view
    if v is None:
        return
    share = v.area_share
    if share < 0.999 and a.photo is not None:
        c1, c2 = st.columns([1, 3])
        c1.image(framed_photo(digest, a.photo, tuple(v.box), tuple(v.photo_size)), width="stretch")
        c2.caption(
            f"From {v.words}: the model saw the framed {share:.0%} of the photo, "
            f"resized to {v.input_size}x{v.input_size} px. Every map below is drawn on "
            "exactly that part (sidebar: 'What the models see' shows the whole photo "
            "instead)."
        )
    else:
        st.caption(
            f"From {v.words}, resized to {v.input_size}x{v.input_size} px; the maps "
            "are drawn on it."
        )


def _picks(idx: int, slots: list[Slot]) -> Picks:
    """The token and pixel pickers of one image, shared by both models."""
    n = max(len(s.view.maps) for s in slots)
    c1, c2, c3 = st.columns([2, 3, 1])
    token = c1.selectbox(
        "Highlight a token",
        [None, *range(n)],
        key=f"token-{idx}",
        format_func=lambda t: "none" if t is None else f"t{t}",
        help="frames its tile, outlines its row and column in the attention "
        "matrix and keeps only its group coloured, in every model shown. The index is "
        "the same for both models, but their tokens are unrelated: t3 of one model has "
        "nothing to do with t3 of the other.",
    )
    if token is not None and len(slots) > 1:
        c1.caption(f"t{token} in each model is that model's own token; they are unrelated.")
    key = f"pixel-{idx}"
    pixel = st.session_state.get(key)
    if pixel is None:
        c2.caption("Pixel: none picked (tab Pixel: click the image).")
    else:
        c2.caption(
            f"Pixel picked at {pixel[0]:.0%} down, {pixel[1]:.0%} across; ringed on every map."
        )
        if c3.button("Clear pixel", key=f"clear-{idx}"):
            st.session_state.pop(key, None)
            pixel = None
    return Picks(token, pixel, key, f"token-{idx}")


@st.fragment
def show_image(idx: int, image: Image, cfg: Settings) -> None:
    """One image: each model's prediction, then one tab per view, each view one row with the
    models side by side, then every model's downloads (a fragment: its own widgets rerun
    this image only)."""
    name = image[0]
    st.divider()
    st.subheader(name)
    slots: list[Slot | None] = []
    for j, (col, key) in enumerate(zip(st.columns(len(cfg.models)), cfg.models, strict=True)):
        with col:
            slots.append(_predict(key, image, f"{idx}-{j}", cfg))
    ok = [s for s in slots if s is not None]
    if len(slots) == 2 and len(ok) == 2:
        (ca, pa), (cb, pb) = ok[0].a.top, ok[1].a.top
        st.caption(
            f"The two models {'agree' if ca == cb else 'disagree'}: {short(ok[0].key)} "
            f"says {ca} ({pa:.1%}), {short(ok[1].key)} says {cb} ({pb:.1%})."
        )
    live = [s for s in ok if s.a.modules]
    if live:
        picks = _picks(idx, live)
        for s in live:
            s.cell = None if picks.pixel is None else cell_of(picks.pixel, s.view.maps.shape[1:])
        tabs = st.tabs(list(VIEWS), key=f"view-{idx}", on_change="rerun")
        for tab, view in zip(tabs, VIEWS.values(), strict=True):
            if tab.open:
                with tab:
                    view_row(view, slots, cfg, picks)
    for col, s in zip(st.columns(len(slots)), slots, strict=True):
        if s is not None:
            with col:
                image_downloads(s, cfg)


def image_downloads(s: Slot, cfg: Settings) -> None:
    """NPZ, JSON, report and a ZIP of everything, for one image under one model."""
    a, model, stem = s.a, short(s.key), s.stem
    st.caption(f"Downloads, {model}: arrays, numbers, one-page report, or all in one ZIP.")
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button(
        "NPZ",
        lambda: npz_bytes(a.to_arrays()),
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        key=f"dl-npz-{s.uid}",
        on_click="ignore",
        help=f"every array, {model}",
    )
    c2.download_button(
        "JSON",
        a.json_bytes,
        file_name=f"{stem}.json",
        mime="application/json",
        key=f"dl-json-{s.uid}",
        on_click="ignore",
    )
    c3.download_button(
        "Report",
        lambda: a.report(f"{a.name} - {model}", cfg.cmap, cfg.alpha),
        file_name=f"{stem}-report.png",
        mime="image/png",
        key=f"dl-report-{s.uid}",
        on_click="ignore",
    )
    c4.download_button(
        "ZIP",
        lambda: zip_bytes(a, model, cfg.cmap, cfg.alpha, not cfg.stretch),
        file_name=f"{stem}.zip",
        mime="application/zip",
        key=f"dl-zip-{s.uid}",
        on_click="ignore",
    )
