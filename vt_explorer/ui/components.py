"""The page's two small Streamlit v2 components (``st.components.v2``: no iframe, a few
lines of JavaScript each).

* :func:`clickable_grid`: a grid of map tiles that takes clicks. A click on a tile picks its
  token (the same as the "Highlight a token" picker), which frames it in every grid and
  shows it enlarged. One ``<img>`` of the grid's JPEG picture; the browser maps a click to
  a tile with the tiles' boxes in the picture's own pixels
  (:func:`vt_explorer.viz.figures.tile_boxes`) and sends the tile's index back.
* :func:`scroll_here`: scrolls the page to where it is placed (the image a visitor picked
  in the overview table).

Where a component cannot run (Streamlit's AppTest), the page is the same without it.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ..viz.linked import data_url

_JS = """
export default function({ parentElement, data, setTriggerValue }) {
  const img = parentElement.querySelector("img.vt-tiles");
  if (img.getAttribute("src") !== data.src) img.setAttribute("src", data.src);
  img.alt = data.alt;
  const hit = (e) => {
    const r = img.getBoundingClientRect();
    const x = (e.clientX - r.left) * data.width / r.width;
    const y = (e.clientY - r.top) * data.height / r.height;
    return data.boxes.findIndex(([x0, y0, x1, y1]) => x >= x0 && x < x1 && y >= y0 && y < y1);
  };
  img.onclick = (e) => {
    const i = hit(e);
    if (i >= 0) setTriggerValue("tile", i);
  };
  img.onmousemove = (e) => {
    const i = hit(e);
    img.title = i >= 0 ? `t${i}: click to enlarge` : "";
    img.style.cursor = i >= 0 ? "pointer" : "default";
  };
}
"""

_TILES = st.components.v2.component(
    "vt_explorer_tiles",
    html="<img class='vt-tiles' alt=''>",
    css="img.vt-tiles { width: 100%; height: auto; display: block; }",
    js=_JS,
    isolate_styles=False,  # the picture stays in the page's DOM, like st.image's
)


def clickable_grid(
    jpeg: bytes,
    size: tuple[int, int],
    boxes: list[tuple[int, int, int, int]],
    key: str,
    token_key: str,
    alt: str,
) -> None:
    """Show a grid picture (JPEG bytes of ``size`` = (width, height) pixels) whose tiles,
    at ``boxes`` (left, top, right, bottom in those pixels), pick their token on a click:
    the index is written to the session-state key ``token_key`` (the token picker's)."""
    _TILES(
        data={
            "src": _picture_url(jpeg, key),
            "width": size[0],
            "height": size[1],
            "boxes": [list(b) for b in boxes],
            "alt": alt,
        },
        key=key,
        on_tile_change=_on_tile(key, token_key),
        width="stretch",
    )


def _picture_url(jpeg: bytes, key: str) -> str:
    """Where the browser fetches a JPEG: Streamlit's media file store, as ``st.image`` does
    (a URL named by the bytes' hash, cached by the browser, dropped when no session shows
    it); in bare mode (AppTest, no server) a data URL. Sending the bytes inside the
    component's data instead cost about 0.1 s per view change (bench_browser)."""
    from streamlit import runtime

    if not runtime.exists():
        return data_url(jpeg, "image/jpeg")
    return runtime.get_instance().media_file_mgr.add(jpeg, "image/jpeg", f"vt-tiles-{key}")


def _on_tile(key: str, token_key: str) -> Callable[[], None]:
    """The click callback: the clicked tile's index becomes the picked token."""

    def pick() -> None:
        state = st.session_state.get(key)
        try:
            tile = state["tile"]
        except (KeyError, TypeError):
            tile = getattr(state, "tile", None)
        if tile is not None:
            st.session_state[token_key] = int(tile)

    return pick


_SCROLL = st.components.v2.component(
    "vt_explorer_scroll",
    html="<span class='vt-scroll'></span>",
    js="""
export default function({ parentElement }) {
  parentElement.scrollIntoView({ behavior: "smooth", block: "start" });
}
""",
    isolate_styles=False,
)


def scroll_here(key: str) -> None:
    """Scroll the page to this point once, when it is first drawn under ``key`` (a new
    ``key`` scrolls again; the same one on later reruns leaves the page where it is)."""
    if st.session_state.get("_scrolled_to") == key:
        return
    st.session_state["_scrolled_to"] = key
    _SCROLL(key=f"scroll-{key}", height=0)
