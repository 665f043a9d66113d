"""The views of one model on one image: each ``view_*`` function draws one model's figure of
one view from its :class:`Slot`; none computes anything the analysis does not hold.
:mod:`vt_explorer.ui.image` lays them out, one row per view: model A's figure beside model
B's.
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

from ..analysis import (
    deletion_verdict,
    format_score,
    least_similarity,
    randomisation_verdict,
    step_label,
)
from ..explore import ImageAnalysis, ModuleView
from ..exports import token_table_csv
from ..viz import attention_heatmap, deletion_plot, palette, token_grid_png
from ..viz import export as fig_export
from ..viz.figures import GridMarks, map_scale, near_uniform
from ..viz.linked import token_weights_bar
from .components import clickable_grid
from .state import (
    Image,
    Picks,
    Settings,
    get_randomisation,
    grid_picture,
    grouped,
    model_identity,
    picker_figure,
    short,
    tinted,
    weights_figure,
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
        col.download_button(  # short labels: whole at any width; the help names the figure
            f"⬇ {fmt.upper()}",
            lambda f=fmt: make(f),
            help=f"{label} as {fmt.upper()}",
            file_name=f"{stem}.{fmt}",
            mime=mime,
            key=f"{fmt}-{uid}",
            on_click="ignore",
        )


def _stem(s: Slot, what: str) -> str:
    """File name of one figure: image, model, what and module (1-based, as shown)."""
    return f"{s.stem}-{what}-module{s.k + 1}"


def _top(maps: np.ndarray, cfg: Settings) -> float | None:
    """The top of a grid's shared colour scale (None: each map stretched)."""
    return None if cfg.stretch else map_scale(maps)[0]


def _scale_note(maps: np.ndarray, cfg: Settings) -> None:
    """Under a grid: the colour bar of the shared scale (or the stretching caveat) and, for
    near-uniform maps, the verdict in words."""
    uniform = map_scale(maps)[1]
    if cfg.stretch:
        st.caption(
            "Each tile stretched to its own range: brightness is not comparable between tiles."
        )
    else:
        st.caption(
            "One colour scale for every tile, from 0 to the largest value (the bar "
            "under the grid marks a uniform map's value)."
        )
    if near_uniform(maps, uniform, 0.1):
        st.info(
            "Maps ~ uniform: every token looks everywhere (all values within 10% of "
            f"1/HW = {uniform:.3g})."
        )


def _grid(s: Slot, which: str, maps: np.ndarray, cfg: Settings, picks: Picks) -> None:
    """A grid of 16 map overlays (one picture, four a row; a click on a tile picks its
    token) with its scale, the picked token's map enlarged, and downloads."""
    share = s.view.stats.share if which == "maps" else None
    jpeg, size, boxes = grid_picture(
        (model_identity(s.key), s.image[2], s.k, which),
        s.a.tile,
        maps,
        share,
        cfg.cmap,
        cfg.alpha,
        cfg.stretch,
        s.cell,
        picks.token,
    )
    what = "Token maps" if which == "maps" else "Propagated maps"
    clickable_grid(
        jpeg, size, boxes, f"tiles-{which}-{s.uid}", picks.token_key, f"{what}, {s.title}"
    )
    _scale_note(maps, cfg)
    if picks.token is not None and picks.token < len(maps):
        left, _ = st.columns([2, 1])  # at most two thirds of the column, at any page width
        left.image(
            # on the grid's own scale (the propagated maps have theirs)
            tinted(s.a.image, maps[picks.token], cfg.cmap, cfg.alpha, _top(maps, cfg)),
            caption=f"{'token' if which == 'maps' else 'propagated map of token'} "
            f"{picks.token}, enlarged (click another tile, or pick 'none' above)",
            width="stretch",
        )
    downloads(
        what,
        lambda fmt: token_grid_png(
            s.a.tile,
            maps,
            cfg.cmap,
            cfg.alpha,
            s.title,
            4,
            fmt,
            not cfg.stretch,
            GridMarks(s.cell, picks.token, share),
        ),
        _stem(s, "token-maps" if which == "maps" else "propagated"),
        f"{which}-{s.uid}",
    )


