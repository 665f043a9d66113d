"""vt_explorer: see which image region each visual token claims, how tokens attend to one
another, what the model predicts, and how the filter and recurrent tokenizers differ.

Run with ``bash scripts/app.sh`` (or ``streamlit run app.py``). This file holds the page's
order (:func:`main`); the sidebar and the views are in ``vt_explorer.ui``, every number
comes from ``vt_explorer.explore`` and every figure from ``vt_explorer.viz``.
"""

from __future__ import annotations

import streamlit as st

from vt_explorer.ui.inputs import image_uploads


def main() -> None:
    """The page: sidebar, model cards and dataset statistics on request, the images'
    overview (several images), then the images a page at a time (unreadable files named
    first)."""
    st.set_page_config(page_title="vt_explorer", layout="wide")
    st.title("What does each visual token look at?")
    st.caption(
        "A Visual Transformer pools the feature map into a few tokens by spatial attention "
        "(eq. 1 filter tokenizer, eq. 2 recurrent), relates them with a transformer and "
        "projects them back onto the pixels. Upload images to see it on your own pictures."
    )
    # toggles, not expanders: nothing is computed or sent until asked for
    c1, c2 = st.columns(2)
    cards = c1.toggle("Model cards: data, accuracy, curves, cost", key="cards")
    stats = c2.toggle("Dataset statistics per token (`vt-explorer tokens`)", key="stats")
    panel_area = st.container()
    items, examples = image_uploads()
    # the model code (torch, torchvision: ~2 s on a server's first page) is imported only
    # now, so the uploader above is usable meanwhile
    from vt_explorer.ui import panels
    from vt_explorer.ui.components import scroll_here
    from vt_explorer.ui.image import show_image
    from vt_explorer.ui.sidebar import sidebar

    cfg = sidebar()
    with panel_area:
        for on, panel in ((cards, panels.show_card), (stats, panels.show_token_statistics)):
            if on:
                for model_col, m in zip(st.columns(len(cfg.models)), cfg.models, strict=True):
                    with model_col:
                        panel(m)
    readable = panels.readable_images(panels.with_examples(items) if examples else items)
    chosen = panels.overview(readable, cfg) if len(readable) > 1 else None
    if chosen is not None:
        scroll_here(f"{chosen}-{readable[chosen][2]}")  # to the picked image, once
        show_image(chosen, readable[chosen], cfg)
        return
    st.session_state.pop("_scrolled_to", None)
    first = panels.page_start(len(readable))
    for idx, image in enumerate(readable[first : first + panels.PAGE_SIZE], start=first):
        show_image(idx, image, cfg)
    panels.bottom_pager(len(readable), first)


if __name__ == "__main__":
    main()
