"""Figure builders. Inputs are numpy arrays; outputs are RGB arrays, Plotly figures or PNG bytes."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from ..analysis import upsample

TILE_SIDE = 160  # the longer side of a tile of a PNG grid of maps, in pixels
PICK = "#dc0078"  # the colour of whatever is picked (token frame, pixel ring, rows, bars)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours (tab20, repeated) for token groups."""
    cols = colormaps["tab20"](np.arange(n) % 20)[:, :3]
    return (cols * 255).astype(np.uint8)


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    vmax: float | None = None,
) -> np.ndarray:
    """Blend a heat map over an image.

    image (H, W, 3) uint8; heat (h, w), resized to H x W. With ``vmax`` the colours run
    from 0 to ``vmax`` (a shared scale: equal values look equal on every tile); without,
    the map is stretched to its own min-max (per-tile stretching: a near-uniform map then
    looks as sharp as a peaked one). Returns (H, W, 3) uint8.
    """
    return overlays(image, heat[None], cmap, alpha, vmax)[0]


def overlays(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    vmax: float | None = None,
) -> np.ndarray:
    """:func:`overlay` of every map at once: image (H, W, 3) uint8, maps (L, h, w) ->
    (L, H, W, 3) uint8. One bilinear resize for all maps and one colour look-up (10x faster
    than a loop of :func:`overlay`, the same pixels)."""
    h, w = image.shape[:2]
    m = upsample(maps, (h, w)) if maps.shape[1:] != (h, w) else maps.astype(np.float32)
    if vmax is not None:
        lo = np.zeros((len(m), 1, 1), np.float32)
        hi = np.full((len(m), 1, 1), vmax, np.float32)
    else:  # each map stretched to its own range
        lo, hi = m.min((1, 2), keepdims=True), m.max((1, 2), keepdims=True)
    span = hi - lo
    m = np.where(span > 0, np.clip((m - lo) / np.where(span > 0, span, 1), 0, 1), 0)
    lut = _lut(cmap)  # matplotlib's own 256 colours, looked up as matplotlib does (x * N)
    colour = lut[np.clip((m * len(lut)).astype(np.int32), 0, len(lut) - 1)]
    out = image.astype(np.float32)[None] * (1 - alpha) + colour * np.float32(alpha)
    return out.round().clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def _lut(cmap: str) -> np.ndarray:
    """(N, 3) float32 RGB in 0-255 of a matplotlib colour map's N entries."""
    cm = colormaps[cmap]
    return (cm(np.arange(cm.N))[:, :3] * 255).astype(np.float32)


def token_strip(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    vmax: float | None = None,
) -> list[np.ndarray]:
    """One overlay per token: maps (L, h, w) -> list of L (H, W, 3) uint8 images, on one
    scale from 0 to ``vmax`` (None: each stretched to its own range)."""
    return list(overlays(image, maps, cmap, alpha, vmax))