def view_maps(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every token's spatial map (eq. 1/2 softmax over pixels); a click on a tile (or the
    token picker) enlarges it."""
    st.caption(
        "Tile labels: token, and the share of the pixels it wins (each token's entropy: "
        f"the Table tab). {s.view.kind.capitalize()} tokenizer. Click a tile to enlarge it."
    )
    _grid(s, "maps", s.view.maps, cfg, picks)


def view_propagated(s: Slot, cfg: Settings, picks: Picks) -> None:
    """The maps after the transformer mixes them (Fig. 6, second row)."""
    prop = s.view.propagated
    if prop is None:
        st.info("This module has no token attention to propagate the maps with.")
        return
    st.caption(
        "Maps after the transformer mixes them: A_hat[l] = sum_l' W[l, l'] A[l'], W the "
        "last layer's attention (mean over heads)."
    )
    w = s.view.token_attention[-1].mean(0)
    least = least_similarity(prop)
    if least >= 0.99:
        why = (
            "the attention is ~ uniform, so every propagated map is ~ the mean of all maps"
            if near_uniform(w[-len(prop) :, -len(prop) :], 1.0 / w.shape[-1])
            else "every token attends to the same few tokens"
        )
        st.info(
            f"The propagated maps are (near) identical: every pair has cosine similarity "
            f"{least:.3f} or more ({why})."
        )
    _grid(s, "propagated", prop, cfg, picks)


def _legend(weights: np.ndarray) -> None:
    """Colour chips of the tokens with a non-zero weight, largest first."""
    pal = palette(len(weights))
    st.markdown(
        " ".join(
            f"<span style='background:rgb{tuple(int(c) for c in pal[i])};padding:0 6px'>"
            f"t{i} {weights[i]:.0%}</span>"
            for i in np.argsort(-weights)
            if weights[i] > 0
        ),
        unsafe_allow_html=True,
    )


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
        st.warning(
            f"Tokens {v.diversity.verdict}: the colours may come from tiny differences "
            "between near-identical maps."
        )
    downloads(
        "Semantic groups",
        lambda fmt: fig_export.groups_figure(
            s.a.image, v.groups, v.stats.share, f"{s.a.name}: semantic groups, {s.title}", fmt
        ),
        _stem(s, "groups"),
        f"groups-{s.uid}",
    )


def view_projector(s: Slot, cfg: Settings, picks: Picks) -> None:
    """The projector: the token each pixel reads back from most (eq. 5), and each token's
    mean weight over the pixels."""
    v = s.view
    if v.projector_labels is None:
        with_projector = [i + 1 for i, m in enumerate(s.a.modules) if m.projector is not None]
        where = (
            f"; module {', '.join(map(str, with_projector))} has one: pick it under "
            "'VT module' in the sidebar"
            if with_projector
            else ""
        )
        st.info("This module has no projector (the classifier reads its tokens directly)" + where)
        return
    st.caption(
        "For each pixel, the token it reads back from most (eq. 5 softmax over tokens)"
        + ("; the picked token's pixels in colour." if picks.token is not None else ".")
    )
    st.image(grouped(s.a.image, v.projector_labels, picks.token, s.cell), width="stretch")
    _legend(
        np.bincount(v.projector_labels.ravel(), minlength=len(v.maps)) / v.projector_labels.size
    )
    st.plotly_chart(
        token_weights_bar(v.stats.mass, 1 / len(v.maps), "mean projector weight", picks.token),
        key=f"mass-{s.uid}",
    )
    downloads(
        "Projector view",
        lambda fmt: fig_export.groups_figure(
            s.a.image,
            v.projector_labels,
            v.stats.mass,
            f"{s.a.name}: projector view, {s.title}",
            fmt,
        ),
        _stem(s, "projector"),
        f"projector-{s.uid}",
    )


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
    lay = c1.selectbox(
        "Layer",
        list(range(len(layers))),
        key=f"layer-{s.uid}",
        format_func=lambda j: f"layer {j + 1}",
    )
    att = layers[lay]
    head = c2.selectbox(
        "Head", ["mean"] + [str(h) for h in range(att.shape[0])], key=f"head-{s.uid}"
    )
    mat = att.mean(0) if head == "mean" else att[int(head)]
    names, cls = _token_names(s), int(s.a.class_token)
    hi = None if picks.token is None else picks.token + cls
    chart = f"hm-{s.uid}"
    st.plotly_chart(
        attention_heatmap(mat, f"layer {lay + 1}, head {head}", names, hi),
        key=chart,
        on_select="rerun",
        selection_mode="points",
    )
    _clicked_pair(s, chart, names, cfg)
    downloads(
        "Token attention",
        lambda fmt: fig_export.heatmap_figure(
            mat,
            f"{s.a.name}: {s.title}, layer {lay + 1}, head {head}",
            xticks=names,
            yticks=names,
            fmt=fmt,
            uniform=1.0 / mat.shape[-1],
        ),
        _stem(s, f"token-attention-layer{lay + 1}-head{head}"),
        f"att-{s.uid}",
    )


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
    vmax = _top(s.view.maps, cfg)
    st.caption(
        f"The cell clicked in {short(s.key)}'s matrix: {names[pair[0]]} reads "
        f"{names[pair[1]]}. A click changes this model's panel only; the other model's "
        "tokens are its own."
    )
    cols = st.columns(2)
    for col, t, role in zip(cols, pair, ("reads (query)", "is read (key)"), strict=True):
        i = t - int(s.a.class_token)
        if i < 0:
            col.info("The class token has no spatial map.")
        else:
            col.image(
                tinted(s.a.tile, s.view.maps[i], cfg.cmap, cfg.alpha, vmax),
                caption=f"{names[t]} {role}",
                width="stretch",
            )


def view_pixel(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Click a cell of the image: what every token weighs there, in the tokenizer (share of
    each token's attention, uniform 1/hw) and in the projector (uniform 1/L)."""
    v = s.view
    hw = v.maps.shape[1:]
    chart = f"pick-{s.uid}"
    on_pick = functools.partial(_on_pixel, chart, picks.pixel_key, hw)
    st.plotly_chart(
        picker_figure((model_identity(s.key), s.image[2], cfg.view), s.a.tile, hw, s.cell),
        key=chart,
        on_select=on_pick,
        selection_mode="points",
        width="content",
    )
    if s.cell is None:
        st.caption(
            f"Click the image to pick one of its {hw[0]}x{hw[1]} cells; it is ringed "
            "on every map of both models."
        )
        return
    (r, c), L = s.cell, len(v.maps)
    tok, proj = v.at_pixel(s.cell)
    top = int(np.argmax(tok))
    line = (
        f"Cell row {r + 1}, column {c + 1} of {hw[0]}x{hw[1]}: t{top} attends to it most "
        "(the tallest bar below)"
    )
    if int(v.groups[r, c]) != top:
        line += (
            f"; its semantic group is t{v.groups[r, c]}, whose map peaks here relative to its "
            "own maximum"
        )
    if v.projector_labels is not None:
        line += f", reads back most from t{v.projector_labels[r, c]}"
    if tok.max() < 1 / (hw[0] * hw[1]):
        line += "; no token attends to this cell more than a uniform map would"
    st.caption(line)
    at = (model_identity(s.key), s.image[2], cfg.view, s.k, s.cell, picks.token)
    st.plotly_chart(
        weights_figure(
            (*at, "tokenizer"),
            tok,
            1 / (hw[0] * hw[1]),
            "tokenizer: each token's attention on this cell",
            picks.token,
        ),
        key=f"pxtok-{s.uid}",
    )
    if proj is not None:
        st.plotly_chart(
            weights_figure(
                (*at, "projector"),
                proj,
                1 / L,
                "projector: what this cell reads back",
                picks.token,
            ),
            key=f"pxproj-{s.uid}",
        )


