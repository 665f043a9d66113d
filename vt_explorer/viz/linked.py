"""Figures of the linked views: pick a pixel on the image, see what each token weighs there.

Plotly figures whose clicks Streamlit can read (``st.plotly_chart(..., on_select=...)``):
a heatmap or an image is not selectable by a click, so each cell carries an invisible
scatter marker whose ``point_index`` names the cell (row-major).
"""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

from .export import image_bytes
from .figures import PICK


def data_url(data: bytes, mime: str) -> str:
    """Encoded image bytes as a ``data:MIME;base64`` URL (a Plotly image source)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png_data_url(image: np.ndarray) -> str:
    """(H, W, 3) uint8 as a PNG ``data:`` URL (a compact Plotly image source)."""
    return data_url(image_bytes(image), "image/png")


def jpeg_data_url(image: np.ndarray) -> str:
    """(H, W, 3) uint8 as a JPEG ``data:`` URL: a photo in a fifth of the bytes of
    :func:`png_data_url`, for figures resent on every click."""
    return data_url(image_bytes(image, "jpeg"), "image/jpeg")


def pixel_picker(
    image: np.ndarray, grid_hw: tuple[int, int], pixel: tuple[int, int] | None = None
) -> go.Figure:
    """The image with one clickable marker per cell of the (h, w) map grid; the picked cell
    is ringed. A click's ``point_index`` is ``row * w + col``."""
    height, width = image.shape[:2]
    h, w = grid_hw
    rows, cols = np.divmod(np.arange(h * w), w)
    # JPEG: the figure (the photo inside it) is sent again on every click
    fig = go.Figure(go.Image(source=jpeg_data_url(image), hoverinfo="skip"))
    fig.add_scatter(
        x=(cols + 0.5) * width / w,
        y=(rows + 0.5) * height / h,
        mode="markers",
        marker={"size": max(6, 300 // max(h, w)), "color": "rgba(0,0,0,0)"},
        customdata=np.stack([rows, cols], 1),
        hovertemplate="row %{customdata[0]}, column %{customdata[1]}<extra></extra>",
        showlegend=False,
    )
    if pixel is not None:
        r, c = pixel
        fig.add_scatter(
            x=[(c + 0.5) * width / w],
            y=[(r + 0.5) * height / h],
            mode="markers",
            marker={"size": 16, "color": "rgba(0,0,0,0)", "line": {"color": PICK, "width": 3}},
            hoverinfo="skip",
            showlegend=False,
        )
    fig.update_xaxes(visible=False, range=[0, width])
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x")
    fig.update_layout(
        width=320,
        height=round(320 * height / width),
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def token_weights_bar(
    values: np.ndarray, uniform: float, title: str, highlight: int | None = None
) -> go.Figure:
    """One bar per token (t0, t1, ... in token order) with the uniform value as a dashed
    line, anchored at 0; ``highlight``: that token's bar in the pick colour."""
    colours = ["#4c78a8"] * len(values)
    if highlight is not None and highlight < len(values):
        colours[highlight] = PICK
    fig = go.Figure(
        go.Bar(
            x=[f"t{i}" for i in range(len(values))],
            y=values,
            marker_color=colours,
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    fig.add_hline(
        y=uniform,
        line_dash="dash",
        annotation_text=f"uniform {uniform:.3g}",
        annotation_position="top left",
    )
    fig.update_layout(
        title=title,
        height=240,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={"rangemode": "tozero"},
        xaxis={"type": "category"},
    )
    return fig


def cell_of(pixel: tuple[float, float], grid_hw: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) of an (h, w) grid under a point given as fractions (y, x) in [0, 1) of
    the image: how one picked pixel maps onto two models whose grids differ."""
    h, w = grid_hw
    return min(int(pixel[0] * h), h - 1), min(int(pixel[1] * w), w - 1)
