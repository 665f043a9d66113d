"""The page's first widgets, which need Streamlit only: the image uploader is usable before
the model code (torch, torchvision: about 2 s) is imported on a server's first page."""

from __future__ import annotations

import streamlit as st

# one limit for every upload: what .streamlit/config.toml lets the server receive is what
# the app accepts (checked again after reading, in case the server runs with another
# config). One unit, the browser's: its uploader refuses files over N x 1,000,000 bytes
# (the server alone would take N MiB), so the app counts megabytes of 10^6 bytes too
MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 10**6
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def image_uploads() -> tuple[list[tuple[str, bytes]], bool]:
    """The image uploader and the gallery toggle: ((name, bytes) of each upload, whether to
    add the example gallery). The gallery is drawn on request only: nothing is computed for
    a visitor who came to upload."""
    uploads = st.file_uploader(
        f"Images (JPEG, PNG, WebP, BMP, GIF, TIFF; up to {MAX_UPLOAD_MB} MB and 64 megapixels each)",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        key="upload",
    )
    examples = st.toggle(
        "Show the example gallery",
        value=False,
        key="examples",
        help="drawn images and, when the server has them, real photos: drawn only when on",
    )
    items = [(f.name, f.getvalue()) for f in uploads or []]
    if not items and not examples:
        st.info("Upload images above, or turn on the example gallery.")
    return items, examples
