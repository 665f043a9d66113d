"""Static figures (PNG or SVG bytes, drawn with matplotlib) of one image's analysis.

The app shows the same arrays interactively and offers these files as downloads; the
``explain`` command writes them; both call these functions, so a file equals the view.
Every function takes ``fmt="png"`` or ``"svg"``.
"""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from PIL import Image

from ..analysis import DeletionResult, deletion_verdict, format_score
from ..flags import UserError
from .figures import group_image, map_scale, overlay, palette

FORMATS = ("png", "svg")


def _save(fig: plt.Figure, fmt: str) -> bytes:
    if fmt not in FORMATS:
        plt.close(fig)
        raise UserError(f"unknown figure format {fmt!r} (expected png or svg)")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def image_bytes(image: np.ndarray, fmt: str = "png") -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes, JPEG bytes (``fmt="jpeg"``, quality 90: what
    the app sends to the browser) or SVG (embedding the same raster)."""
    if fmt in ("png", "jpeg"):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
        return buf.getvalue()
    fig, ax = plt.subplots(figsize=(image.shape[1] / 110, image.shape[0] / 110))
    ax.imshow(image)
    ax.axis("off")
    return _save(fig, fmt)


def groups_figure(
    image: np.ndarray, labels: np.ndarray, share: np.ndarray, title: str = "", fmt: str = "png"
) -> bytes:
    """Semantic-group (or projector) map with a legend of each token's share of the image."""
    fig, (ax, leg) = plt.subplots(1, 2, figsize=(7.5, 4), gridspec_kw={"width_ratios": [3, 1.3]})
    ax.imshow(group_image(image, labels))
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    cols = palette(len(share)) / 255
    order = np.argsort(-share)
    leg.barh(range(len(order)), share[order], color=cols[order])
    leg.set_yticks(range(len(order)), [f"token {i}" for i in order], fontsize=7)
    leg.invert_yaxis()
    leg.set_xlabel("share of the image", fontsize=8)
    leg.tick_params(axis="x", labelsize=7)
    return _save(fig, fmt)


def heatmap_figure(
    matrix: np.ndarray,
    title: str = "",
    xlabel: str = "key token",
    ylabel: str = "query token",
    xticks: list[str] | None = None,
    yticks: list[str] | None = None,
    fmt: str = "png",
    uniform: float | None = None,
) -> bytes:
    """A matrix as a heatmap with a colour bar from 0 (token attention, token x class
    tables). ``uniform`` (e.g. 1/L for attention) is marked on the colour bar, and a matrix
    within 5% of it everywhere says so in the title."""
    from .figures import near_uniform

    h, w = matrix.shape
    fig, ax = plt.subplots(figsize=(min(1.2 + 0.32 * w, 12), min(1.0 + 0.3 * h, 10)))
    top = max(float(matrix.max()), (uniform or 0) * 1.0001, 1e-12)
    im = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0, vmax=top)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    if uniform is not None:
        bar.ax.axhline(uniform, color="white", lw=1.5)
        bar.ax.text(
            1.05,
            uniform,
            f" 1/L = {uniform:.3g}",
            transform=bar.ax.get_yaxis_transform(),
            fontsize=7,
            va="center",
        )
        if near_uniform(matrix, uniform):
            title += "\nattention ~ uniform: the transformer mixes all tokens equally"
    ax.set_xticks(range(w), xticks or [str(i) for i in range(w)], fontsize=7, rotation=90)
    ax.set_yticks(range(h), yticks or [str(i) for i in range(h)], fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, fmt)


