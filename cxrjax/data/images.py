"""Reading a user's image file (PNG, JPEG or DICOM) into the model's input frame, and mapping between frames.

Why one module: `cxrjax predict` must feed a file exactly what evaluation feeds a shard record, so a file goes
through the same decoding (`cxrjax.data.decode.read_picture`, float on the 0..255 scale), the same area
resize to `config.data.size`² and the same centre crop to `config.data.crop`² (as `pipeline.eval_dataset`). The
geometry of that resize + crop also maps expert boxes (drawn in the original file's pixel frame) into the model's
frame, and Grad-CAM maps back out of it.

DICOM to 0..255 — the decision: a radiograph's stored values are detector units, often 12-16 bit, and the file says
how it is meant to be displayed; the grayscale pipeline of DICOM PS3.3 C.11 is pydicom's (`pydicom.pixels`), not a
second implementation of it. The Modality LUT first (`apply_modality_lut`: a Modality LUT Sequence, or RescaleSlope
/ RescaleIntercept), then the file's first VOI transform: a VOI LUT Sequence, else a window (WindowCenter /
WindowWidth, VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID) — the contrast a radiologist is shown, robust to
burned-in text and collimator edges that would stretch a min-max. A file may carry both; the standard calls them
alternative views, and the LUT is taken, as `apply_voi_lut` does by default, since it can hold a non-linear rendering
that no window can. The VOI output range is what becomes 0..255, so a window that maps stored values exactly onto
0..255 gives exactly those pixels: for a LUT, 0 to 2**bits − 1 of its LUT Descriptor; for a window, the range
`apply_windowing` writes below and above the window (read by windowing −inf and +inf, so it is pydicom's rule, not a
copy: the stored range, rescaled). Without a usable VOI (none, or a window pydicom refuses: a width below its
function's minimum, an unknown function), min-max over the image. MONOCHROME1 (bright = low value) is inverted last,
so the two photometric encodings of one image give the same pixels. A rescale or window that leaves a pixel NaN or
infinite is refused rather than drawn black, and so are multi-frame and colour files rather than guessed at.

A file is decoded by what it holds, not by its name (files are renamed, and PACS exports name everything .dcm or
nothing at all): a PNG or JPEG signature goes to PIL, the "DICM" marker after the 128-byte preamble to pydicom. A
file with neither is DICOM when it starts like a DICOM data set written without the preamble (a little-endian tag of
group 0002 or 0008, which pydicom's force=True reads) or when its name says .dcm / .dicom; anything else goes to PIL,
which knows its other formats by their content too. Every way a file can fail to be read raises `UnreadableImage`,
with a one-line message that names the file.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrjax.data.decode import UnsupportedImage, read_picture, resize_area

DICOM_SUFFIXES = (".dcm", ".dicom")


class UnreadableImage(ValueError):
    """A file that cannot be read as a grayscale radiograph; the message is one line that names the file."""


PICTURE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG (start of image + a marker)
DICOM_MARKER_OFFSET = 128  # "DICM" follows the preamble in a DICOM Part 10 file
RAW_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00")  # the first tag's group, little-endian, of a data set without preamble


def _is_dicom(path: str) -> bool:
    """Whether the file holds DICOM, by its first bytes; by its name only when they say nothing."""
    with open(path, "rb") as f:
        head = f.read(DICOM_MARKER_OFFSET + 4)
    if head.startswith(PICTURE_SIGNATURES):
        return False
    if head[DICOM_MARKER_OFFSET:] == b"DICM" or head[:2] in RAW_DICOM_GROUPS:
        return True
    return path.lower().endswith(DICOM_SUFFIXES)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high == low else (values - low) / (high - low)


def _voi(values: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """Modality LUT output → 0..1 by the file's first VOI transform and its output range (min-max without a usable
    one), and what was applied, for a message."""
    from pydicom.pixels import apply_voi, apply_windowing

    lut = (ds.get("VOILUTSequence") or [None])[0]
    if lut is not None and lut.get("LUTDescriptor") and lut.get("LUTData"):
        entries, first, bits = lut.LUTDescriptor
        # pydicom's lookup indexes through an array of the table's dtype (uint8 for 8-bit entries, else uint16), which
        # wraps an input 256 / 65536 or more past the first mapped, and truncates (with a warning) a float input. So
        # inputs are clamped to the table as the standard clamps them and made whole here, and an 8-bit table is
        # looked up as 16-bit (same entries; the descriptor of this just-read dataset is rewritten for that), while
        # its output range stays 0..2**bits − 1.
        inputs = np.clip(np.rint(values), first, first + (entries or 2**16) - 1).astype(np.int64)
        lut.LUTDescriptor = [entries, first, max(bits, 16)]
        return apply_voi(inputs, ds) / (2**bits - 1), "VOI LUT Sequence"
    if all(name in ds and ds[name].VM for name in ("WindowCenter", "WindowWidth")):
        try:
            low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
        except ValueError:  # pydicom refuses the window: a width below its function's minimum, an unknown function
            return _min_max(values), "min-max (the window is unusable)"
        function = ds.get("VOILUTFunction", "LINEAR")
        return ((apply_windowing(values, ds) - low) / (high - low),
                f"window ({function}, output range {low:g} to {high:g} after the rescale)")
    return _min_max(values), f"min-max (values {values.min():g} to {values.max():g})"


def _read_dicom(path: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        raise UnreadableImage(f"{path}: DICOM file without pixel data")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(f"{path}: DICOM photometric interpretation {photometric!r} is not a grayscale "
                              "radiograph (MONOCHROME1/2)")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise UnreadableImage(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames); expected one radiograph")
    with np.errstate(all="ignore"):  # a rescale or window that overflows is refused just below, not warned about
        values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        if not np.isfinite(values).all():
            raise UnreadableImage(f"{path}: the DICOM rescale (RescaleSlope {ds.get('RescaleSlope')}, RescaleIntercept "
                                  f"{ds.get('RescaleIntercept')}) makes pixel values NaN or infinite")
        unit, applied = _voi(values, ds)
    if not np.isfinite(unit).all():
        raise UnreadableImage(f"{path}: the DICOM {applied} makes pixel values NaN or infinite")
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return (unit * 255.0).astype(np.float32)


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """The whole image as float32 (height, width) on the 0..255 scale, at its own size."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImage(f"{path}: empty file")
        pixels = _read_dicom(path) if _is_dicom(path) else read_picture(path)[0]
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage(f"{path}: not an image (PNG, JPEG or DICOM)") from None
    except UnsupportedImage as error:
        raise UnreadableImage(f"{path}: {error}") from None
    except OSError as error:
        raise UnreadableImage(f"{path}: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 — pydicom and PIL raise many types for corrupt files.
        first_line = (str(error).splitlines() or [""])[0]
        raise UnreadableImage(f"{path}: {type(error).__name__}: {first_line}") from None
    if pixels.ndim != 2 or min(pixels.shape) == 0:
        raise UnreadableImage(f"{path}: expected one 2-D grayscale image, got pixels of shape {pixels.shape}")
    return pixels


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The whole image as uint8 (height, width), at its own size (e.g. to draw an overlay on)."""
    return np.clip(np.rint(read_pixels(path)), 0, 255).astype(np.uint8)


def crop_offset(size: int, crop: int) -> int:
    """Top (= left) offset of the centre crop, as `pipeline.eval_dataset` takes it."""
    return (size - crop) // 2


def model_input(pixels: np.ndarray, size: int, crop: int) -> np.ndarray:
    """float 0..255 (H, W) → (crop, crop, 1) uint8: area resize to size² as `prepare` writes shards, centre crop."""
    resized = resize_area(np.asarray(pixels, np.float32), size)
    top = crop_offset(size, crop)
    return np.ascontiguousarray(resized[top:top + crop, top:top + crop, None])


def load_input(path: str | os.PathLike, size: int, crop: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A file → its model input (crop, crop, 1) uint8 and its original (width, height)."""
    pixels = read_pixels(path)
    return model_input(pixels, size, crop), (pixels.shape[1], pixels.shape[0])


def box_to_input(box: tuple[float, float, float, float], source_size: tuple[int, int], size: int,
                 crop: int) -> tuple[float, float, float, float]:
    """(x, y, w, h) in the original frame → the model input frame, clipped to the crop (area 0 if outside it)."""
    x, y, w, h = box
    sx, sy = size / source_size[0], size / source_size[1]
    offset = crop_offset(size, crop)
    x0, x1 = np.clip([x * sx - offset, (x + w) * sx - offset], 0, crop)
    y0, y1 = np.clip([y * sy - offset, (y + h) * sy - offset], 0, crop)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def map_to_source(heatmap: np.ndarray, source_size: tuple[int, int], size: int) -> np.ndarray:
    """A (crop, crop) map in the model input frame → (height, width) of the original image, 0 outside the crop."""
    crop = heatmap.shape[0]
    offset = crop_offset(size, crop)
    full = np.zeros((size, size), np.float32)
    full[offset:offset + crop, offset:offset + crop] = heatmap
    return np.asarray(Image.fromarray(full, mode="F").resize(tuple(source_size), Image.Resampling.BILINEAR))
