"""`cxrjax predict`: probabilities of the 14 findings for image files, and which findings pass their thresholds.

Files are read with `cxrjax.data.images` into exactly the frame evaluation uses, then go through one jitted forward in
batches of a fixed shape (the last one zero-padded, its padding dropped), so the step compiles once whatever the
number of files. A file that cannot be read becomes a `FileError`; the others still get their predictions.

Decision thresholds come from the checkpoint's `extra["thresholds"]` (`{"youden": {finding: t}, "f1": {...}}`,
chosen on validation); without them every finding uses 0.5, and `Thresholds.note` says so.

A model that reads age, sex and view position besides the image (the metadata-fusion architecture) gets them per
file: what the user gave (`Metadata`, the `--age`, `--sex`, `--view` flags) for every file, else the DICOM file's own
PatientAge, PatientSex and ViewPosition. A file left without one of the three stops the run with a one-line
`MissingMetadata`, rather than being predicted from made-up values. Other models ignore metadata.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Iterable, Iterator

import numpy as np

from cxrjax.data import images
from cxrjax.data.findings import FINDINGS, NUM_FINDINGS
from cxrjax.data.nih import SEXES, VIEWS, parse_age
from cxrjax.data.progress import progress

DEFAULT_THRESHOLD = 0.5
_DICOM_TAGS = {"age": "PatientAge", "sex": "PatientSex", "view": "ViewPosition"}
_FLAGS = {"age": "--age YEARS", "sex": "--sex M|F", "view": "--view PA|AP"}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    values: np.ndarray  # (14,) in canonical order
    rule: str  # the rule they were chosen by ("youden", "f1"), or "0.5"
    note: str | None  # what fell back to 0.5, if anything


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: str
    probabilities: np.ndarray  # (14,) float32, canonical order
    positive: tuple[str, ...]  # findings whose probability is at or above their threshold
    source_size: tuple[int, int]  # the file's own (width, height)


@dataclasses.dataclass(frozen=True)
class FileError:
    path: str
    message: str  # one line naming the file


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Age, sex and view position given for every file (None: not given; a DICOM file may carry its own)."""

    age: float | None = None  # years
    sex: str | None = None  # one of nih.SEXES ("M", "F")
    view: str | None = None  # one of nih.VIEWS ("PA", "AP")

    def __post_init__(self):
        if self.age is not None and not (np.isfinite(self.age) and self.age >= 0):
            raise ValueError(f"age {self.age} is not a number of years")
        if self.sex is not None and self.sex not in SEXES:
            raise ValueError(f"sex {self.sex!r}: choose one of {', '.join(SEXES)}")
        if self.view is not None and self.view not in VIEWS:
            raise ValueError(f"view position {self.view!r}: choose one of {', '.join(VIEWS)}")


class MissingMetadata(ValueError):
    """A model that reads age, sex and view position got a file without them; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A readable file in the model's input frame."""

    path: str
    image: np.ndarray  # (crop, crop, 1) uint8
    source_size: tuple[int, int]
    metadata: tuple[float, int, int] | None = None  # (age in years, sex code, view code), for models that read them


def _dicom_age(text: str) -> float | None:
    """PatientAge (DICOM's age string, e.g. 058Y) in years; None where it is absent or unreadable."""
    try:
        return parse_age(text)
    except ValueError:
        return None


def dicom_metadata(path: str) -> Metadata:
    """PatientAge, PatientSex and ViewPosition of a DICOM file, each None where absent or not a value the model
    knows (a sex other than M/F, a view other than PA/AP); all None for a file that is not DICOM."""
    if not images._is_dicom(path):
        return Metadata()
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 — the pixels were read; a header pydicom rejects just carries no metadata.
        return Metadata()
    values = {name: str(ds.get(tag) or "").strip().upper() for name, tag in _DICOM_TAGS.items()}
    return Metadata(age=_dicom_age(values["age"]), sex=values["sex"] if values["sex"] in SEXES else None,
                    view=values["view"] if values["view"] in VIEWS else None)


