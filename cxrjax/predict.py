"""`cxrjax predict`: probabilities of the 14 findings for image files, and which findings pass their thresholds.

Files are read with `cxrjax.images` into exactly the frame evaluation uses, then go through one jitted forward in
batches of a fixed shape (the last one zero-padded, its padding dropped), so the step compiles once whatever the
number of files. A file that cannot be read becomes a `FileError`; the others still get their predictions.

Decision thresholds come from the checkpoint's `extra["thresholds"]` (`{"youden": {finding: t}, "f1": {...}}`,
chosen on validation); without them every finding uses 0.5, and `Thresholds.note` says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Iterable, Iterator

import numpy as np

from cxrjax import images
from cxrjax.findings import FINDINGS, NUM_FINDINGS

DEFAULT_THRESHOLD = 0.5


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
class Loaded:
    """A readable file in the model's input frame."""

    path: str
    image: np.ndarray  # (crop, crop, 1) uint8
    source_size: tuple[int, int]


def decision_thresholds(inference, rule: str = "youden") -> Thresholds:
    """Per-finding thresholds saved with the checkpoint under `rule`, 0.5 (with a note) where there are none."""
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


def load_files(paths: Iterable[str], size: int, crop: int, errors: list[FileError]) -> Iterator[Loaded]:
    """Readable files in order, as model inputs; each unreadable one is appended to `errors` instead."""
    for path in paths:
        path = os.fspath(path)
        try:
            image, source_size = images.load_input(path, size, crop)
        except images.UnreadableImage as error:
            errors.append(FileError(path, str(error)))
            continue
        yield Loaded(path, image, source_size)


def padded_batches(loaded: Iterable[Loaded], batch_size: int) -> Iterator[tuple[list[Loaded], np.ndarray]]:
    """(files, images (batch_size, crop, crop, 1) uint8): a fixed shape, the last batch padded with zeros."""
    for chunk in itertools.batched(loaded, batch_size):
        batch = np.zeros((batch_size, *chunk[0].image.shape), np.uint8)
        batch[:len(chunk)] = np.stack([item.image for item in chunk])
        yield list(chunk), batch


def predict_files(inference, paths: Iterable[str], *, batch_size: int = 16,
                  thresholds: Thresholds | None = None) -> tuple[list[Prediction], list[FileError]]:
    """Predictions for the readable files and one error per unreadable file, each in the order given."""
    thresholds = thresholds or decision_thresholds(inference)
    data = inference.config.data
    step = inference.predict_step()
    results, errors = [], []
    for files, batch in padded_batches(load_files(paths, data.size, data.crop, errors), batch_size):
        probabilities = np.asarray(step(inference.variables, batch))[:len(files)]
        for item, row in zip(files, probabilities):
            positive = tuple(f for f, p, t in zip(FINDINGS, row, thresholds.values) if p >= t)
            results.append(Prediction(item.path, row, positive, item.source_size))
    return results, errors


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
