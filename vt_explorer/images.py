"""Reading images: what the app, ``predict``, ``explain`` and datasets accept. Formats are
decided by content (six of them), sizes are bounded, and every refusal names the file."""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .flags import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
Image.MAX_IMAGE_PIXELS = 64_000_000  # larger images raise DecompressionBombError (a bad file)

MAX_ASPECT = 20  # longest side / shortest side of an image the app and explain can show


def check_viewable(img: Image.Image, name: str = "image") -> None:
    """UserError naming ``name`` when an image is too thin to show token maps on: an aspect
    ratio over :data:`MAX_ASPECT` (a 1000 x 2 strip) leaves no visible rows for a map of
    16 x 16 cells. Models could still classify it; the views could not show anything."""
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise UserError(
            f"{name}: {w}x{h} pixels is too thin to show (aspect ratio "
            f"{max(w, h) / min(w, h):.0f}:1; at most {MAX_ASPECT}:1); crop it and upload again"
        )


#: the image formats read, decided by content (Pillow's decoders for these only): an ICO,
#: TGA or EPS file named .png is refused, and nothing is handed to Ghostscript
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Decode image bytes into an RGB PIL image, honouring EXIF rotation.

    Reads :data:`IMAGE_FORMATS` only, whatever the file is called. Handles grayscale,
    palette, RGBA (composited on white), CMYK, 16-bit and floating-point images (scaled to
    0-255 by their own range), and takes the first frame of animations. Raises UserError
    naming ``name`` for empty, truncated, other-format or oversized (decompression bomb)
    data.
    """
    if not data:
        raise UserError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as err:
        kind = (
            "not an image (JPEG, PNG, WebP, BMP, GIF or TIFF)"
            if isinstance(err, UnidentifiedImageError)
            else "image too large"
        )
        raise UserError(f"{name}: {kind}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UserError(f"{name}: unreadable image ({err})") from None
    if img.width < 1 or img.height < 1:
        raise UserError(f"{name}: image has no pixels")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = arr / max(arr.max(), 1.0) * 255.0
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    elif img.mode == "F":  # floating point (a float32 TIFF): its own range to 0-255
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


#: the largest image file ``predict`` and ``explain`` read: 64 MB, the app's upload limit
#: (megabytes of 10^6 bytes, as the browser counts)
MAX_IMAGE_FILE_BYTES = 64 * 10**6


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file named on the command line; UserError naming it for anything
    but a regular file (a device such as /dev/zero or a FIFO would never end) or one over
    :data:`MAX_IMAGE_FILE_BYTES`."""
    try:
        st = path.stat()
    except OSError as err:
        raise UserError(f"{path}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: not a regular file")
    if st.st_size > MAX_IMAGE_FILE_BYTES:
        raise UserError(
            f"{path}: {st.st_size / 10**6:.0f} MB is more than an image file may be "
            f"({MAX_IMAGE_FILE_BYTES // 10**6} MB)"
        )
    return path.read_bytes()


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named by ``paths``: files as given, folders searched recursively for
    image extensions (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
        else:
            files.append(p)
    return files
