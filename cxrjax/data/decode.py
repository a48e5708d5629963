"""Decoding a release PNG to a square uint8 grayscale array, whatever its mode.

The NIH release is mostly 8-bit mode L, but some images are RGBA (R = G = B, alpha 255), and re-exports of the data
come as LA, RGB or 16-bit. All become one (S, S, 1) uint8 array; resizing is area averaging (PIL's BOX filter), the
right filter for shrinking 1024² to 256² without aliasing. Modes that are not a grayscale radiograph (palette,
bilevel, CMYK, float) are refused with `UnsupportedImage` so the caller reports them instead of guessing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UnsupportedImage(ValueError):
    """The file decodes, but not to a grayscale image we know how to read."""


def _gray_from_color(image: Image.Image) -> Image.Image:
    """RGB(A) → L. An exact copy of a channel when R = G = B (what the release's RGBA files hold), luma otherwise."""
    rgb = np.asarray(image.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L")
    return image.convert("RGB").convert("L")


def to_grayscale_float(image: Image.Image) -> np.ndarray:
    """Any supported mode → float32 array on the 0..255 scale (16-bit images scaled by 255/65535)."""
    if image.mode == "L":
        return np.asarray(image, np.float32)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"), np.float32)
    if image.mode in ("RGB", "RGBA"):
        return np.asarray(_gray_from_color(image), np.float32)
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image, np.float32) * (255.0 / 65535.0)
    raise UnsupportedImage(f"unexpected image mode {image.mode!r}")


def resize_area(pixels: np.ndarray, size: int) -> np.ndarray:
    """Area (box) resampling of a float 0..255 array to (size, size), rounded to uint8."""
    if pixels.shape != (size, size):
        pixels = np.asarray(Image.fromarray(pixels, mode="F").resize((size, size), Image.Resampling.BOX))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def decode_file(path: str, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reads an image file into a (size, size, 1) uint8 array; also returns its original (width, height), the frame
    of the release's bounding boxes."""
    with Image.open(path) as image:
        image.load()
        pixels = to_grayscale_float(image)
    return resize_area(pixels, size)[..., None], (pixels.shape[1], pixels.shape[0])


def load_image(path: str, size: int) -> np.ndarray:
    """Reads an image file into a (size, size, 1) uint8 array."""
    return decode_file(path, size)[0]
