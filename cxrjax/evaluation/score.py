"""`cxrjax score`: metrics.json for any predictions file against a Data_Entry CSV.

Predictions come from cxrjax (`Image Index,<finding>...`) or from other tools (`prob_<finding>` columns, as the
PyTorch CheXNet reproductions write them). Every problem that would make the numbers wrong is an error naming what
is wrong: unknown or duplicated images, missing or ambiguous columns (a finding given both as `<Finding>` and as
`prob_<Finding>`, a column name twice: which one is meant cannot be known), probabilities outside [0, 1], an
`--images` list naming an image twice, labels whose rows of one image disagree.
"""

from __future__ import annotations

import csv

import numpy as np

from cxrjax import metrics as metrics_lib
from cxrjax.data import nih
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import expert_labels


class ScoreError(ValueError):
    """The predictions cannot be scored as given."""


def _examples(names, limit: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _finding_columns(path: str, header: list[str]) -> list[int]:
    """Column index of each finding, accepting `<Finding>` or `prob_<Finding>`, not both and not a name twice."""
    repeated = nih.repeated_names(name for name in header if name)
    if repeated:
        raise ScoreError(f"{path}: ambiguous header: columns named more than once: {_examples(repeated)}")
    positions = {name: i for i, name in enumerate(header)}
    both = [f"{finding} and prob_{finding}" for finding in FINDINGS if {finding, f"prob_{finding}"} <= set(positions)]
    if both:
        raise ScoreError(f"{path}: ambiguous columns: {_examples(both)}; keep one column per finding")
    columns, missing = [], []
    for finding in FINDINGS:
        for name in (finding, f"prob_{finding}"):
            if name in positions:
                columns.append(positions[name])
                break
        else:
            missing.append(finding)
    if missing:
        raise ScoreError(f"{path}: predictions lack columns for {_examples(missing, 14)} (expected '<Finding>' or "
                         f"'prob_<Finding>')")
    return columns


def read_predictions(path: str) -> tuple[list[str], np.ndarray]:
    """Image names and an (N, 14) probability array in canonical finding order."""
    with nih.open_text(path) as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        if "Image Index" not in header:
            raise ScoreError(f"{path}: no 'Image Index' column in the header")
        columns = _finding_columns(path, header)
        name_column = header.index("Image Index")
        names, rows = [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append([float(row[c]) for c in columns])
            except (ValueError, IndexError):
                raise ScoreError(f"{path} line {line}: unreadable probabilities") from None
            names.append(row[name_column].strip())
    probabilities = np.array(rows, np.float64).reshape(-1, len(FINDINGS))
    duplicates = nih.repeated_names(names)
    if duplicates:
        raise ScoreError(f"{path}: images listed more than once: {_examples(duplicates)}")
    outside = ~((probabilities >= 0) & (probabilities <= 1))  # also catches NaN
    if outside.any():
        rows_out = np.flatnonzero(outside.any(axis=1))
        raise ScoreError(f"{path}: {int(outside.sum())} probabilities outside [0, 1] (or NaN), in "
                         f"{_examples(names[r] for r in rows_out)}")
    return names, probabilities


def score(predictions_path: str, labels_path: str, images_path: str | None = None, *, bootstrap: int = 1000,
          seed: int = 0, expert: expert_labels.ExpertLabels | None = None) -> dict:
    """metrics.json content for a predictions file, optionally restricted to the images of a list file; confidence
    intervals from `bootstrap` patient-level resamples (0: none). `expert`: radiologists' labels; the images they
    cover are also graded against them, beside NIH's labels of the same images (`expert_labels.grade`, under
    "expert")."""
    names, probabilities = read_predictions(predictions_path)
    entries, rejected = nih.read_data_entry(labels_path)
    predicted = set(names)
    conflicting = [name for name in nih.conflicting_images(rejected) if name in predicted]
    if conflicting:  # only those scored: a conflict elsewhere in the CSV changes no number of this score
        raise ScoreError(f"{labels_path}: {len(conflicting)} predicted images have rows that disagree (which labels "
                         f"are meant cannot be known): {_examples(conflicting)}")
    labels_of = {entry.image_index: entry.labels for entry in entries}
    patient_of = {entry.image_index: entry.patient_id for entry in entries}
    unknown = [name for name in names if name not in labels_of]
    if unknown:
        raise ScoreError(f"{len(unknown)} images in {predictions_path} are not in {labels_path}: {_examples(unknown)}")
    if images_path is not None:
        wanted = nih.read_image_list(images_path)
        if not wanted:
            raise ScoreError(f"{images_path}: no image names in the list")
        repeated = nih.repeated_names(wanted)
        if repeated:
            raise ScoreError(f"{images_path}: images listed more than once (they would count twice): "
                             f"{_examples(repeated)}")
        row_of = {name: i for i, name in enumerate(names)}
        absent = [name for name in wanted if name not in row_of]
        if absent:
            raise ScoreError(f"{len(absent)} images of {images_path} have no prediction: {_examples(absent)}")
        names, probabilities = wanted, probabilities[[row_of[name] for name in wanted]]
    if not names:
        raise ScoreError(f"{predictions_path}: no predictions to score")
    labels = np.stack([labels_of[name] for name in names])
    patients = [patient_of[name] for name in names]
    result = metrics_lib.full_metrics(labels, probabilities, patients, bootstrap=bootstrap, seed=seed)
    if expert is not None:
        result["expert"] = expert_labels.grade(expert, names, probabilities, labels, patients, bootstrap=bootstrap,
                                               seed=seed)
    return result