def resolve_metadata(path: str, given: Metadata, model_name: str = "model") -> tuple[float, int, int]:
    """(age, sex code, view code) for one file: `given` where set, else the file's DICOM tags; else
    MissingMetadata naming the file, what is missing and how to give it."""
    own = dicom_metadata(path) if None in (given.age, given.sex, given.view) else Metadata()
    return choose_metadata(path, given, own, model_name)


def choose_metadata(name: str, given: Metadata, own: Metadata, model_name: str = "model") -> tuple[float, int, int]:
    """(age, sex code, view code) of the image `name`: `given` where set, else its `own` (a DICOM file's tags);
    else MissingMetadata naming the image, what is missing and how to give it."""
    chosen = {name: getattr(given, name) if getattr(given, name) is not None else getattr(own, name)
              for name in _DICOM_TAGS}
    missing = [name for name, value in chosen.items() if value is None]
    if missing:
        raise MissingMetadata(
            f"{name}: the {model_name} reads age, sex and view position besides the image, and this file gives no "
            f"{', '.join(missing)}: pass {' '.join(_FLAGS[name] for name in missing)} (DICOM files may carry "
            f"{', '.join(_DICOM_TAGS[name] for name in missing)})")
    return float(chosen["age"]), SEXES.index(chosen["sex"]), VIEWS.index(chosen["view"])


def decision_thresholds(inference, rule: str | None = None) -> Thresholds:
    """Per-finding thresholds saved with the checkpoint under `rule` (default: the run's `default_rule`), 0.5 (with
    a note) where there are none."""
    rule = rule or inference.default_rule
    chosen = ((inference.extra or {}).get("thresholds") or {}).get(rule) or {}
    if not chosen:
        return Thresholds(np.full(NUM_FINDINGS, DEFAULT_THRESHOLD), str(DEFAULT_THRESHOLD),
                          f"checkpoint step {inference.step} has no {rule} thresholds chosen on validation; "
                          f"{DEFAULT_THRESHOLD} is used for every finding")
    missing = [f for f in FINDINGS if chosen.get(f) is None]
    values = np.array([DEFAULT_THRESHOLD if chosen.get(f) is None else float(chosen[f]) for f in FINDINGS])
    note = (f"no {rule} threshold for {', '.join(missing)}; {DEFAULT_THRESHOLD} is used for "
            f"{'it' if len(missing) == 1 else 'them'}") if missing else None
    return Thresholds(values, rule, note)


def load_files(paths: Iterable[str], size: int, crop: int, errors: list[FileError], *,
               metadata: Metadata | None = None, model_name: str = "model") -> Iterator[Loaded]:
    """Readable files in order, as model inputs; each unreadable one is appended to `errors` instead.

    With `metadata` (for a model that reads it), each file also gets its `resolve_metadata`, and a file without
    raises `MissingMetadata`.
    """
    for path in paths:
        path = os.fspath(path)
        try:
            image, source_size = images.load_input(path, size, crop)
        except images.UnreadableImage as error:
            errors.append(FileError(path, str(error)))
            continue
        own = None if metadata is None else resolve_metadata(path, metadata, model_name)
        yield Loaded(path, image, source_size, own)


def describe_model(inference) -> str:
    """How error messages name the model, e.g. "fusion model (resnet18)"."""
    model = inference.config.model
    return f"{model.architecture} model ({model.name})"


def inference_files(inference, paths: Iterable[str], errors: list[FileError],
                    metadata: Metadata | None = None) -> Iterator[Loaded]:
    """`load_files` in the checkpoint's input frame, with metadata resolved when its model reads it."""
    data = inference.config.data
    needed = (metadata or Metadata()) if inference.architecture.reads_metadata else None
    return load_files(paths, data.size, data.crop, errors, metadata=needed,
                      model_name=describe_model(inference))


def metadata_batch(files: list[Loaded], batch_size: int) -> dict[str, np.ndarray] | None:
    """{"age" float32, "sex" int32, "view" int32} of shape (batch_size,), zero-padded like the images; None when
    the files carry no metadata (a model that does not read it)."""
    if not files or files[0].metadata is None:
        return None
    batch = {"age": np.zeros(batch_size, np.float32), "sex": np.zeros(batch_size, np.int32),
             "view": np.zeros(batch_size, np.int32)}
    for i, item in enumerate(files):
        batch["age"][i], batch["sex"][i], batch["view"][i] = item.metadata
    return batch