def photo_with_box(
    photo: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """The whole photo (H, W, 3) uint8 (shown at any scale of the original ``size`` = (w, h))
    with the model's view ``box`` (left, top, right, bottom in original pixels) framed and
    what lies outside it dimmed: what the model did not see. A box reaching past the photo
    (letterbox) is clipped to it. Returns a new (H, W, 3) uint8 array."""
    h, w = photo.shape[:2]
    kx, ky = w / size[0], h / size[1]
    x0, x1 = max(0, round(box[0] * kx)), min(w, round(box[2] * kx))
    y0, y1 = max(0, round(box[1] * ky)), min(h, round(box[3] * ky))
    out = (photo.astype(np.float32) * 0.35).astype(np.uint8)
    out[y0:y1, x0:x1] = photo[y0:y1, x0:x1]
    img = Image.fromarray(out)
    ImageDraw.Draw(img).rectangle(
        (x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=(255, 215, 0), width=max(2, w // 100)
    )
    return np.asarray(img)


def map_scale(maps: np.ndarray) -> tuple[float, float]:
    """(vmax, uniform) of a grid of maps (L, h, w) each summing to 1: the largest value of
    any map (the top of the shared colour scale) and 1 / (h w), a uniform map's value."""
    return float(maps.max()), 1.0 / float(maps[0].size)


def near_uniform(values: np.ndarray, uniform: float, tol: float = 0.05) -> bool:
    """True when every value lies within ``tol`` (relative) of ``uniform``."""
    return bool(np.all(np.abs(np.asarray(values) - uniform) <= tol * uniform))


def colour_bar_png(cmap: str, vmax: float, uniform: float | None, width: int = 320) -> np.ndarray:
    """A horizontal colour bar from 0 to ``vmax`` with ticks at 0, the uniform value and
    ``vmax``, as an (h, width, 3) uint8 image (for the app and the PNG grids)."""

    lut = _lut(cmap)
    bar = lut[np.linspace(0, len(lut) - 1, width).astype(int)].astype(np.uint8)
    # tick labels as large as the grid's tile labels: legible when the grid is shown small
    line = GRID_FONT + 4
    canvas = Image.new("RGB", (width + 20, 18 + 2 * line), "white")
    canvas.paste(Image.fromarray(np.repeat(bar[None], 12, 0)), (10, 2))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=GRID_FONT)
    # 0 and the top under the bar; the uniform value on a second line (it sits near 0)
    ticks = [(0.0, "0", 18), (vmax, f"{vmax:.3g}", 18)]
    if uniform is not None and 0 < uniform < vmax:
        ticks.append((uniform, f"uniform {uniform:.3g}", 18 + line))
    for v, text, y in ticks:
        x = 10 + round(v / vmax * (width - 1)) if vmax > 0 else 10
        draw.line([(x, 2), (x, y - 2)], fill="black", width=1)
        tw = draw.textlength(text, font=font)
        draw.text((min(max(0, x - tw / 2), width + 20 - tw), y), text, fill="black", font=font)
    return np.asarray(canvas)


def group_image(
    image: np.ndarray,
    labels: np.ndarray,
    alpha: float = 0.55,
    highlight: int | None = None,
    pixel: tuple[int, int] | None = None,
) -> np.ndarray:
    """Colour each pixel by the token that claims it: labels (h, w) ints -> (H, W, 3) uint8.

    ``highlight``: one token's group keeps its colour, the rest of the image turns grey;
    ``pixel``: (row, col) of a cell of the (h, w) grid, ringed."""
    h, w = image.shape[:2]
    n = max(int(labels.max()) + 1, 0 if highlight is None else highlight + 1)
    onehot = np.eye(n, dtype=np.float32)[labels].transpose(2, 0, 1)  # n h w
    up = upsample(onehot, (h, w)).argmax(0)
    colour = palette(n)[up].astype(np.float32)
    out = image * (1 - alpha) + colour * alpha
    if highlight is not None:
        grey = image.astype(np.float32).mean(-1, keepdims=True) * 0.6 + 90
        out = np.where((up == highlight)[..., None], out, grey)
    out = out.round().clip(0, 255).astype(np.uint8)
    if pixel is not None:
        canvas = Image.fromarray(out)
        gh, gw = labels.shape
        _ring(ImageDraw.Draw(canvas), (pixel[1] + 0.5) / gw * w, (pixel[0] + 0.5) / gh * h, 7)
        out = np.asarray(canvas)
    return out


def attention_heatmap(
    matrix: np.ndarray,
    title: str = "",
    labels: list[str] | None = None,
    highlight: int | None = None,
) -> go.Figure:
    """Token-to-token attention (L, L) as a heatmap: row = query token, column = key token.

    Anchored at 0 with the uniform value 1/L marked on the colour bar. ``highlight``: a row
    and column index outlined (the picked token). Every cell carries an invisible marker, so
    a click selects it in Streamlit (``on_select``; heatmaps alone are not selectable): the
    selected point's ``point_index`` is ``row * L + column``."""
    n, m = matrix.shape
    labels = labels or [f"t{i}" for i in range(max(n, m))]
    uniform = 1.0 / m
    top = max(float(matrix.max()), uniform * 1.0001)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            colorscale="Viridis",
            zmin=0,
            zmax=top,
            # the colour bar lies under the matrix: beside it, it took a third of a narrow
            # column and squeezed the matrix into a strip (1000-px pages)
            colorbar=_uniform_ticks(uniform, top, short=True)
            | {
                "orientation": "h",
                "y": -0.32,
                "yanchor": "top",
                "thickness": 12,
                "len": 1.0,
                "tickangle": 0,
                "title": {"text": f"uniform: 1/L = {uniform:.3g}", "side": "bottom"},
            },
            hoverinfo="skip",
        )
    )
    rows, cols = np.divmod(np.arange(n * m), m)
    fig.add_scatter(
        x=cols,
        y=rows,
        mode="markers",
        marker={"size": 14, "color": "rgba(0,0,0,0)"},
        customdata=np.stack(
            [[labels[r] for r in rows], [labels[c] for c in cols], matrix.ravel()], 1
        ),
        hovertemplate="token %{customdata[0]} reads %{customdata[1]}: "
        "%{customdata[2]:.4f}<extra></extra>",
        showlegend=False,
    )
    if highlight is not None:
        line = {"color": PICK, "width": 3}
        fig.add_shape(
            type="rect", x0=-0.5, x1=m - 0.5, y0=highlight - 0.5, y1=highlight + 0.5, line=line
        )
        fig.add_shape(
            type="rect", y0=-0.5, y1=n - 0.5, x0=highlight - 0.5, x1=highlight + 0.5, line=line
        )
    if near_uniform(matrix, uniform):
        title += "<br><sup>attention ~ uniform: the transformer mixes all tokens equally</sup>"
    axis = {"tickmode": "array", "showgrid": False, "zeroline": False}
    fig.update_layout(
        title=title,
        yaxis=axis
        | {
            "range": [n - 0.5, -0.5],
            "title": "query token",
            "tickvals": list(range(n)),
            "ticktext": labels[:n],
        },
        xaxis=axis
        | {
            "range": [-0.5, m - 0.5],
            "title": "key token",
            # every other label past 8 tokens, upright: 16 labels overlapped when narrow
            "tickvals": list(range(0, m, 1 if m <= 8 else 2)),
            "ticktext": labels[:m][:: 1 if m <= 8 else 2],
            "tickangle": 0,
        },
        height=440,
        margin={"l": 10, "r": 10, "t": 60, "b": 90},
        clickmode="event+select",
    )
    return fig


