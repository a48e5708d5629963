"""Grading against radiologists: the adjudicated labels of Majkowska et al. (Radiology 2020) for ChestX-ray14.

Source: A. Majkowska, S. Mittal, D. F. Steiner et al., "Chest Radiograph Interpretation with Deep Learning Models:
Assessment with Radiologist-adjudicated Reference Standards and Population-adjusted Evaluation", Radiology
294(2):421–431, 2020; labels released by Google (`google2019_nih-chest-xray-labels.csv`). 4,376 ChestX-ray14 images
(2,414 `val`, 1,962 `test`; every test image is in the official `test_list.txt`), four findings each adjudicated by
three radiologists, YES/NO.

Why: NIH's labels were text-mined from reports, and radiologists reading the images disagree with many of them. The
grade that matters is against the adjudicated reference, and the telling comparison is with the AUC against NIH's
own labels *on the same images* (`grade`): the gap between the two is what the text-mined labels cost.

The four expert findings are not ours, so each is scored from our 14 by a pinned mapping (`MAPPING`):
- Pneumothorax ← our Pneumothorax.
- Nodule or mass ← the larger of our Nodule and Mass probabilities (the expert finding is their union).
- Airspace opacity ← the largest of our Consolidation, Pneumonia, Infiltration and Edema probabilities. A reading:
  an airspace opacity is the lung's air spaces filled (by fluid, pus, blood or cells), which is what these four
  findings are on a radiograph; Atelectasis (volume loss), Mass and Nodule (focal lesions), Fibrosis and
  Pleural_Thickening are other patterns, so they are left out.
- Fracture: not among the 14 findings; reported as not scored.
NIH's label for an expert finding, on the same images, is positive when any of the mapped NIH findings is.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrjax import metrics as metrics_lib
from cxrjax.data import nih
from cxrjax.data.findings import FINDING_INDEX

CITATION = ("Majkowska et al., Chest Radiograph Interpretation with Deep Learning Models: Assessment with "
            "Radiologist-adjudicated Reference Standards and Population-adjusted Evaluation, Radiology 2020")
SPLITS = ("test", "val", "all")  # `Set Id` values, or both


@dataclasses.dataclass(frozen=True)
class ExpertFinding:
    ours: tuple[str, ...]  # our findings whose largest probability scores it; (): not scored
    reading: str  # why this mapping


MAPPING = {
    "Fracture": ExpertFinding((), "not among the 14 ChestX-ray14 findings"),
    "Pneumothorax": ExpertFinding(("Pneumothorax",), "the same finding"),
    "Airspace opacity": ExpertFinding(("Consolidation", "Pneumonia", "Infiltration", "Edema"),
                                      "a reading: the largest of the air-space-filling findings"),
    "Nodule or mass": ExpertFinding(("Nodule", "Mass"), "the larger of the two: the expert finding is their union"),
}
EXPERT_FINDINGS = tuple(MAPPING)
_ANSWERS = {"YES": True, "NO": False}


@dataclasses.dataclass(frozen=True)
class ExpertLabels:
    path: str
    split: str  # test, val or all
    names: tuple[str, ...]  # image file names
    labels: np.ndarray  # (N, 4) bool, EXPERT_FINDINGS order
    patient_ids: np.ndarray  # (N,)


def read_expert_labels(path: str, split: str = "test") -> ExpertLabels:
    """The released CSV (or .csv.gz) restricted to `split` (its `Set Id`: test, val, or all)."""
    if split not in SPLITS:
        raise ValueError(f"unknown expert split {split!r}; choose one of {', '.join(SPLITS)}")
    with nih.open_text(path) as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        needed = ("Image Index", "Patient ID", "Set Id", *EXPERT_FINDINGS)
        missing = [name for name in needed if name not in header]
        if missing:
            raise ValueError(f"{path}: not the adjudicated labels file: no column {', '.join(map(repr, missing))}")
        column = {name: header.index(name) for name in needed}
        names, labels, patients = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise ValueError(f"{path} line {line}: {len(row)} fields where the header has {len(header)}")
            if split != "all" and row[column["Set Id"]].strip() != split:
                continue
            answers = [row[column[finding]].strip().upper() for finding in EXPERT_FINDINGS]
            if any(answer not in _ANSWERS for answer in answers):
                raise ValueError(f"{path} line {line}: expected YES or NO for {', '.join(EXPERT_FINDINGS)}, "
                                 f"found {', '.join(answers)}")
            patient = row[column["Patient ID"]].strip()
            if not patient.isdigit():
                raise ValueError(f"{path} line {line}: Patient ID {patient!r} is not a number")
            names.append(row[column["Image Index"]].strip())
            labels.append([_ANSWERS[answer] for answer in answers])
            patients.append(int(patient))
    repeated = nih.repeated_names(names)
    if repeated:
        raise ValueError(f"{path}: images listed more than once: {', '.join(repeated[:3])}")
    if not names:
        raise ValueError(f"{path}: no image with Set Id {split!r}")
    return ExpertLabels(path, split, tuple(names), np.array(labels, bool).reshape(-1, len(EXPERT_FINDINGS)),
                        np.array(patients))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if labels.min() != labels.max() else None


def grade(expert: ExpertLabels, names, probabilities: np.ndarray, nih_labels: np.ndarray, patient_ids, *,
          bootstrap: int = 1000, seed: int = 0) -> dict:
    """The AUC of each expert finding against the radiologists' labels and against NIH's on the same images.

    `names`, `probabilities` (N, 14), `nih_labels` (N, 14) and `patient_ids` describe the predicted images; the ones
    the expert file covers are graded. Confidence intervals: patient-level percentile bootstrap (`bootstrap`
    resamples, one set of draws for both references, so their intervals are of the same resampled sets)."""
    row_of = {name: i for i, name in enumerate(names)}
    shared = [(row_of[name], k) for k, name in enumerate(expert.names) if name in row_of]
    if not shared:
        raise ValueError(f"no predicted image has labels in {expert.path} (Set Id {expert.split}): grade the split "
                         "the labels are of (--expert-split test for the official test split)")
    rows, expert_rows = (np.array(index) for index in zip(*shared))
    probabilities, nih_labels = np.asarray(probabilities, np.float64)[rows], np.asarray(nih_labels)[rows]
    patients = np.asarray(patient_ids)[rows]
    if bootstrap:
        counts, image_patient = metrics_lib.patient_resample_counts(patients, bootstrap, np.random.default_rng(seed))
        weights = counts[image_patient].astype(np.float64)
    findings = {}
    for k, finding in enumerate(EXPERT_FINDINGS):
        mapping = MAPPING[finding]
        if not mapping.ours:
            findings[finding] = {"scored": False, "reason": mapping.reading}
            continue
        columns = [FINDING_INDEX[name] for name in mapping.ours]
        scores = probabilities[:, columns].max(axis=1)
        references = {"expert": expert.labels[expert_rows, k], "nih": nih_labels[:, columns].any(axis=1)}
        entry = {"scored": True, "from": list(mapping.ours), "reading": mapping.reading,
                 "agreement": float(np.mean(references["expert"] == references["nih"]))}
        for name, reference in references.items():
            entry[f"{name}_positives"] = int(reference.sum())
            entry[f"auc_{name}"] = _auc(reference, scores)
            entry[f"auc_{name}_ci"] = (metrics_lib.percentile_interval(
                metrics_lib.weighted_rank_auc(reference, scores, weights)) if bootstrap and entry[f"auc_{name}"]
                is not None else None)
        findings[finding] = entry
    return {"labels": expert.path, "split": expert.split, "num_images": len(rows),
            "num_patients": int(len(np.unique(patients))), "bootstrap": bootstrap, "seed": seed,
            "findings": findings, "citation": CITATION}


def format_grade(grade_result: dict) -> str:
    """A plain-text table of `grade` for the terminal."""
    lines = [f"against radiologists ({grade_result['num_images']} images with adjudicated labels, Set Id "
             f"{grade_result['split']}; AUC [95% CI]):",
             f"  {'expert finding':<18} {'from':<42} {'vs radiologists':>24} {'vs NIH, same images':>24}"]
    for finding, entry in grade_result["findings"].items():
        if not entry["scored"]:
            lines.append(f"  {finding:<18} not scored: {entry['reason']}")
            continue
        cells = [metrics_lib.format_with_ci(entry[f"auc_{name}"], entry[f"auc_{name}_ci"], "n/a (one class)")
                 for name in ("expert", "nih")]
        source = entry["from"][0] if len(entry["from"]) == 1 else f"max({', '.join(entry['from'])})"
        lines.append(f"  {finding:<18} {source:<42} {cells[0]:>24} {cells[1]:>24}")
    return "\n".join(lines)
