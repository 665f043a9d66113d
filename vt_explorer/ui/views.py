"""The views of one image, one row per view: model A's figure beside model B's.

:func:`show_image` draws an image's predictions, the pickers shared by both models (a token
to highlight, a pixel), one tab per view and the downloads. Only the open tab is drawn
(``st.tabs(on_change="rerun")``), and the image is a fragment: a widget of one image reruns
that image only. Each ``view_*`` function draws one model's figure of one view from its
:class:`Slot`; none computes anything the analysis does not hold.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ..analysis import deletion_verdict
from ..explore import ImageAnalysis, ModuleView, npz_bytes
from ..exports import token_table_csv, zip_bytes
from ..model.config import CIFAR10_CLASSES
from ..viz import attention_heatmap, deletion_plot, palette, predictions_bar, token_grid_png
from ..viz import export as fig_export
from ..viz.figures import GridMarks, map_scale, near_uniform, photo_with_box
from ..viz.linked import cell_of, pixel_picker, token_weights_bar
from .state import (
    Image,
    Picks,
    Settings,
    get_analysis,
    get_randomisation,
    grid_picture,
    grouped,
    model_line,
    module_index,
    reference_top5,
    short,
    tinted,
)

log = logging.getLogger("vt_explorer.app")
UNSURE_BELOW = 0.2  # a top-1 probability below this is flagged "unsure"


@dataclass
class Slot:
    """One model's place in a row: its key, its analysis of the image, the module shown
    (0-based), the picked pixel on its own grid, and the prefix of its widget keys."""

    key: str
    a: ImageAnalysis
    k: int
    image: Image
    uid: str
    cell: tuple[int, int] | None = None

    @property
    def view(self) -> ModuleView:
        return self.a.modules[self.k]

    @property
    def stem(self) -> str:
        """``IMAGE-MODEL``: the start of every file name of this image under this model."""
        return f"{Path(self.a.name).stem}-{short(self.key)}"

    @property
    def title(self) -> str:
        """``MODEL, module K (kind)``: the heading of this model's column."""
        return f"{short(self.key)}, module {self.k + 1} ({self.view.kind})"


def downloads(label: str, make: Callable[[str], bytes], stem: str, uid: str) -> None:
    """PNG and SVG download buttons for one figure; the file is drawn only when clicked."""
    c1, c2 = st.columns(2)
    for col, fmt, mime in ((c1, "png", "image/png"), (c2, "svg", "image/svg+xml")):
        col.download_button(f"{label} ({fmt.upper()})", lambda f=fmt: make(f),
                            file_name=f"{stem}.{fmt}", mime=mime, key=f"{fmt}-{uid}",
                            on_click="ignore")  # fmt: skip


def _stem(s: Slot, what: str) -> str:
    """File name of one figure: image, model, what and module (1-based, as shown)."""
    return f"{s.stem}-{what}-module{s.k + 1}"


def _top(s: Slot, cfg: Settings) -> float | None:
    """The top of the module's shared colour scale (None: each map stretched)."""
    return None if cfg.stretch else map_scale(s.view.maps)[0]


def _scale_note(maps: np.ndarray, cfg: Settings) -> None:
    """Under a grid: the colour bar of the shared scale (or the stretching caveat) and, for
    near-uniform maps, the verdict in words."""
    uniform = map_scale(maps)[1]
    if cfg.stretch:
        st.caption("Each tile stretched to its own range: brightness is not comparable "
                   "between tiles.")  # fmt: skip
    else:
        st.caption("One colour scale for every tile, from 0 to the largest value (the bar "
                   "under the grid marks a uniform map's value).")  # fmt: skip
    if near_uniform(maps, uniform, 0.1):
        st.info("Maps ~ uniform: every token looks everywhere (all values within 10% of "
                f"1/HW = {uniform:.3g}).")  # fmt: skip


def _grid(s: Slot, which: str, maps: np.ndarray, cfg: Settings, picks: Picks) -> None:
    """A grid of 16 map overlays (one picture, four a row) with its scale and downloads."""
    share = s.view.stats.share if which == "maps" else None
    st.image(grid_picture((s.key, s.image[2], s.k, which), s.a.tile, maps, share, cfg.cmap,
                          cfg.alpha, cfg.stretch, s.cell, picks.token), width="stretch")  # fmt: skip
    _scale_note(maps, cfg)
    downloads(
        "Token maps" if which == "maps" else "Propagated maps",
        lambda fmt: token_grid_png(s.a.tile, maps, cfg.cmap, cfg.alpha, s.title, 4, fmt,
                                   not cfg.stretch, GridMarks(s.cell, picks.token, share)),
        _stem(s, "token-maps" if which == "maps" else "propagated"),
        f"{which}-{s.uid}",
    )  # fmt: skip