def padded_batches(loaded: Iterable[Loaded], batch_size: int) -> Iterator[tuple[list[Loaded], np.ndarray]]:
    """(files, images (batch_size, crop, crop, 1) uint8): a fixed shape, the last batch padded with zeros."""
    for chunk in itertools.batched(loaded, batch_size):
        batch = np.zeros((batch_size, *chunk[0].image.shape), np.uint8)
        batch[:len(chunk)] = np.stack([item.image for item in chunk])
        yield list(chunk), batch


def predict_files(inference, paths: Iterable[str], *, batch_size: int = 16, thresholds: Thresholds | None = None,
                  metadata: Metadata | None = None) -> tuple[list[Prediction], list[FileError]]:
    """Predictions for the readable files and one error per unreadable file, each in the order given.

    `metadata`: age, sex and view position for every file, for a model that reads them (DICOM tags fill what is not
    given); raises `MissingMetadata` for a file left without.
    """
    errors: list[FileError] = []
    paths = list(paths)
    results = predict_loaded(inference, inference_files(inference, paths, errors, metadata), batch_size=batch_size,
                             thresholds=thresholds, total=len(paths))
    return results, errors


def predict_loaded(inference, loaded: Iterable[Loaded], *, batch_size: int = 16,
                   thresholds: Thresholds | None = None, total: int | None = None) -> list[Prediction]:
    """Predictions for images already in the model's input frame (files or in-memory images), in order.

    A bar counts the predicted images (of `total`, when known); it starts once the first batch has been read, so a
    file that stops the run at once (`MissingMetadata`) leaves its one error line alone on stderr."""
    thresholds = thresholds or decision_thresholds(inference)
    step = inference.predict_step()
    results, bar = [], None
    for files, batch in padded_batches(loaded, batch_size):
        if bar is None:  # not `bar or ...`: a tqdm without a total has no truth value
            bar = progress(total=total, desc="predict", unit="img")
        probabilities = np.asarray(step(inference.variables, batch, metadata_batch(files, batch_size)))[:len(files)]
        for item, row in zip(files, probabilities):
            positive = tuple(f for f, p, t in zip(FINDINGS, row, thresholds.values) if p >= t)
            results.append(Prediction(item.path, row, positive, item.source_size))
        bar.update(len(files))
    if bar is not None:
        bar.close()
    return results


def format_table(results: list[Prediction], errors: list[FileError], thresholds: Thresholds) -> str:
    """Plain text: per file, each finding's probability and threshold, `*` marking the positives; then errors."""
    width = max(map(len, FINDINGS))
    lines = [f"note: {thresholds.note}"] if thresholds.note else []
    for result in results:
        lines += ["", f"{result.path}: {', '.join(result.positive) or 'no finding above threshold'}",
                  f"  {'finding':<{width}}  probability  threshold ({thresholds.rule})"]
        lines += [f"  {finding:<{width}}  {p:11.4f}{' *' if finding in result.positive else '  '}  {t:9.4f}"
                  for finding, p, t in zip(FINDINGS, result.probabilities, thresholds.values)]
    if errors:
        lines += [""] + [f"error: {error.message}" for error in errors]
    return "\n".join(lines).lstrip("\n")


def to_json(results: list[Prediction], errors: list[FileError], thresholds: Thresholds) -> dict:
    """A JSON-able dict: thresholds used, one entry per predicted file, one per unreadable file."""
    return {
        "thresholds": {"rule": thresholds.rule, "note": thresholds.note,
                       "values": dict(zip(FINDINGS, map(float, thresholds.values)))},
        "predictions": [{"file": r.path, "probabilities": dict(zip(FINDINGS, map(float, r.probabilities))),
                         "positive": list(r.positive)} for r in results],
        "errors": [{"file": e.path, "error": e.message} for e in errors],
    }


def format_json(results: list[Prediction], errors: list[FileError], thresholds: Thresholds) -> str:
    return json.dumps(to_json(results, errors, thresholds), indent=1)
