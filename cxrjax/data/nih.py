"""Readers for the NIH ChestX-ray14 release files: Data_Entry CSVs (v2020 and 2017), split lists, box list.

The 2017 CSV differs from v2020 in ways that break naive parsers (CRLF line ends, a trailing comma, zero-padded ids,
ages like ``058Y``/``011M``/``005D``); both are read here into the same `Entry`. A row that cannot be read is not
fatal: it is returned as a rejection with its reason, so that the caller can name it in a report.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re

import numpy as np

from cxrjax.data.findings import FINDING_INDEX, NO_FINDING, NUM_FINDINGS

DATA_ENTRY_FILES = {"v2020": "Data_Entry_2017_v2020.csv", "2017": "Data_Entry_2017.csv"}
SEXES = ("M", "F")
VIEWS = ("PA", "AP")
_AGE = re.compile(r"^(\d+)([YMWD]?)$")  # the 2017 CSV's ages are DICOM age strings (AS): days, weeks, months, years
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.0, "D": 1.0 / 365.0}
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


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Opens a text file, gunzipping `.gz`; newline='' lets csv handle CRLF files."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


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

    Returns the entries and the rejected rows as (image index or line number, reason).
    """
    required = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                "View Position")
    entries, rejected = [], []
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a Data_Entry CSV, missing columns {missing}")
        seen = set()
        for line, row in enumerate(reader, start=2):
            name = (row.get("Image Index") or "").strip() or f"line {line}"
            try:
                entry = _parse_entry(row)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                rejected.append((name, f"bad CSV row: {error}"))
                continue
            if entry.image_index in seen:
                rejected.append((name, "duplicate CSV row"))
                continue
            seen.add(entry.image_index)
            entries.append(entry)
    return entries, rejected


def read_image_list(path: str | os.PathLike) -> list[str]:
    """Reads `train_val_list.txt` / `test_list.txt`: one image file name per line."""
    with open_text(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_boxes(path: str | os.PathLike) -> list[Box]:
    """Reads `BBox_List_2017.csv` (x, y, w, h in the original image's pixel frame)."""
    boxes = []
    with open_text(path) as f:
        reader = csv.reader(f)
        next(reader)  # header: Image Index,Finding Label,Bbox [x,y,w,h],,,
        for row in reader:
            if not row or not row[0].strip():
                continue
            finding = _BOX_SPELLING.get(row[1].strip(), row[1].strip())
            x, y, w, h = (float(v) for v in row[2:6])
            boxes.append(Box(row[0].strip(), finding, x, y, w, h))
    return boxes