def predictions_figure(
    classes: list[str], probs: np.ndarray, k: int = 5, title: str = "", fmt: str = "png"
) -> bytes:
    """Top-k class probabilities as horizontal bars."""
    order = np.argsort(-probs)[:k]
    fig, ax = plt.subplots(figsize=(4.5, 0.5 + 0.35 * len(order)))
    ax.barh(range(len(order)), probs[order], color="#4c78a8")
    ax.set_yticks(range(len(order)), [classes[i] for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    for j, i in enumerate(order):
        ax.text(min(probs[i] + 0.01, 0.85), j, f"{probs[i]:.1%}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, fmt)


def deletion_figure(res: DeletionResult, class_name: str = "", fmt: str = "png") -> bytes:
    """Deletion curves: probability of the predicted class as tokens are removed by the
    map's importance and in random order; the shaded area is the score."""
    k = np.arange(len(res.curve))
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.plot(k, res.curve, marker="o", ms=3, label="most important first")
    ax.plot(k, res.random_curve, ls="--", label="random order (mean)")
    ax.fill_between(k, res.curve, res.random_curve, alpha=0.2)
    ax.set_xlabel("tokens removed", fontsize=8)
    ax.set_ylabel(f"p({class_name or res.predicted})", fontsize=8)
    ax.set_ylim(0, 1.02)  # a probability: anchored, so a flat curve looks flat
    ax.set_title(
        f"deletion score {format_score(res.score)}\n{_wrap(deletion_verdict(res.score))}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return _save(fig, fmt)


def _wrap(text: str, width: int = 60) -> str:
    """``text`` broken into lines of at most ``width`` characters (figure titles)."""
    return "\n".join(textwrap.wrap(text, width))


_GAP = 6  # white pixels between the tiles of a report row


def _tile_row(tiles: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 tiles side by side with white gaps: (H, L * (W + gap) - gap, 3)."""
    gap = np.full((tiles[0].shape[0], _GAP, 3), 255, np.uint8)
    parts = [p for t in tiles for p in (t, gap)][:-1]
    return np.concatenate(parts, axis=1)


def report_figure(
    name: str,
    image: np.ndarray,
    classes: list[str],
    probs: np.ndarray,
    maps: list[np.ndarray],
    propagated: list[np.ndarray | None],
    groups: list[tuple[np.ndarray, np.ndarray]],
    kinds: list[str],
    cmap: str = "jet",
    alpha: float = 0.5,
    deletion: DeletionResult | None = None,
    fmt: str = "png",
    verdicts: list[str] | None = None,
) -> bytes:
    """One page of an image's analysis: the image and its top-5, every module's token maps
    (first row: tokenizer maps; second: after the token transformer, Fig. 6) and
    semantic groups, and the deletion curve when given. Draws arrays only
    (``ImageAnalysis.report`` passes its own).

    maps: per module (L, h, w); propagated: per module (L, h, w) or None; groups: per
    module (labels (h, w), share (L,)); kinds: per module "filter"/"recurrent"; verdicts:
    per module the diversity verdict in words. Each module's maps share one colour scale
    from 0 (stated under them); the deletion curve is drawn on 0-1 with its verdict.
    """
    n_mod = len(maps)
    L = maps[0].shape[0] if maps else 0
    cols = max(L, 4)
    rows = 1 + 3 * n_mod
    fig = plt.figure(figsize=(1.3 * cols, 1.45 * rows + 0.5))
    grid = fig.add_gridspec(rows, cols, hspace=0.45)
    ax = fig.add_subplot(grid[0, :2])
    ax.imshow(image)
    ax.axis("off")
    ax.set_title(name, fontsize=9)
    ax = fig.add_subplot(grid[0, 2 : max(4, cols // 2)])
    order = np.argsort(-probs)[:5]
    ax.barh(range(len(order)), probs[order], color="#4c78a8")
    # class names beside their bars, inside the axes: as tick labels, long ImageNet names
    # ran over the thumbnail on the left
    for y, i in enumerate(order):
        ax.text(
            min(float(probs[i]), 0.62) + 0.02,
            y,
            f"{classes[i]} {probs[i]:.0%}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title("top-5", fontsize=9)
    if deletion is not None and cols >= 8:
        ax = fig.add_subplot(grid[0, cols // 2 + 1 :])
        ax.plot(deletion.curve, label="by importance")
        ax.plot(deletion.random_curve, ls="--", label="random")
        ax.set_ylim(0, 1.02)  # a probability: anchored, so a flat curve looks flat
        ax.set_title(
            f"deletion score {format_score(deletion.score)}: "
            f"{deletion_verdict(deletion.score).split(':')[0]}",
            fontsize=9,
        )
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    for m in range(n_mod):
        verdict = verdicts[m] if verdicts else None
        _report_module(
            fig, grid, m, image, maps[m], propagated[m], groups[m], kinds[m], verdict, cmap, alpha
        )
    return _save(fig, fmt)


def _report_module(
    fig: plt.Figure,
    grid,
    m: int,
    image: np.ndarray,
    maps: np.ndarray,
    prop: np.ndarray | None,
    groups: tuple[np.ndarray, np.ndarray],
    kind: str,
    verdict: str | None,
    cmap: str,
    alpha: float,
) -> None:
    """Rows 3m+1 to 3m+3 of the report: module m's token maps, its propagated maps (one
    colour scale for both, from 0), and its semantic groups with a line of words."""
    labels, share = groups
    L = len(maps)
    # one axes per row of L tiles (not L axes): matplotlib's cost is per axes
    rows_maps = [(1, maps)] + ([(2, prop)] if prop is not None else [])
    vmax, uniform = map_scale(maps)  # one scale for both rows of the module
    for r, row_maps in rows_maps:
        ax = fig.add_subplot(grid[r + 3 * m, :L])
        ax.imshow(_tile_row([overlay(image, mp, cmap, alpha, vmax) for mp in row_maps]))
        ax.axis("off")
        if r == 1:
            w = image.shape[1] + _GAP
            for t in range(L):
                ax.text(t * w + w / 2, -2, f"m{m + 1} t{t}", fontsize=6, ha="center", va="bottom")
    ax = fig.add_subplot(grid[3 + 3 * m, :2])
    ax.imshow(group_image(image, labels))
    ax.axis("off")
    ax = fig.add_subplot(grid[3 + 3 * m, 2:])
    ax.axis("off")
    # the colour bar of both map rows: 0 to vmax, the uniform value marked
    cax = ax.inset_axes([0.0, 0.02, 0.4, 0.14])
    bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, vmax), cmap=cmap), cax=cax, orientation="horizontal"
    )
    ticks = [(0.0, "0"), (vmax, f"{vmax:.3g}")]
    if 0 < uniform < vmax:  # near 0 the uniform mark takes 0's place (the text says 0 to max)
        near = uniform < 0.12 * vmax
        ticks = [*ticks[int(near) :], (uniform, f"uniform {uniform:.2g}")]
    bar.set_ticks([t for t, _ in ticks], labels=[w for _, w in ticks])
    bar.ax.tick_params(labelsize=6)
    top = np.argsort(-share)[:6]
    ax.text(
        0,
        0.62,
        f"module {m + 1} ({kind} tokenizer): row 1 token maps, row 2 after the token "
        f"transformer (Fig. 6); both rows on one colour scale, 0 to {vmax:.3g} "
        f"(uniform {uniform:.3g})\n"
        + (f"tokens {verdict}; " if verdict else "")
        + "largest semantic groups: "
        + ", ".join(f"t{i} {share[i]:.0%}" for i in top),
        fontsize=7,
        va="center",
    )
