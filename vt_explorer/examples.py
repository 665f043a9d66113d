"""Example images the project draws itself (so the gallery works on a fresh install)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _canvas(top: tuple, bottom: tuple, size: int, horizon: float) -> Image.Image:
    h = int(size * horizon)
    arr = np.zeros((size, size, 3), np.float32)
    arr[:h] = top
    arr[h:] = bottom
    rng = np.random.default_rng(0)
    arr += rng.normal(0, 8, arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def example_images(size: int = 256) -> dict[str, Image.Image]:
    """A few synthetic scenes: name -> RGB image."""
    out = {}
    img = _canvas((135, 190, 235), (30, 70, 120), size, 0.55)
    d = ImageDraw.Draw(img)
    s = size
    d.polygon(
        [(0.2 * s, 0.55 * s), (0.8 * s, 0.55 * s), (0.72 * s, 0.68 * s), (0.28 * s, 0.68 * s)],
        fill=(90, 20, 20),
    )
    d.rectangle([0.35 * s, 0.42 * s, 0.55 * s, 0.55 * s], fill=(230, 230, 230))
    out["ship at sea (drawn)"] = img

    img = _canvas((150, 200, 240), (60, 140, 60), size, 0.5)
    d = ImageDraw.Draw(img)
    d.ellipse([0.3 * s, 0.45 * s, 0.7 * s, 0.7 * s], fill=(150, 100, 50))
    d.ellipse([0.62 * s, 0.38 * s, 0.8 * s, 0.52 * s], fill=(140, 90, 45))
    for x in (0.36, 0.44, 0.56, 0.64):
        d.rectangle([x * s, 0.65 * s, (x + 0.03) * s, 0.85 * s], fill=(120, 80, 40))
    out["animal in a field (drawn)"] = img.filter(ImageFilter.SMOOTH)

    img = _canvas((170, 170, 175), (70, 70, 70), size, 0.6)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle(
        [0.15 * s, 0.45 * s, 0.85 * s, 0.7 * s], radius=int(0.05 * s), fill=(200, 20, 30)
    )
    d.rectangle([0.3 * s, 0.35 * s, 0.65 * s, 0.47 * s], fill=(180, 210, 240))
    for x in (0.28, 0.72):
        d.ellipse([(x - 0.08) * s, 0.63 * s, (x + 0.08) * s, 0.79 * s], fill=(20, 20, 20))
    out["red car (drawn)"] = img
    return out