def _uniform_ticks(uniform: float, top: float, short: bool = False) -> dict:
    """Colour-bar ticks at 0, the uniform value and the top; one label for the last two when
    they would overlap (top within 15% of uniform). ``short``: the uniform tick reads
    "1/L" (its value in the bar's title), for a bar too short for long labels."""
    u = "1/L" if short else f"1/L = {uniform:.3g}"
    if top < 1.15 * uniform:
        return {"tickvals": [0, top], "ticktext": ["0", f"{u}, max {top:.3g}"]}
    return {"tickvals": [0, uniform, top], "ticktext": ["0", u, f"{top:.3g}"]}


def predictions_bar(classes: list[str], probs: np.ndarray, k: int = 5) -> go.Figure:
    """Horizontal bar chart of the top-k class probabilities."""
    order = np.argsort(-probs)[:k][::-1]
    fig = go.Figure(
        go.Bar(
            x=probs[order],
            y=[classes[i] for i in order],
            orientation="h",
            text=[f"{probs[i]:.1%}" for i in order],
            textposition="auto",
        )
    )
    fig.update_layout(
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        height=40 + 30 * len(order),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


@dataclass(frozen=True)
class GridMarks:
    """What a grid of token maps marks on top of the maps (the app's linked views).

    pixel: (row, col) of the picked cell on the maps' (h, w) grid, ringed on every tile.
    token: the picked token, whose tile gets a frame.
    share: per-token share of the pixels, added to each tile's label.
    """

    pixel: tuple[int, int] | None = None
    token: int | None = None
    share: np.ndarray | None = None


def token_grid(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str = "",
    cols: int = 8,
    shared: bool = True,
    marks: GridMarks | None = None,
) -> Image.Image:
    """Every token's map over the image as one picture (PIL), as the app shows it and the
    PNG export writes it.

    ``shared`` (default): one colour scale for every tile, from 0 to the largest value of
    any map, with a colour bar marking a uniform map's value; each tile is labelled with its
    entropy relative to a uniform map (1 = looks everywhere) and, with ``marks.share``, the
    share of the pixels it wins. ``shared=False`` stretches each tile to its own range, and
    the title says so. Composed with PIL (tiles of at most 160 px): 30x faster than
    matplotlib subplots."""
    marks = marks or GridMarks()
    return compose_grid(
        grid_tiles(image, maps, cmap, alpha, title, shared, marks.share), cols, marks
    )


@dataclass(frozen=True)
class GridTiles:
    """What a PNG grid of maps shows before any mark: the overlays at tile size, their
    labels, the title, the colour bar (None when each tile is stretched) and the maps' (h, w)
    grid. The app keeps it per drawing setting, so a picked token or pixel only recomposes."""

    tiles: list[np.ndarray]
    labels: list[str]
    title: str
    bar: np.ndarray | None
    grid_hw: tuple[int, int]


def grid_tiles(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str = "",
    shared: bool = True,
    share: np.ndarray | None = None,
) -> GridTiles:
    """The unmarked parts of :func:`token_grid` (its arguments, with ``share`` as in
    :class:`GridMarks`)."""
    tiles, labels, title, (vmax, uniform) = _grid_parts(
        image, maps, cmap, alpha, title, shared, share, side=TILE_SIDE
    )
    bar = colour_bar_png(cmap, vmax, uniform) if shared else None
    return GridTiles(tiles, labels, title, bar, tuple(maps.shape[1:]))


def compose_grid(parts: GridTiles, cols: int = 8, marks: GridMarks | None = None) -> Image.Image:
    """:class:`GridTiles` laid out ``cols`` a row, with ``marks`` (pixel ring, token frame)."""
    return _grid_canvas(
        parts.tiles,
        parts.title,
        cols,
        labels=parts.labels,
        bar=parts.bar,
        marks=marks,
        grid_hw=parts.grid_hw,
    )


def _grid_parts(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str,
    alpha: float,
    title: str,
    shared: bool,
    share: np.ndarray | None,
    side: int | None = None,
) -> tuple[list[np.ndarray], list[str], str, tuple[float, float]]:
    """What a grid of maps shows, in PNG and SVG alike: the tiles, their labels (token,
    share, entropy over uniform), the title with the scale note, and (vmax, uniform).

    With ``side`` the tiles are drawn at the size the PNG grid shows them (the image
    resized so that its longer side is ``side``, the maps resized onto it): a tenth of the
    pixels of a full-size overlay, so a grid is drawn in a few milliseconds."""
    from ..analysis import entropy_ratio

    vmax, uniform = map_scale(maps)
    if side is not None:
        image = _fit(image, side)
    tiles = token_strip(image, maps, cmap, alpha, vmax if shared else None)
    ratio = entropy_ratio(maps)
    # short labels in a large font, legible (11 px or more) even when the grid is shown in
    # half of a 1000-px page: the token and the share of the pixels it wins (or, without
    # shares, its entropy over a uniform map's); the Table tab has every number
    if share is None:
        labels = [f"t{i}  {ratio[i]:.2f}" for i in range(len(maps))]
        what = "tiles: token, entropy / uniform"
    else:
        labels = [f"t{i}  {s:.0%}" for i, s in enumerate(share)]
        what = "tiles: token, share of pixels"
    note = (
        f"one scale 0-{vmax:.3g} (uniform {uniform:.3g})"
        if shared
        else "each tile stretched to its own range"
    ) + f"; {what}"
    if near_uniform(maps, uniform, 0.1):
        note += "; maps ~ uniform: every token looks everywhere"
    return tiles, labels, f"{title} [{note}]" if title else note, (vmax, uniform)


def token_grid_png(
    image: np.ndarray,
    maps: np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str = "",
    cols: int = 8,
    fmt: str = "png",
    shared: bool = True,
    marks: GridMarks | None = None,
) -> bytes:
    """:func:`token_grid` as PNG bytes, or as SVG (``fmt="svg"``, drawn by matplotlib)."""
    if fmt == "png":
        buf = io.BytesIO()
        token_grid(image, maps, cmap, alpha, title, cols, shared, marks).save(buf, "PNG")
        return buf.getvalue()
    share = None if marks is None else marks.share
    tiles, labels, title, _ = _grid_parts(image, maps, cmap, alpha, title, shared, share)
    rows = (len(tiles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(tiles):
            ax.imshow(tiles[i])
            ax.set_title(labels[i], fontsize=7)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 resized (bilinear) so that its longer side is ``side``."""
    th, tw = _tile_size(image, side)
    if (th, tw) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((tw, th), Image.BILINEAR))


# a PNG grid's gap between tiles, its label band and the labels' font size, in pixels: the
# app shows a grid at 39% of its size at 1000 px (two models side by side), where 32-px
# labels are 12.5 px (legible: at least 11 px, tests/test_browser.py)
GRID_PAD, GRID_LABEL_H, GRID_FONT = 6, 38, 32


def _tile_origins(n: int, tile_hw: tuple[int, int], cols: int, title: str) -> list[tuple[int, int]]:
    """The (x, y) of each of ``n`` grid cells (label band on top, tile under it), as
    :func:`_grid_canvas` lays them out."""
    th, tw = tile_hw
    title_h = 30 if title else 0
    return [
        (GRID_PAD + c * (tw + GRID_PAD), title_h + r * (th + GRID_LABEL_H + GRID_PAD))
        for r, c in (divmod(i, cols) for i in range(n))
    ]


def _tile_size(tile: np.ndarray, side: int) -> tuple[int, int]:
    """(height, width) a tile is shown at: its longer side ``side``."""
    h, w = tile.shape[:2]
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def tile_boxes(parts: GridTiles, cols: int = 8) -> list[tuple[int, int, int, int]]:
    """Each tile's box (left, top, right, bottom; its label included) in the pixels of
    :func:`compose_grid`'s picture: what a click on the picture hits."""
    th, tw = _tile_size(parts.tiles[0], TILE_SIDE)
    origins = _tile_origins(len(parts.tiles), (th, tw), cols, parts.title)
    return [(x, y, x + tw, y + GRID_LABEL_H + th) for x, y in origins]


def _grid_canvas(
    tiles: list[np.ndarray],
    title: str,
    cols: int,
    side: int = TILE_SIDE,
    labels: list[str] | None = None,
    bar: np.ndarray | None = None,
    marks: GridMarks | None = None,
    grid_hw: tuple[int, int] = (1, 1),
) -> Image.Image:
    """Tiles (H, W, 3) uint8 in a grid, each under its label ("token i" by default), with
    an optional colour bar image at the bottom; ``marks`` rings a cell of the ``grid_hw``
    map grid on every tile and frames one tile."""

    marks = marks or GridMarks()
    labels = labels or [f"token {i}" for i in range(len(tiles))]
    th, tw = _tile_size(tiles[0], side)
    pad, label_h, title_h = GRID_PAD, GRID_LABEL_H, 30 if title else 0
    rows = (len(tiles) + cols - 1) // cols
    ncols = min(cols, len(tiles))
    bar_h = 0 if bar is None else bar.shape[0] + pad
    width = max(pad + ncols * (tw + pad), 0 if bar is None else bar.shape[1] + 2 * pad)
    canvas = Image.new("RGB", (width, title_h + rows * (th + label_h + pad) + bar_h), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=GRID_FONT)
    if title:
        draw.text((pad, 4), title, fill="black", font=ImageFont.load_default(size=20))
    for i, (tile, (x, y)) in enumerate(
        zip(tiles, _tile_origins(len(tiles), (th, tw), cols, title), strict=True)
    ):
        draw.text((x, y), labels[i], fill="black", font=font)
        pic = Image.fromarray(tile)
        canvas.paste(
            pic if pic.size == (tw, th) else pic.resize((tw, th), Image.BILINEAR), (x, y + label_h)
        )
        if marks.pixel is not None:
            _ring(
                draw,
                x + (marks.pixel[1] + 0.5) / grid_hw[1] * tw,
                y + label_h + (marks.pixel[0] + 0.5) / grid_hw[0] * th,
            )
        if marks.token == i:
            draw.rectangle(
                [x - 3, y + label_h - 3, x + tw + 2, y + label_h + th + 2], outline=PICK, width=3
            )
    if bar is not None:
        canvas.paste(Image.fromarray(bar), (pad, title_h + rows * (th + label_h + pad)))
    return canvas


def _ring(draw: ImageDraw.ImageDraw, x: float, y: float, r: float = 5) -> None:
    """A black-and-white ring at (x, y): visible on any colour map."""
    draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], outline="black", width=2)
    draw.ellipse([x - r + 1, y - r + 1, x + r - 1, y + r - 1], outline="white", width=2)


def confusion_heatmap(confusion: list[list[int]], classes: list[str]) -> go.Figure:
    """Confusion matrix (rows = true class, columns = predicted) as a heatmap."""
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(confusion),
            x=classes,
            y=classes,
            colorscale="Blues",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        yaxis={"autorange": "reversed", "title": "true class"},
        xaxis={"title": "predicted"},
        height=420,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


def curves_figure(history: list[dict]) -> go.Figure:
    """Training curves from a card's history: loss and accuracies per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = go.Figure()
    fig.add_scatter(x=epochs, y=[h.get("train_loss") for h in history], name="train loss")
    fig.add_scatter(x=epochs, y=[h.get("train_acc") for h in history], name="train accuracy")
    if any("val_acc" in h for h in history):
        fig.add_scatter(x=epochs, y=[h.get("val_acc") for h in history], name="val accuracy")
    fig.update_layout(
        xaxis={"title": "epoch"}, height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    return fig


def token_class_heatmap(matrix: np.ndarray, classes: list[str], title: str = "") -> go.Figure:
    """A (classes, tokens) table, e.g. the mean share of the image each token wins per class."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=[f"t{i}" for i in range(matrix.shape[1])],
            y=classes,
            colorscale="Viridis",
            zmin=0,
            hovertemplate="class %{y}, token %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        yaxis={"autorange": "reversed", "title": "class"},
        xaxis={"title": "token"},
        height=120 + 24 * len(classes),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def deletion_plot(curve: np.ndarray, random_curve: np.ndarray, class_name: str) -> go.Figure:
    """Deletion curves: p(predicted class) as tokens are removed by importance / at random."""
    k = list(range(len(curve)))
    fig = go.Figure()
    fig.add_scatter(x=k, y=random_curve, name="random order (mean)", line={"dash": "dash"})
    fig.add_scatter(x=k, y=curve, name="most important first", fill="tonexty")
    fig.update_layout(
        xaxis={"title": "tokens removed"},
        yaxis={"title": f"p({class_name})", "rangemode": "tozero"},
        height=300,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig
