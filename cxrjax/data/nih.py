"""Readers for the NIH ChestX-ray14 release files: Data_Entry CSVs (v2020 and 2017), split lists, box list.

The 2017 CSV differs from v2020 in ways that break naive parsers (CRLF line ends, a trailing comma, zero-padded ids,
ages like ``058Y``/``011M``/``005D``); both are read here into the same `Entry`. A row that cannot be read is not
fatal: it is returned as a rejection with its reason, so that the caller can name it in a report.

An image listed twice is resolved here once for every caller: rows that say the same thing are one entry (the later
rows rejected as `DUPLICATE_ROW`: nothing is lost, and a report still shows the file was not clean); rows that
disagree leave the image out of the entries altogether and reject it as `CONFLICTING_ROWS`, since keeping either
row would be a silent choice of labels. `score` refuses such a file; `prepare` reports the image.

Every text file is read as UTF-8 with an optional byte-order mark (`utf-8-sig`): a CSV saved by Excel starts with
one, and it would otherwise become part of the first column's name.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator

import numpy as np

from cxrjax.data.findings import FINDING_INDEX, NO_FINDING, NUM_FINDINGS

DATA_ENTRY_FILES = {"v2020": "Data_Entry_2017_v2020.csv", "2017": "Data_Entry_2017.csv"}
SEXES = ("M", "F")
VIEWS = ("PA", "AP")
_AGE = re.compile(r"^(\d+)([YMWD]?)$")  # the 2017 CSV's ages are DICOM age strings (AS): days, weeks, months, years
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.0, "D": 1.0 / 365.0}
DUPLICATE_ROW = "duplicate CSV row"  # the same as an earlier row of its image: collapsed into that entry
CONFLICTING_ROWS = "conflicting duplicate CSV rows"  # rows of one image that disagree: the image is left out
# The box list spells one finding differently from the Data_Entry CSVs.
_BOX_SPELLING = {"Infiltrate": "Infiltration"}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of a Data_Entry CSV."""

    image_index: str
    findings: tuple[str, ...]
    follow_up: int
    patient_id: int
    age: float
    sex: str
    view: str

    @property
    def labels(self) -> np.ndarray:
        return multi_hot(self.findings)


@dataclasses.dataclass(frozen=True)
class Box:
    image_index: str
    finding: str
    x: float
    y: float
    w: float
    h: float


@contextlib.contextmanager
def open_text(path: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """Opens a text file, gunzipping `.gz`; newline='' lets csv handle CRLF files, utf-8-sig drops a leading BOM.

    Bytes that are not UTF-8 text, or a damaged `.gz`, surface while the file is read; they are raised here as one
    ValueError naming the file, rather than as the codec's or gzip's message that names none."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        f = io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    else:
        f = open(path, encoding="utf-8-sig", newline="")
    try:
        with f:
            yield f
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: damaged gzip file ({error})") from None


def find_release_file(release_dir: str | os.PathLike, name: str) -> str:
    """Finds `name` or `name.gz` in a release folder."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(release_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name} not found in {release_dir}")


def multi_hot(findings: tuple[str, ...] | list[str]) -> np.ndarray:
    labels = np.zeros(NUM_FINDINGS, np.uint8)
    for finding in findings:
        labels[FINDING_INDEX[finding]] = 1
    return labels


def parse_findings(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split("|") if name.strip())
    if names == (NO_FINDING,):
        return ()
    unknown = [name for name in names if name not in FINDING_INDEX]
    if unknown or not names:
        raise ValueError(f"unknown finding label(s) {unknown or [text]!r}")
    return tuple(sorted(set(names), key=FINDING_INDEX.__getitem__))


def parse_age(text: str) -> float:
    """Age in years from `57` (v2020) or `058Y` / `011M` / `005D` (2017, and a DICOM file's PatientAge)."""
    match = _AGE.match(text.strip())
    if not match:
        raise ValueError(f"unreadable age {text!r}")
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)]


def _parse_entry(row: dict[str, str]) -> Entry:
    sex = row["Patient Gender"].strip()
    view = row["View Position"].strip()
    if sex not in SEXES:
        raise ValueError(f"unknown sex {sex!r}")
    if view not in VIEWS:
        raise ValueError(f"unknown view position {view!r}")
    return Entry(
        image_index=row["Image Index"].strip(),
        findings=parse_findings(row["Finding Labels"]),
        follow_up=int(row["Follow-up #"]),
        patient_id=int(row["Patient ID"]),
        age=parse_age(row["Patient Age"]),
        sex=sex,
        view=view,
    )


def read_data_entry(path: str | os.PathLike) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Reads a Data_Entry CSV (either version, optionally gzipped).

    Returns the entries and the rejected rows as (image index or line number, reason); an image whose rows conflict
    is one rejection, `CONFLICTING_ROWS` and the lines, and no entry.
    """
    required = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position")
    rejected = []
    first_of: dict[str, tuple[int, Entry]] = {}  # image → its first readable row's line and entry
    conflicts: dict[str, list[int]] = {}  # image → the lines of its rows, when they disagree
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a Data_Entry CSV, missing columns {missing}")
        for line, row in enumerate(reader, start=2):
            name = (row.get("Image Index") or "").strip() or f"line {line}"
            try:
                entry = _parse_entry(row)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                rejected.append((name, f"bad CSV row: {error}"))
                continue
            if entry.image_index not in first_of:
                first_of[entry.image_index] = (line, entry)
            elif entry == first_of[entry.image_index][1] and entry.image_index not in conflicts:
                rejected.append((name, DUPLICATE_ROW))
            else:
                conflicts.setdefault(entry.image_index, [first_of[entry.image_index][0]]).append(line)
    for name, lines in conflicts.items():
        rejected.append((name, f"{CONFLICTING_ROWS} (lines {', '.join(map(str, lines))})"))
    entries = [entry for name, (_, entry) in first_of.items() if name not in conflicts]
    return entries, rejected


def conflicting_images(rejected: list[tuple[str, str]]) -> list[str]:
    """The images of `read_data_entry`'s rejections whose rows conflict."""
    return [name for name, reason in rejected if reason.startswith(CONFLICTING_ROWS)]


def repeated_names(names) -> list[str]:
    """The names that occur more than once, sorted: what a list of images must not hold, or it counts them twice."""
    return sorted(name for name, count in collections.Counter(names).items() if count > 1)


def read_image_list(path: str | os.PathLike) -> list[str]:
    """Reads `train_val_list.txt` / `test_list.txt`: one image file name per line."""
    with open_text(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_boxes(path: str | os.PathLike) -> list[Box]:
    """Reads `BBox_List_2017.csv` (x, y, w, h in the original image's pixel frame)."""
    boxes = []
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)  # Image Index,Finding Label,Bbox [x,y,w,h],,,
        if not header or header[0].strip() != "Image Index":
            raise ValueError(f"{path}: not a box list (no 'Image Index' header)")
        for line, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                finding = _BOX_SPELLING.get(row[1].strip(), row[1].strip())
                x, y, w, h = (float(v) for v in row[2:6])
            except (IndexError, ValueError):
                raise ValueError(f"{path} line {line}: expected Image Index, Finding Label, x, y, w, h") from None
            boxes.append(Box(row[0].strip(), finding, x, y, w, h))
    return boxes
