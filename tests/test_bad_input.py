"""Bad input, case by case (issue item 8): malformed image bytes, predictions, labels and image lists. Each case
gives the right result, or one line that names the file or field, and a non-zero exit: never a traceback, never a
partial output. Images are read as `cxrjax predict` reads them (`images.read_pixels`, whose one-line errors predict
lists per file); CSVs go through `cxrjax score` in-process."""

import csv
import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cxrjax import cli
from cxrjax.data import images, nih
from cxrjax.data.findings import FINDINGS

PIXELS = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
          "View Position"]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _dicom(stored=PIXELS.astype(np.uint16), photometric="MONOCHROME2", preamble=True, **attributes) -> bytes:
    ds = Dataset()
    ds.set_pixel_data(stored, photometric, 8 if stored.dtype == np.uint8 else 12)
    ds.update({"SOPClassUID": SecondaryCaptureImageStorage, "SOPInstanceUID": generate_uid(), "Modality": "DX",
               **attributes})
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    # without the preamble and "DICM", the file starts at its meta group 0002 (pydicom's force=True reads it)
    return buffer.getvalue()[0 if preamble else 132:]


def _without_pixel_data() -> bytes:
    ds = Dataset()
    ds.update({"SOPClassUID": SecondaryCaptureImageStorage, "SOPInstanceUID": generate_uid(), "Modality": "DX"})
    buffer = io.BytesIO()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _bad_transfer_syntax() -> bytes:
    data = bytearray(_dicom())
    syntax = b"1.2.840.10008.1.2.1\x00"  # Explicit VR Little Endian, as set_pixel_data writes it
    at = data.index(syntax)
    data[at:at + len(syntax)] = b"1.2.840.10008.1.2.4\x00"  # a compressed syntax no plugin decodes
    return bytes(data)


def _mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """`count` copies of `data` with a few random bytes overwritten past the first 8 (a fixed seed)."""
    rng = np.random.default_rng(seed)
    mutated = []
    for _ in range(count):
        copy = bytearray(data)
        for at in rng.integers(8, len(data), 4):
            copy[at] = int(rng.integers(0, 256))
        mutated.append(bytes(copy))
    return mutated


# (file name, its bytes) that read as the 64×64 PIXELS, whatever the name.
READABLE = {
    "png named .png": ("a.png", _png),
    "png named .dcm": ("a.dcm", _png),
    "jpeg named .png": ("a.png", _jpeg),
    "dicom named .png": ("a.png", _dicom),
    "dicom named .dcm": ("a.dcm", _dicom),
    "dicom without preamble named .png": ("a.png", lambda: _dicom(preamble=False)),
    "dicom without preamble, no suffix": ("a", lambda: _dicom(preamble=False)),
}


