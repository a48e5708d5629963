"""Decoding a release PNG to a square uint8 grayscale array, whatever its mode.

The NIH release is mostly 8-bit mode L, but some images are RGBA (R = G = B, alpha 255), and re-exports of the data
come as LA, RGB or 16-bit. All become one (S, S, 1) uint8 array; resizing is area averaging (PIL's BOX filter), the
right filter for shrinking 1024² to 256² without aliasing. Modes that are not a grayscale radiograph (palette,
bilevel, CMYK, float) are refused with `UnsupportedImage` so the caller reports them instead of guessing.

A 16-bit PNG often holds fewer real bits: a 12-bit detector's values 0..4095, which divided by 65535 become a nearly
black image (maximum 16 of 255). Such a file is scaled by its real bit depth (`BitDepth`): the PNG's sBIT chunk,
which states it, when the file has one and its pixels respect it; otherwise the depth its maximum value needs, at
least 8 (a 16-bit file of values below 256 is read as 8-bit, not stretched). Pillow reads no sBIT, so
`png_significant_bits` finds the chunk in the file; an in-memory image has no chunks left and takes the maximum rule.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_BITS, MAX_BITS = 8, 16  # the depths a 16-bit grayscale PNG can be scaled by


class UnsupportedImage(ValueError):
    """The file decodes, but not to a grayscale image we know how to read."""


def _gray_from_color(image: Image.Image) -> Image.Image:
    """RGB(A) → L. An exact copy of a channel when R = G = B (what the release's RGBA files hold), luma otherwise."""
    rgb = np.asarray(image.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L")
    return image.convert("RGB").convert("L")


@dataclasses.dataclass(frozen=True)
class BitDepth:
    """The real depth of a 16-bit image's values and how it was found ("sBIT" or "maximum value")."""

    bits: int
    source: str


def png_significant_bits(path: str) -> int | None:
    """The gray channel's significant bits from a PNG's sBIT chunk (which precedes the image data), or None."""
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
        while len(header := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"sBIT":
                data = f.read(length)
                return data[0] if data and 1 <= data[0] <= MAX_BITS else None
            if kind in (b"IDAT", b"IEND"):
                return None
            f.seek(length + 4, 1)  # the chunk's data and its CRC
    return None


def bit_depth(image: Image.Image, significant_bits: int | None = None) -> BitDepth:
    """The depth to scale a 16-bit image by: `significant_bits` (sBIT) unless a pixel exceeds it, else the depth
    of its maximum value, clamped to 8..16."""
    maximum = int(np.asarray(image).max(initial=0))
    if significant_bits is not None and maximum < 2 ** significant_bits:
        return BitDepth(significant_bits, "sBIT")
    return BitDepth(min(max(maximum.bit_length(), MIN_BITS), MAX_BITS), "maximum value")


def read_picture(path: str) -> tuple[np.ndarray, BitDepth | None]:
    """A PNG, JPEG or other PIL-readable file as float32 (H, W) on the 0..255 scale, and the depth a 16-bit one
    was scaled by (None for 8-bit files)."""
    with Image.open(path) as image:
        image.load()
        depth = bit_depth(image, png_significant_bits(path)) if image.mode in SIXTEEN_BIT_MODES else None
        return to_grayscale_float(image, depth), depth


def to_grayscale_float(image: Image.Image, depth: BitDepth | None = None) -> np.ndarray:
    """Any supported mode → float32 array on the 0..255 scale; a 16-bit image scaled by 255 / (2**bits − 1) of
    `depth` (default: `bit_depth` by its maximum value)."""
    if image.mode == "L":
        return np.asarray(image, np.float32)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"), np.float32)
    if image.mode in ("RGB", "RGBA"):
        return np.asarray(_gray_from_color(image), np.float32)
    if image.mode in SIXTEEN_BIT_MODES:
        depth = depth or bit_depth(image)
        return np.minimum(np.asarray(image, np.float32) * (255.0 / (2 ** depth.bits - 1)), 255.0)
    raise UnsupportedImage(f"unexpected image mode {image.mode!r}")


def resize_area(pixels: np.ndarray, size: int) -> np.ndarray:
    """Area (box) resampling of a float 0..255 array to (size, size), rounded to uint8."""
    if pixels.shape != (size, size):
        pixels = np.asarray(Image.fromarray(pixels, mode="F").resize((size, size), Image.Resampling.BOX))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def decode_file(path: str, size: int) -> tuple[np.ndarray, tuple[int, int], BitDepth | None]:
    """Reads an image file into a (size, size, 1) uint8 array; also returns its original (width, height), the frame
    of the release's bounding boxes, and the depth a 16-bit file was scaled by."""
    pixels, depth = read_picture(path)
    return resize_area(pixels, size)[..., None], (pixels.shape[1], pixels.shape[0]), depth


def load_image(path: str, size: int) -> np.ndarray:
    """Reads an image file into a (size, size, 1) uint8 array."""
    return decode_file(path, size)[0]