def view_maps(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every token's spatial map (eq. 1/2 softmax over pixels); the picked token enlarged."""
    st.caption(f"Tile labels: token, share of the pixels it wins, entropy over a uniform "
               f"map's (1 = looks everywhere). {s.view.kind.capitalize()} tokenizer.")  # fmt: skip
    _grid(s, "maps", s.view.maps, cfg, picks)
    if picks.token is not None and picks.token < len(s.view.maps):
        st.image(tinted(s.a.image, s.view.maps[picks.token], cfg.cmap, cfg.alpha, _top(s, cfg)),
                 caption=f"token {picks.token}, enlarged", width=360)  # fmt: skip


def view_propagated(s: Slot, cfg: Settings, picks: Picks) -> None:
    """The maps after the transformer mixes them (Fig. 6, second row)."""
    prop = s.view.propagated
    if prop is None:
        st.info("This module has no token attention to propagate the maps with.")
        return
    st.caption("Maps after the transformer mixes them: A_hat[l] = sum_l' W[l, l'] A[l'], W the "
               "last layer's attention (mean over heads).")  # fmt: skip
    w = s.view.token_attention[-1].mean(0)
    if near_uniform(w[-len(prop) :, -len(prop) :], 1.0 / w.shape[-1]):
        st.info("The attention is ~ uniform, so every propagated map is ~ the mean of all "
                "maps: the tiles are (near) identical.")  # fmt: skip
    _grid(s, "propagated", prop, cfg, picks)


def _legend(weights: np.ndarray) -> None:
    """Colour chips of the tokens with a non-zero weight, largest first."""
    pal = palette(len(weights))
    st.markdown(" ".join(
        f"<span style='background:rgb{tuple(int(c) for c in pal[i])};padding:0 6px'>"
        f"t{i} {weights[i]:.0%}</span>" for i in np.argsort(-weights) if weights[i] > 0
    ), unsafe_allow_html=True)  # fmt: skip


def view_groups(s: Slot, cfg: Settings, picks: Picks) -> None:
    """The semantic-group map: each pixel coloured by the token that claims it most."""
    v = s.view
    st.caption(
        "Each pixel coloured by the token that claims it most (relative to its peak)"
        + ("; the picked token's group in colour." if picks.token is not None else ".")
    )
    st.image(grouped(s.a.image, v.groups, picks.token, s.cell), width="stretch")
    _legend(v.stats.share)
    if v.diversity.verdict != "diverse":
        st.warning(f"Tokens {v.diversity.verdict}: the colours may come from tiny differences "
                   "between near-identical maps.")  # fmt: skip
    downloads("Semantic groups", lambda fmt: fig_export.groups_figure(
        s.a.image, v.groups, v.stats.share, f"{s.a.name}: semantic groups, {s.title}", fmt),
        _stem(s, "groups"), f"groups-{s.uid}")  # fmt: skip


def view_projector(s: Slot, cfg: Settings, picks: Picks) -> None:
    """The projector: the token each pixel reads back from most (eq. 5), and each token's
    mean weight over the pixels."""
    v = s.view
    if v.projector_labels is None:
        st.info("This module has no projector: the classifier reads its tokens directly.")
        return
    st.caption("For each pixel, the token it reads back from most (eq. 5 softmax over tokens).")
    st.image(grouped(s.a.image, v.projector_labels, picks.token, s.cell), width="stretch")
    st.plotly_chart(token_weights_bar(v.stats.mass, 1 / len(v.maps), "mean projector weight",
                                      picks.token), key=f"mass-{s.uid}")  # fmt: skip
    downloads("Projector view", lambda fmt: fig_export.groups_figure(
        s.a.image, v.projector_labels, v.stats.mass, f"{s.a.name}: projector view, {s.title}",
        fmt), _stem(s, "projector"), f"projector-{s.uid}")  # fmt: skip


def _token_names(s: Slot) -> list[str]:
    return (["cls"] if s.a.class_token else []) + [f"t{i}" for i in range(len(s.view.maps))]


def view_attention(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Token-to-token attention of a chosen layer and head (or their mean); a click on a
    cell shows both tokens' maps."""
    layers = s.view.token_attention
    if not layers:
        st.info("This module has no token attention.")
        return
    c1, c2 = st.columns(2)
    lay = c1.selectbox("Layer", list(range(len(layers))), key=f"layer-{s.uid}",
                       format_func=lambda j: f"layer {j + 1}")  # fmt: skip
    att = layers[lay]
    head = c2.selectbox("Head", ["mean"] + [str(h) for h in range(att.shape[0])],
                        key=f"head-{s.uid}")  # fmt: skip
    mat = att.mean(0) if head == "mean" else att[int(head)]
    names, cls = _token_names(s), int(s.a.class_token)
    hi = None if picks.token is None else picks.token + cls
    chart = f"hm-{s.uid}"
    st.plotly_chart(attention_heatmap(mat, f"layer {lay + 1}, head {head}", names, hi),
                    key=chart, on_select="rerun", selection_mode="points")  # fmt: skip
    _clicked_pair(s, chart, names, cfg)
    downloads("Token attention", lambda fmt: fig_export.heatmap_figure(
        mat, f"{s.a.name}: {s.title}, layer {lay + 1}, head {head}", xticks=names,
        yticks=names, fmt=fmt, uniform=1.0 / mat.shape[-1]),
        _stem(s, f"token-attention-layer{lay + 1}-head{head}"), f"att-{s.uid}")  # fmt: skip


def _clicked(chart: str, trace: int) -> int | None:
    """The ``point_index`` of the point a click selected on trace ``trace`` of a chart."""
    state = st.session_state.get(chart)
    points = (state or {}).get("selection", {}).get("points") or []
    for p in points:
        if p.get("curve_number") == trace:
            return int(p["point_index"])
    return None


def _clicked_pair(s: Slot, chart: str, names: list[str], cfg: Settings) -> None:
    """Below the attention matrix: the maps of the two tokens of the clicked cell."""
    hit = _clicked(chart, 1)
    if hit is None:
        st.caption("Click a cell to see both tokens' maps.")
        return
    n = len(names)
    pair = divmod(hit, n)
    vmax = _top(s, cfg)
    cols = st.columns(2)
    for col, t, role in zip(cols, pair, ("reads (query)", "is read (key)"), strict=True):
        i = t - int(s.a.class_token)
        if i < 0:
            col.info("The class token has no spatial map.")
        else:
            col.image(tinted(s.a.tile, s.view.maps[i], cfg.cmap, cfg.alpha, vmax),
                      caption=f"{names[t]} {role}", width="stretch")  # fmt: skip


def view_pixel(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Click a cell of the image: what every token weighs there, in the tokenizer (share of
    each token's attention, uniform 1/hw) and in the projector (uniform 1/L)."""
    v = s.view
    hw = v.maps.shape[1:]
    chart = f"pick-{s.uid}"
    on_pick = functools.partial(_on_pixel, chart, picks.pixel_key, hw)
    st.plotly_chart(pixel_picker(s.a.tile, hw, s.cell), key=chart, on_select=on_pick,
                    selection_mode="points", width="content")  # fmt: skip
    if s.cell is None:
        st.caption(f"Click the image to pick one of its {hw[0]}x{hw[1]} cells; it is ringed "
                   "on every map of both models.")  # fmt: skip
        return
    (r, c), L = s.cell, len(v.maps)
    tok, proj = v.at_pixel(s.cell)
    line = f"Cell row {r + 1}, column {c + 1} of {hw[0]}x{hw[1]}: semantic group t{v.groups[r, c]}"
    if v.projector_labels is not None:
        line += f", reads back most from t{v.projector_labels[r, c]}"
    if tok.max() < 1 / (hw[0] * hw[1]):
        line += "; no token attends to this cell more than a uniform map would"
    st.caption(line)
    st.plotly_chart(token_weights_bar(tok, 1 / (hw[0] * hw[1]),
                    "tokenizer: each token's attention on this cell", picks.token),
                    key=f"pxtok-{s.uid}")  # fmt: skip
    if proj is not None:
        st.plotly_chart(token_weights_bar(proj, 1 / L, "projector: what this cell reads back",
                                          picks.token), key=f"pxproj-{s.uid}")  # fmt: skip


def _on_pixel(chart: str, state: str, hw: tuple[int, int]) -> None:
    """A click on a picker: store its cell's centre as fractions of the image, for both
    models (session key ``state``, ``pixel-IMAGE_INDEX``)."""
    hit = _clicked(chart, 1)
    if hit is not None:
        r, c = divmod(hit, hw[1])
        st.session_state[state] = ((r + 0.5) / hw[0], (c + 0.5) / hw[1])


# the table's headers, short so that every column fits half a page (the CSV keeps the long)
SHORT_COLUMNS = {"share of pixels": "share", "projector mass": "proj. mass",
                 "entropy (nats)": "H (nats)", "entropy / uniform": "H / H unif.",
                 "logit change if removed": "Δ logit"}  # fmt: skip


def view_table(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every token's numbers, all rows and columns, and a CSV download."""
    v = s.view
    df = pd.DataFrame(v.table(), index=[f"t{i}" for i in range(len(v.maps))])
    shown = df.rename(columns=SHORT_COLUMNS)
    st.dataframe(shown.style.format("{:.3f}"), key=f"df-{s.uid}",
                 height=36 * (len(df) + 1) + 3)  # fmt: skip
    st.caption(" · ".join(f"{SHORT_COLUMNS.get(c, c)}: {c}" for c in df.columns))
    st.download_button("Per-token table (CSV)", token_table_csv(v),
                       file_name=f"{_stem(s, 'tokens')}.csv", mime="text/csv",
                       key=f"csv-{s.uid}", on_click="ignore")  # fmt: skip


def view_checks(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Can the maps be trusted? Diversity per module, deletion curve and verdict, and the
    model-randomisation check on request."""
    a = s.a
    st.caption("Remove the last module's tokens (before its transformer) in the order of "
               "their share and watch the predicted class's probability, against random "
               "orders: a score above 0 means the tokens the map ranks first matter more.")  # fmt: skip
    for i, (col, m) in enumerate(zip(st.columns(len(a.modules)), a.modules, strict=True)):
        d = m.diversity
        col.metric(f"module {i + 1}: {d.verdict}", f"{d.effective_groups:.1f} groups",
                   help=f"effective number of semantic groups (exp of their entropy) of "
                   f"{len(m.maps)} tokens; mean map similarity {d.similarity:.2f}; "
                   f"{m.distinct} of {len(m.maps)} maps differ at all")  # fmt: skip
    if any(m.diversity.verdict == "collapsed" for m in a.modules):
        st.warning("Token collapse: in at least one module the tokens attend to (nearly) the "
                   "same place, so its maps are copies and its group picture comes from "
                   "leftover noise.")  # fmt: skip
    d = a.deletion
    if d is not None:
        cls = a.classes[d.predicted]
        st.metric("deletion score", f"{d.score:+.4f}", help="mean gap between the curves")
        st.caption(deletion_verdict(d.score))
        st.plotly_chart(deletion_plot(d.curve, d.random_curve, cls), key=f"del-{s.uid}")
        downloads("Deletion curve", lambda fmt: fig_export.deletion_figure(d, cls, fmt),
                  f"{s.stem}-deletion", f"del-{s.uid}")  # fmt: skip
    if st.checkbox("Run the model-randomisation check (a few seconds)", key=f"rand-{s.uid}",
                   help="Adebayo et al. 2018: re-initialise the layers from the top down; "
                   "maps that depend on the learned weights should stop matching."):  # fmt: skip
        r = get_randomisation(s.key, s.image[2], s.image[1], s.image[0], cfg.view)
        st.caption("Spearman rank correlation with the trained model's maps.")
        st.dataframe(pd.DataFrame(r["correlation"], index=[f"up to {x}" for x in r["steps"]],
                     columns=[f"module {i + 1} maps" for i in range(r["correlation"].shape[1])],
                     ).style.format("{:.2f}"), key=f"randdf-{s.uid}")  # fmt: skip


def view_all_modules(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every module's semantic groups side by side: filter vs recurrent within one model."""
    mods = s.a.modules
    for i, (col, m) in enumerate(zip(st.columns(len(mods)), mods, strict=True)):
        col.image(grouped(s.a.image, m.groups, picks.token, None), width="stretch",
                  caption=f"module {i + 1} ({m.kind}): {m.diversity.verdict}")  # fmt: skip


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


def view_row(view: Callable[[Slot, Settings, Picks], None], slots: list[Slot | None],
             cfg: Settings, picks: Picks) -> None:  # fmt: skip
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
        st.error(f"{name}: {short(key)} could not analyse it ({type(err).__name__}"
                 f"{': ' + shown if shown else ''}); the details are in the server log.")  # fmt: skip
        return None
    cls, p = a.top
    unsure = f" - unsure: the top class has only {p:.0%}" if p < UNSURE_BELOW else ""
    st.markdown(f"**{short(key)}** predicts **{cls}** ({p:.1%}){unsure}")
    st.caption(model_line(key))
    _view_note(a)
    if len(a.classes) == 10 and set(a.classes) == set(CIFAR10_CLASSES):
        st.caption("This model knows only CIFAR-10's ten classes.")
    st.plotly_chart(predictions_bar(a.classes, a.probs), key=f"pred-{uid}")
    if a.model.get("teacher"):  # an ImageNet VT: the network it stands in for, as reference
        ref = reference_top5(digest, data, name, cfg.view)
        st.caption(
            "Lite0 itself (the network this VT was distilled from, its teacher): "
            + ", ".join(f"{c} {p:.0%}" for c, p in ref)
        )
    if not a.modules:
        return Slot(key, a, 0, image, uid)
    k = module_index(cfg.module, len(a.modules))
    st.caption(f"Showing module {k + 1} ({a.modules[k].kind}) of {len(a.modules)} "
               "(sidebar: VT module)")  # fmt: skip
    return Slot(key, a, k, image, uid)


def _view_note(a: ImageAnalysis) -> None:
    """Which part of the photo the model saw: the whole photo, small, with the view framed
    and the rest dimmed, when the view is not the whole photo; always one line in words."""
    v = a.view
    if v is None:
        return
    share = v.area_share
    if share < 0.999 and a.photo is not None:
        c1, c2 = st.columns([1, 3])
        c1.image(photo_with_box(a.photo, v.box, v.photo_size), width="stretch")
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
    token = c1.selectbox("Highlight a token", [None, *range(n)], key=f"token-{idx}",
                         format_func=lambda t: "none" if t is None else f"t{t}",
                         help="frames its tile, outlines its row and column in the attention "
                         "matrix and keeps only its group coloured")  # fmt: skip
    key = f"pixel-{idx}"
    pixel = st.session_state.get(key)
    if pixel is None:
        c2.caption("Pixel: none picked (tab Pixel: click the image).")
    else:
        c2.caption(f"Pixel picked at {pixel[0]:.0%} down, {pixel[1]:.0%} across; ringed on "
                   "every map.")  # fmt: skip
        if c3.button("Clear pixel", key=f"clear-{idx}"):
            st.session_state.pop(key, None)
            pixel = None
    return Picks(token, pixel, key)


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
        st.caption(f"The two models {'agree' if ca == cb else 'disagree'}: {short(ok[0].key)} "
                   f"says {ca} ({pa:.1%}), {short(ok[1].key)} says {cb} ({pb:.1%}).")  # fmt: skip
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
    c1.download_button("NPZ", lambda: npz_bytes(a.to_arrays()), file_name=f"{stem}.npz",
                       mime="application/octet-stream", key=f"dl-npz-{s.uid}", on_click="ignore",
                       help=f"every array, {model}")  # fmt: skip
    c2.download_button("JSON", a.json_bytes, file_name=f"{stem}.json", mime="application/json",
                       key=f"dl-json-{s.uid}", on_click="ignore")  # fmt: skip
    c3.download_button("Report", lambda: a.report(f"{a.name} - {model}", cfg.cmap, cfg.alpha),
                       file_name=f"{stem}-report.png", mime="image/png",
                       key=f"dl-report-{s.uid}", on_click="ignore")  # fmt: skip
    c4.download_button("ZIP", lambda: zip_bytes(a, model, cfg.cmap, cfg.alpha, not cfg.stretch),
                       file_name=f"{stem}.zip", mime="application/zip", key=f"dl-zip-{s.uid}",
                       on_click="ignore")  # fmt: skip