@pytest.mark.parametrize("name,make", READABLE.values(), ids=READABLE.keys())
def test_a_file_is_read_by_its_content_not_its_name(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    pixels = images.read_pixels(path)
    if make is _jpeg:  # as PIL decodes the JPEG itself
        expected = np.asarray(Image.open(io.BytesIO(_jpeg())), np.float32)
    elif make is _png:
        expected = PIXELS.astype(np.float32)
    else:  # DICOM without a window: min-max onto 0..255
        expected = PIXELS / PIXELS.max() * np.float32(255)
    np.testing.assert_allclose(pixels, expected, atol=1e-3)


# (file name, its bytes, a fragment of the message)
UNREADABLE = {
    "zero-byte png": ("a.png", lambda: b"", "empty file"),
    "zero-byte dicom": ("a.dcm", lambda: b"", "empty file"),
    "truncated png": ("a.png", lambda: _png()[:100], ""),
    "truncated jpeg": ("a.jpg", lambda: _jpeg()[:200], ""),
    "truncated dicom": ("a.dcm", lambda: _dicom()[:400], ""),
    "garbage named .png": ("a.png", lambda: bytes(range(256)) * 4, "not an image"),
    "garbage named .dcm": ("a.dcm", lambda: bytes(range(256)) * 4, ""),
    "text named .png": ("a.png", lambda: b"Image Index,Finding Labels\n", "not an image"),
    "dicom without pixel data": ("a.dcm", _without_pixel_data, "without pixel data"),
    "dicom of an undecodable transfer syntax": ("a.dcm", _bad_transfer_syntax, ""),
    "multi-frame dicom": ("a.dcm", lambda: _dicom(np.zeros((2, 8, 8), np.uint16)), "multi-frame"),
    "colour dicom": ("a.dcm", lambda: _dicom(np.zeros((8, 8, 3), np.uint8), "RGB"), "not a grayscale"),
    "dicom whose rescale is NaN": ("a.dcm", lambda: _dicom(RescaleSlope=1e308, RescaleIntercept=0), "NaN"),
}


def _assert_one_line_naming(error: Exception, path, fragment: str) -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and "\n" not in message and fragment in message, message


@pytest.mark.parametrize("name,make,fragment", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, name, make, fragment):
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(images.UnreadableImage) as error:
        images.read_pixels(path)
    _assert_one_line_naming(error.value, path, fragment)


@pytest.mark.parametrize("what", ["a directory", "a missing file"])
def test_a_path_that_is_no_file_is_one_line_naming_it(tmp_path, what):
    path = tmp_path / "scan.png"
    if what == "a directory":
        path.mkdir()
    with pytest.raises(images.UnreadableImage) as error:
        images.read_pixels(path)
    _assert_one_line_naming(error.value, path, "")


MUTATED = [(f"png-{i}", "a.png", data) for i, data in enumerate(_mutations(_png(), 8, seed=1))] + [
    (f"dicom-{i}", "a.dcm", data) for i, data in enumerate(_mutations(_dicom(), 8, seed=2))]


@pytest.mark.parametrize("name,data", [(name, data) for _, name, data in MUTATED], ids=[m[0] for m in MUTATED])
def test_mutated_bytes_read_or_fail_in_one_line(tmp_path, name, data):
    """A byte changed in the pixels may still decode (any 2-D image is an answer); anything else is one line."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        pixels = images.read_pixels(path)
    except images.UnreadableImage as error:
        _assert_one_line_naming(error, path, "")
    else:
        assert pixels.ndim == 2 and np.isfinite(pixels).all()


NAMES = [f"{i:08d}_000.png" for i in range(1, 21)]


def _write_csv(path, header, rows, bom: bool = False) -> str:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _labels_rows():
    return [[name, FINDINGS[i % 14] if i % 3 else "No Finding", 0, i, 50, "MF"[i % 2], "PA"]
            for i, name in enumerate(NAMES)]


def _predictions_rows():
    rng = np.random.default_rng(0)
    return [[name, *np.round(rng.random(14), 6)] for name in NAMES]


def _score(tmp_path, capsys, *, header=("Image Index", *FINDINGS), rows=None, labels=None, images_list=None,
           bom=False, raw_predictions=None):
    predictions = tmp_path / "p.csv"
    if raw_predictions is not None:
        predictions.write_bytes(raw_predictions)
    else:
        _write_csv(predictions, None if header is None else list(header),
                   _predictions_rows() if rows is None else rows, bom)
    labels_path = _write_csv(tmp_path / "Data_Entry.csv", HEADER, _labels_rows() if labels is None else labels)
    output = tmp_path / "metrics.json"
    arguments = ["score", "--predictions", str(predictions), "--labels", labels_path, "--bootstrap", "0",
                 "--output", str(output)]
    if images_list is not None:
        (tmp_path / "list.txt").write_text(images_list)
        arguments += ["--images", str(tmp_path / "list.txt")]
    code = cli.main(arguments)
    return code, capsys.readouterr(), output


def _modified(change):
    rows = _predictions_rows()
    change(rows)
    return rows


def _set(rows, row, column, value):
    rows[row][column] = value


BAD_PREDICTIONS = {
    "empty file": (dict(raw_predictions=b""), "no 'Image Index' column"),
    "not UTF-8": (dict(raw_predictions=b"\xff\xfe\x00I\x00m"), "not UTF-8 text"),
    "header only": (dict(rows=[]), "no predictions to score"),
    "no Image Index": (dict(header=("Image", *FINDINGS)), "no 'Image Index' column"),
    "missing a finding": (dict(header=("Image Index", *FINDINGS[:-1]), rows=[r[:-1] for r in _predictions_rows()]),
                          "lack columns for Hernia"),
    "X and prob_X": (dict(header=("Image Index", *FINDINGS, "prob_Mass"), rows=[[*r, 0.5] for r in
                                                                                 _predictions_rows()]),
                     "ambiguous columns: Mass and prob_Mass"),
    "a column twice": (dict(header=("Image Index", *FINDINGS, "Mass"), rows=[[*r, 0.5] for r in _predictions_rows()]),
                       "columns named more than once: Mass"),
    "Image Index twice": (dict(header=("Image Index", *FINDINGS, "Image Index"),
                               rows=[[*r, r[0]] for r in _predictions_rows()]), "more than once: Image Index"),
    "non-numeric": (dict(rows=_modified(lambda rows: _set(rows, 3, 2, "high"))), "line 5: unreadable"),
    "short row": (dict(rows=_modified(lambda rows: rows[4].pop())), "line 6: unreadable"),
    "NaN": (dict(rows=_modified(lambda rows: _set(rows, 3, 2, "nan"))), "outside [0, 1]"),
    "above 1": (dict(rows=_modified(lambda rows: _set(rows, 3, 2, 1.5))), "outside [0, 1]"),
    "infinite": (dict(rows=_modified(lambda rows: _set(rows, 3, 2, "-inf"))), "outside [0, 1]"),
    "duplicate rows": (dict(rows=_modified(lambda rows: rows.append(list(rows[0])))),
                       f"more than once: {NAMES[0]}"),
    "unknown image": (dict(rows=_modified(lambda rows: _set(rows, 0, 0, "99999999_000.png"))), "99999999_000.png"),
    "conflicting label rows": (dict(labels=_labels_rows() + [[NAMES[2], "Mass", 0, 2, 50, "M", "PA"]]),
                               f"rows that disagree (which labels are meant cannot be known): {NAMES[2]}"),
    "images listed twice": (dict(images_list=f"{NAMES[0]}\n{NAMES[1]}\n{NAMES[0]}\n"),
                            f"listed more than once (they would count twice): {NAMES[0]}"),
    "unknown name in --images": (dict(images_list=f"{NAMES[0]}\n77777777_000.png\n"), "77777777_000.png"),
    "empty --images": (dict(images_list="\n\n"), "no image names in the list"),
}


@pytest.mark.parametrize("case,message", BAD_PREDICTIONS.values(), ids=BAD_PREDICTIONS.keys())
def test_score_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, case, message):
    code, captured, output = _score(tmp_path, capsys, **case)
    error = captured.err.strip()
    assert code == 1 and "\n" not in error and "Traceback" not in error, error
    assert error.startswith("cxrjax score: error: ") and message in error, error
    assert not output.exists() and captured.out == ""


ACCEPTED = {
    "BOM": dict(bom=True),
    "identical duplicate label row": dict(labels=_labels_rows() + [_labels_rows()[2]]),
    "conflict on an image not scored": dict(labels=_labels_rows() + [["88888888_000.png", "Mass", 0, 8, 50, "M", "PA"],
                                                                      ["88888888_000.png", "Hernia", 0, 8, 50, "M",
                                                                       "PA"]]),
    "prob_ columns": dict(header=("Image Index", *(f"prob_{f}" for f in FINDINGS))),
    "--images subset": dict(images_list="\n".join(NAMES[:12]) + "\n"),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_score_answers_what_it_can_answer_truthfully(tmp_path, capsys, case):
    code, captured, output = _score(tmp_path, capsys, **case)
    assert code == 0, captured.err
    expected = 12 if "images_list" in case else len(NAMES)
    assert f'"num_images": {expected}' in output.read_text()


def test_conflicting_label_rows_leave_the_image_out_for_every_reader(tmp_path):
    rows = _labels_rows() + [_labels_rows()[1], [NAMES[2], "Mass", 0, 2, 50, "M", "PA"], ["x.png", "Mass"]]
    entries, rejected = nih.read_data_entry(_write_csv(tmp_path / "Data_Entry.csv", HEADER, rows))
    assert [entry.image_index for entry in entries] == [name for name in NAMES if name != NAMES[2]]
    assert rejected == [(NAMES[1], nih.DUPLICATE_ROW), ("x.png", rejected[1][1]),
                        (NAMES[2], f"{nih.CONFLICTING_ROWS} (lines 4, 23)")]
    assert rejected[1][1].startswith("bad CSV row")
    assert nih.conflicting_images(rejected) == [NAMES[2]]


@pytest.mark.parametrize("reader,content", [
    (nih.read_image_list, "\ufeffa.png\nb.png\n"),
    (nih.read_boxes, "\ufeffImage Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Infiltrate,1,2,3,4\n"),
], ids=["image list", "box list"])
def test_every_text_reader_accepts_a_bom(tmp_path, reader, content):
    path = tmp_path / "f.txt"
    path.write_text(content, encoding="utf-8")
    result = reader(path)
    assert result == ["a.png", "b.png"] or result == [nih.Box("a.png", "Infiltration", 1, 2, 3, 4)]


@pytest.mark.parametrize("content,message", [
    ("", "not a box list"),
    ("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2\n", "line 2: expected"),
    ("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,three,4\n", "line 2: expected"),
], ids=["empty", "short row", "non-numeric"])
def test_a_bad_box_list_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "boxes.csv"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        nih.read_boxes(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value) and message in str(error.value)
