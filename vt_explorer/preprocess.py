"""A checkpoint's own preprocessing: PIL image -> normalised (3, S, S) tensor."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .flags import UserError

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
_LETTERBOX_MAX = 1024  # a letterboxed photo is shrunk to this longest side before padding


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``input_size`` and normalise with ``mean``/``std``.

    ``resize="stretch"`` resizes the whole image to S x S (what CIFAR-trained models expect of
    a photo: the whole scene, small); ``"center_crop"`` resizes the short side to S * 8/7 and
    crops the centre S x S (the ImageNet convention); ``"crop<k>"`` (k >= 1) resizes the k-th
    fixed random-resized crop of the photo (:func:`fixed_crop_box`) to S x S, for cached
    training views (``distill --real-views``); ``"letterbox"`` pads the photo to a square
    with the normalisation's mean colour (zero after normalising) and resizes the square, so
    the model sees the whole photo at its own aspect. ``interpolation`` is PIL's resampling
    filter, ``"bicubic"`` (default) or ``"bilinear"`` (what ImageNet-pretrained weights saw).

    :meth:`view_box` says which pixels of the photo the model sees and :meth:`view` gives
    them: every map is drawn on that view, never on parts of the photo the model did not see.
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "stretch"
    interpolation: str = "bicubic"

    def view_box(self, image: Image.Image) -> tuple[float, float, float, float]:
        """The part of ``image`` the model sees, as a box (left, top, right, bottom) in the
        photo's own pixels: the centre square of side 7/8 of the short side for
        ``"center_crop"``, the k-th fixed crop for ``"crop<k>"``, the whole photo for
        ``"stretch"``, and for ``"letterbox"`` the square around the photo (it reaches past
        the photo's short sides, where the padding is)."""
        w, h = image.size
        if self.resize == "center_crop":
            side = min(w, h) * 7 / 8
            left, top = (w - side) / 2, (h - side) / 2
            return (left, top, left + side, top + side)
        if self.resize == "stretch":
            return (0.0, 0.0, float(w), float(h))
        if self.resize == "letterbox":
            side = max(w, h)
            left, top = (w - side) / 2, (h - side) / 2
            return (left, top, left + side, top + side)
        if self.resize.startswith("crop") and self.resize[4:].isdigit() and int(self.resize[4:]):
            return fixed_crop_box(image, int(self.resize[4:]))
        raise UserError(f"unknown resize mode {self.resize!r}")

    def view(self, image: Image.Image, side: int | None = None) -> Image.Image:
        """The pixels the model sees, before resizing to S x S: the crop (or the padded
        square) of the RGB photo, at most ``side`` pixels on its longest side (default: its
        own resolution). ``"stretch"`` gives the whole photo at its own aspect: the model
        sees it squeezed to a square, and its maps stretch back over it."""
        img = image.convert("RGB")
        if self.resize == "letterbox":
            if max(img.size) > _LETTERBOX_MAX:  # a bounded canvas whatever the photo's shape
                k = _LETTERBOX_MAX / max(img.size)
                img = img.resize(
                    (max(1, round(img.width * k)), max(1, round(img.height * k))), Image.BILINEAR
                )
            n = max(img.size)
            fill = tuple(round(255 * m) for m in self.mean)
            canvas = Image.new("RGB", (n, n), fill)
            canvas.paste(img, ((n - img.width) // 2, (n - img.height) // 2))
            img = canvas
        elif self.resize != "stretch":
            left, top, right, bottom = self.view_box(img)
            n = max(1, round(right - left)), max(1, round(bottom - top))
            if side is not None and max(n) > side:
                k = side / max(n)
                n = max(1, round(n[0] * k)), max(1, round(n[1] * k))
            return img.resize(n, Image.BILINEAR, box=(left, top, right, bottom))
        if side is not None and max(img.size) > side:
            k = side / max(img.size)
            img = img.resize(
                (max(1, round(img.width * k)), max(1, round(img.height * k))), Image.BILINEAR
            )
        return img

    def describe_view(self) -> str:
        """The view in words, for people: what part of the photo the model sees."""
        return {
            "center_crop": "the centre crop (the central square of 7/8 of the short side)",
            "stretch": "the whole photo, squeezed to a square",
            "letterbox": "the whole photo, padded to a square (letterboxed)",
        }.get(self.resize, f"a fixed crop of the photo ({self.resize})")

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """(3, S, S) float tensor from any PIL image (converted to RGB)."""
        img = image.convert("RGB")
        s = self.input_size
        if self.interpolation not in _FILTERS:
            raise UserError(f"unknown interpolation {self.interpolation!r}")
        flt = _FILTERS[self.interpolation]
        if self.resize == "center_crop":
            # the centre square of side S * 7/8 of the short side, resized straight to S x S:
            # the same as "short side to S * 8/7, then crop S x S", without ever building the
            # resized whole image (a 60000 x 1 photo would need 256 x 15.4M pixels)
            img = img.resize((s, s), flt, box=self.view_box(img))
        elif self.resize == "stretch":
            img = img.resize((s, s), flt)
        elif self.resize == "letterbox":
            img = self.view(img).resize((s, s), flt)
        elif self.resize.startswith("crop") and self.resize[4:].isdigit() and int(self.resize[4:]):
            img = img.resize((s, s), flt, box=fixed_crop_box(img, int(self.resize[4:])))
        else:
            raise UserError(f"unknown resize mode {self.resize!r}")
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (arr - mean) / std

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 3, S, S) from a list of PIL images."""
        return torch.stack([self(im) for im in images])


def fixed_crop_box(image: Image.Image, k: int, min_area: float = 0.25) -> tuple[float, ...]:
    """The ``k``-th fixed random-resized crop of a photo, as a PIL box (left, top, right,
    bottom): area ``U(min_area, 1)`` x the photo's, aspect ratio log-uniform in [3/4, 4/3], at
    a uniform position (torchvision's ``RandomResizedCrop`` geometry). The random numbers are
    seeded by ``k`` and the photo's own 8x8 thumbnail, so a photo gets the same k-th crop on
    every run and in any order, and different photos get different crops. Falls back to the
    centre square after 10 draws that do not fit (a very long photo)."""
    thumb = image.convert("RGB").resize((8, 8), Image.BILINEAR).tobytes()
    rng = np.random.default_rng(zlib.crc32(thumb + k.to_bytes(4, "little")))
    w, h = image.size
    for _ in range(10):
        area = rng.uniform(min_area, 1.0) * w * h
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if cw <= w and ch <= h:
            left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return (left, top, left + cw, top + ch)
    side = min(w, h)
    return ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