def _on_pixel(chart: str, state: str, hw: tuple[int, int]) -> None:
    """A click on a picker: store its cell's centre as fractions of the image, for both
    models (session key ``state``, ``pixel-IMAGE_INDEX``)."""
    hit = _clicked(chart, 1)
    if hit is not None:
        r, c = divmod(hit, hw[1])
        st.session_state[state] = ((r + 0.5) / hw[0], (c + 0.5) / hw[1])


# the table's headers, short so that every column fits half a page (the CSV keeps the long)
SHORT_COLUMNS = {
    "share of pixels": "share",
    "projector mass": "proj. mass",
    "entropy (nats)": "H (nats)",
    "entropy / uniform": "H / H unif.",
    "logit change if removed": "Δ logit",
}


def view_table(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every token's numbers, all rows and columns, and a CSV download."""
    v = s.view
    if v.stats.contribution is not None:
        st.caption(
            f"Δ logit: how much the logit of {s.a.classes[s.a.explained]} changes when the "
            "token is removed from the average the classifier reads."
        )
    df = pd.DataFrame(v.table(), index=[f"t{i}" for i in range(len(v.maps))])
    shown = df.rename(columns=SHORT_COLUMNS)
    st.dataframe(shown.style.format("{:.3f}"), key=f"df-{s.uid}", height=36 * (len(df) + 1) + 3)
    st.caption(" · ".join(f"{SHORT_COLUMNS.get(c, c)}: {c}" for c in df.columns))
    st.download_button(
        "Per-token table (CSV)",
        token_table_csv(v),
        file_name=f"{_stem(s, 'tokens')}.csv",
        mime="text/csv",
        key=f"csv-{s.uid}",
        on_click="ignore",
    )


def view_checks(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Can the maps be trusted? Diversity per module, deletion curve and verdict, and the
    model-randomisation check on request."""
    a = s.a
    which = "the predicted class" if a.target is None else "the class picked above"
    st.caption(
        "Remove the last module's tokens (before its transformer) in the order of "
        f"their share and watch the probability of {which}, {a.classes[a.explained]}, "
        "against random "
        "orders: a score above 0 means the tokens the map ranks first matter more."
    )
    for i, (col, m) in enumerate(zip(st.columns(len(a.modules)), a.modules, strict=True)):
        d = m.diversity
        col.metric(
            f"module {i + 1}: {d.verdict}",
            f"{d.effective_groups:.1f} groups",
            help=f"effective number of semantic groups (exp of their entropy) of "
            f"{len(m.maps)} tokens; mean map similarity {d.similarity:.2f}; "
            f"{m.distinct} of {len(m.maps)} maps differ at all",
        )
    if any(m.diversity.verdict == "collapsed" for m in a.modules):
        st.warning(
            "Token collapse: in at least one module the tokens attend to (nearly) the "
            "same place, so its maps are copies and its group picture comes from "
            "leftover noise."
        )
    d = a.deletion
    if d is not None:
        cls = a.classes[d.predicted]
        st.metric("deletion score", format_score(d.score), help="mean gap between the curves")
        st.caption(deletion_verdict(d.score))
        st.plotly_chart(deletion_plot(d.curve, d.random_curve, cls), key=f"del-{s.uid}")
        downloads(
            "Deletion curve",
            lambda fmt: fig_export.deletion_figure(d, cls, fmt),
            f"{s.stem}-deletion",
            f"del-{s.uid}",
        )
    if st.checkbox(
        "Run the model-randomisation check (a few seconds)",
        key=f"rand-{s.uid}",
        help="Adebayo et al. 2018: re-initialise the layers from the top down; "
        "maps that depend on the learned weights should stop matching.",
    ):
        r = get_randomisation(s.key, s.image[2], s.image[1], s.image[0], cfg.view)
        st.caption(
            "Spearman rank correlation with the trained model's maps, randomising the "
            "layers from the top down (each row: every step up to the one named)."
        )
        corr = np.asarray(r["correlation"])
        verdict = randomisation_verdict(corr[-1] if len(corr) else [])
        (st.success if verdict.startswith("passes") else st.warning)(
            f"Randomisation check {verdict}."
        )
        st.dataframe(
            pd.DataFrame(
                r["correlation"],
                index=[f"up to {step_label(x)}" for x in r["steps"]],
                columns=[f"module {i + 1} maps" for i in range(r["correlation"].shape[1])],
            ).style.format("{:.2f}"),
            key=f"randdf-{s.uid}",
        )


def view_all_modules(s: Slot, cfg: Settings, picks: Picks) -> None:
    """Every module's semantic groups side by side: filter vs recurrent within one model."""
    mods = s.a.modules
    for i, (col, m) in enumerate(zip(st.columns(len(mods)), mods, strict=True)):
        col.image(
            grouped(s.a.image, m.groups, picks.token, None),
            width="stretch",
            caption=f"module {i + 1} ({m.kind}): {m.diversity.verdict}",
        )
