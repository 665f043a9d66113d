"""Small generated images and datasets for tests (nothing from ../shared is copied)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def make_image(color: tuple[int, int, int], size: int = 32, seed: int = 0) -> Image.Image:
    """A noisy image of one dominant colour with a bright square at a random place."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255)
    y, x = rng.integers(0, size - size // 4, 2)
    arr[y : y + size // 4, x : x + size // 4] = 255
    return Image.fromarray(arr.astype(np.uint8))


def make_dataset(root: Path, per_class: int = 24, size: int = 32, fmt: str = "PNG") -> Path:
    """root/<colour>/<i>.png for three colour classes; returns root."""
    for c, (name, color) in enumerate(COLORS.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext = "png" if fmt == "PNG" else "jpg"
            make_image(color, size, seed=1000 * c + i).save(d / f"{i:03d}.{ext}", fmt)
    return root


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    """Encode a PIL image."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()
