"""DICOM grayscale to 0..255 (`cxrjax.data.images`): the Modality LUT, then the VOI transform, each checked against
pixels computed here from DICOM PS3.3 C.11 with the output range y_min 0, y_max 255 (pydicom writes its own range,
which the reader maps onto 0..255). Float results are compared to ATOL: the reader's float32 output is within half
an ulp at 255 (7.6e-6) of its float64 value, and the float64 paths differ by ~1e-12; a coarser error is a bug."""

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from cxrjax.data import images

pytestmark = pytest.mark.filterwarnings("error")  # no pydicom or numpy warning on the way (overflow, float LUT input)

ATOL = 1e-4
TWELVE_BIT = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every unsigned 12-bit stored value once
SIGNED = np.arange(-2048, 2048, dtype=np.int16).reshape(64, 64)  # every signed 12-bit one
SMALL = TWELVE_BIT // 64  # 0..63, room for a huge rescale slope


def _save(path, stored: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12, **attributes) -> str:
    """A DICOM file of `stored` (uint16, or int16 for signed pixels) with `attributes` (keyword = value); pydicom's
    set_pixel_data (Explicit VR Little Endian) and save_as fill in the file meta."""
    ds = Dataset()
    ds.set_pixel_data(stored, photometric, bits_stored)
    ds.update({"SOPClassUID": SecondaryCaptureImageStorage, "SOPInstanceUID": generate_uid(), "Modality": "DX",
               **attributes})
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def _lut_item(descriptor: list[int], data: np.ndarray, vr: str = "OW") -> Dataset:
    """A LUT Sequence item; LUT Data may be OW (16-bit words, as most files have it) or US (a list of values)."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", descriptor)
    item.add_new("LUTData", vr, np.asarray(data, "<u2").tobytes() if vr == "OW" else [int(v) for v in data])
    return item


# PS3.3 C.11.2.1.2.1 (LINEAR) and C.11.2.1.3 (LINEAR_EXACT, SIGMOID), y_min = 0, y_max = 255.
def _linear(x, c, w):
    x = x.astype(np.float64)
    return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0,
                    np.where(x > c - 0.5 + (w - 1) / 2, 255.0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255))


def _linear_exact(x, c, w):
    x = x.astype(np.float64)
    return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, ((x - c) / w + 0.5) * 255))


def _sigmoid(x, c, w):
    return 255 / (1 + np.exp(-4 * (x.astype(np.float64) - c) / w))


def _lut(x, descriptor, data):
    """C.11.2.1.1 / C.11.1.1.1: the first mapped input → entry 0; inputs below it / past the last entry clamp."""
    entries, first, _ = descriptor
    return np.asarray(data)[np.clip(x.astype(np.int64) - first, 0, (entries or 2**16) - 1)]


def _min_max(values):
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min()) * 255


def test_rescale_then_linear_window(tmp_path):
    """The window is in rescaled units (2x − 1000 spans −1000..7190): stored 0..749 fall at or below it (0..499 if
    it were applied to stored values) and 1750.. above it."""
    path = _save(tmp_path / "x.dcm", TWELVE_BIT, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1500,
                 WindowWidth=2001)
    pixels = images.read_pixels(path)
    assert pixels.dtype == np.float32 and pixels.shape == (64, 64)
    np.testing.assert_allclose(pixels, _linear(2.0 * TWELVE_BIT - 1000, 1500, 2001), rtol=0, atol=ATOL)
    assert (pixels == 0).sum() == 750 and (pixels == 255).sum() == 4096 - 1750  # 2x − 1000 ≤ 499.5 / > 2499.5


def test_linear_exact_on_signed_pixels(tmp_path):
    """Signed stored values (pydicom's window range is then −2048..2047, mapped onto 0..255 all the same)."""
    path = _save(tmp_path / "x.dcm", SIGNED, WindowCenter=-100, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(images.read_pixels(path), _linear_exact(SIGNED, -100, 1000), rtol=0, atol=ATOL)


def test_sigmoid(tmp_path):
    path = _save(tmp_path / "x.dcm", TWELVE_BIT, WindowCenter=2000, WindowWidth=800, VOILUTFunction="SIGMOID")
    np.testing.assert_allclose(images.read_pixels(path), _sigmoid(TWELVE_BIT, 2000, 800), rtol=0, atol=ATOL)


@pytest.mark.parametrize(("bits", "vr"), [(8, "US"), (16, "OW")])
def test_voi_lut_sequence(tmp_path, bits, vr):
    """1024 entries from input 1000 (inputs below it, and past 2023, clamp to the first / last entry), entries k ·
    (2**bits − 1) / 255 for a non-linear k: the output range 0..2**bits − 1 maps to 0..255, so the pixels are k."""
    k = np.rint(255 * np.sqrt(np.linspace(0, 1, 1024))).astype(np.int64)
    descriptor, data = [1024, 1000, bits], k * ((2**bits - 1) // 255)
    path = _save(tmp_path / "x.dcm", TWELVE_BIT, VOILUTSequence=[_lut_item(descriptor, data, vr)])
    np.testing.assert_array_equal(images.read_image(path), _lut(TWELVE_BIT, descriptor, k))
    np.testing.assert_allclose(images.read_pixels(path), _lut(TWELVE_BIT, descriptor, data) / (2**bits - 1) * 255,
                               rtol=0, atol=ATOL)
    # With a window as well, the LUT wins: PS3.3 C.8.11.3.1.5 / C.11.2.1.2 make the two alternative views ("a
    # Window Width and Window Center or the VOI LUT Table, but not both, shall be applied") and leave the choice
    # open; the reader takes the LUT, as pydicom's apply_voi_lut does by default (prefer_lut=True).
    both = _save(tmp_path / "both.dcm", TWELVE_BIT, VOILUTSequence=[_lut_item(descriptor, data, vr)], WindowCenter=3000,
                 WindowWidth=500)
    np.testing.assert_array_equal(images.read_pixels(both), images.read_pixels(path))
    window_only = _save(tmp_path / "window.dcm", TWELVE_BIT, WindowCenter=3000, WindowWidth=500)
    assert np.abs(images.read_pixels(window_only) - images.read_pixels(path)).max() > 100


def test_voi_lut_clamps_inputs_far_past_its_last_entry(tmp_path):
    """Rescaled inputs up to 131070 into a 4096-entry LUT from 0: all past 4095 give the last entry. (pydicom's own
    lookup indexes through uint16, so 65536 + i would wrap to entry i; the reader clamps first.)"""
    stored = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    descriptor, data = [4096, 0, 16], np.arange(4096) * 16
    path = _save(tmp_path / "x.dcm", stored, bits_stored=16, RescaleSlope=2, RescaleIntercept=0,
                 VOILUTSequence=[_lut_item(descriptor, data)])
    expected = _lut(2 * stored.astype(np.int64), descriptor, data) / 65535 * 255
    assert (expected[stored >= 32768] == 65520 / 65535 * 255).all()  # the inputs pydicom alone would wrap
    np.testing.assert_allclose(images.read_pixels(path), expected, rtol=0, atol=ATOL)


def test_modality_lut_sequence(tmp_path):
    """A non-linear Modality LUT (2048 entries from stored 100), then min-max without a VOI, or a window over its
    output (pydicom's window range for a Modality LUT is that LUT's 0..2**16 − 1)."""
    descriptor, data = [2048, 100, 16], (np.arange(2048) ** 2) // 64
    modality = _lut(TWELVE_BIT, descriptor, data)
    path = _save(tmp_path / "x.dcm", TWELVE_BIT, ModalityLUTSequence=[_lut_item(descriptor, data)])
    np.testing.assert_allclose(images.read_pixels(path), _min_max(modality), rtol=0, atol=ATOL)
    windowed = _save(tmp_path / "w.dcm", TWELVE_BIT, ModalityLUTSequence=[_lut_item(descriptor, data)],
                     WindowCenter=20000, WindowWidth=30000, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(images.read_pixels(windowed), _linear_exact(modality, 20000, 30000), rtol=0, atol=ATOL)


@pytest.mark.parametrize("voi", [
    {},
    {"WindowCenter": 1800, "WindowWidth": 1201},
    {"WindowCenter": 1800, "WindowWidth": 1200, "VOILUTFunction": "SIGMOID"},
    {"VOILUTSequence": [_lut_item([2048, 1000, 16], np.arange(2048) * 32)]},
], ids=["min-max", "linear", "sigmoid", "voi-lut"])
def test_monochrome1_is_monochrome2_inverted(tmp_path, voi):
    """The same stored values and VOI with MONOCHROME1 (bright = low value): the MONOCHROME2 pixels, inverted."""
    mono1 = images.read_pixels(_save(tmp_path / "m1.dcm", TWELVE_BIT, "MONOCHROME1", **voi))
    mono2 = images.read_pixels(_save(tmp_path / "m2.dcm", TWELVE_BIT, "MONOCHROME2", **voi))
    np.testing.assert_allclose(mono1, 255 - mono2, rtol=0, atol=ATOL)
    assert np.ptp(mono2) > 200


@pytest.mark.parametrize("window", [
    {},
    {"WindowCenter": "", "WindowWidth": ""},  # present but empty
    {"WindowCenter": 30000, "WindowWidth": 0.5},  # LINEAR needs a width ≥ 1: pydicom refuses it
    {"WindowCenter": 30000, "WindowWidth": 100, "VOILUTFunction": "LOG"},  # not a VOI LUT function
], ids=["none", "empty", "too-narrow", "unknown-function"])
def test_min_max_without_a_usable_voi(tmp_path, window):
    stored = (np.arange(4096, dtype=np.uint16).reshape(64, 64) * 11 + 3000).astype(np.uint16)
    path = _save(tmp_path / "x.dcm", stored, bits_stored=16, **window)
    np.testing.assert_allclose(images.read_pixels(path), _min_max(stored), rtol=0, atol=ATOL)


@pytest.mark.parametrize(("stored", "attributes", "reason"), [
    (SMALL, {"RescaleSlope": 1e308, "RescaleIntercept": 0}, "rescale"),  # stored ≥ 2 overflows to inf
    # pydicom's window range is the stored range 0..4095 rescaled: 4095e305 = inf, so (y − y_min) / inf is NaN
    (SMALL, {"RescaleSlope": 1e305, "RescaleIntercept": 0, "WindowCenter": 0, "WindowWidth": 1e306}, "window"),
    (SMALL, {"RescaleSlope": 0, "RescaleIntercept": 5, "WindowCenter": 5, "WindowWidth": 10}, "window"),  # 0 / 0
    (SIGNED, {"RescaleSlope": 8.7e304, "RescaleIntercept": 0}, "min-max"),  # each end finite, max − min = inf
], ids=["rescale-inf", "window-range-inf", "window-range-zero", "min-max-span-inf"])
def test_non_finite_pixels_are_refused(tmp_path, stored, attributes, reason):
    path = _save(tmp_path / "x.dcm", stored, **attributes)
    with pytest.raises(images.UnreadableImage) as error:
        images.read_pixels(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "NaN or infinite" in message and reason in message
    assert "\n" not in message


@pytest.mark.parametrize(("stored", "photometric", "reason"), [
    (np.zeros((8, 8, 3), np.uint8), "RGB", "not a grayscale radiograph"),
    (np.zeros((2, 8, 8), np.uint16), "MONOCHROME2", "multi-frame"),
], ids=["colour", "multi-frame"])
def test_refusals(tmp_path, stored, photometric, reason):
    path = _save(tmp_path / "x.dcm", stored, photometric, 8 if stored.dtype == np.uint8 else 12)
    with pytest.raises(images.UnreadableImage, match=reason) as error:
        images.read_pixels(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
