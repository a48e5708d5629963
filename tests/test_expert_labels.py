"""Grading against radiologists (Majkowska et al. 2020's adjudicated labels): the mapping, the AUCs and their
patient-level intervals recomputed here independently, the CLI, and the released file when ../shared/data has it."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import shared_data
from cxrjax import cli
from cxrjax.data import nih
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import expert_labels

# The mapping the issue pins, restated here rather than read from the module under test.
MAPPED = {"Pneumothorax": ["Pneumothorax"], "Nodule or mass": ["Nodule", "Mass"],
          "Airspace opacity": ["Consolidation", "Pneumonia", "Infiltration", "Edema"]}
NIH_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
              "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


def _release(tmp_path, num_patients=60, seed=0):
    """Labels CSV, predictions CSV and expert CSV of a hand-built release: 2-3 images per patient, probabilities
    that carry some signal, expert labels that agree with NIH's most of the time. 20 predicted images have no
    expert label, and 10 expert-labelled images have no prediction."""
    rng = np.random.default_rng(seed)
    rows, predictions, expert = [], [], []
    for patient in range(1, num_patients + 1):
        for follow_up in range(rng.integers(2, 4)):
            name = f"{patient:08d}_{follow_up:03d}.png"
            labels = rng.random(len(FINDINGS)) < 0.25
            rows.append([name, "|".join(f for f, y in zip(FINDINGS, labels) if y) or "No Finding", follow_up,
                         patient, 50, "M", "PA", 1024, 1024, 0.14, 0.14])
            predictions.append([name, *np.clip(0.3 * labels + 0.7 * rng.random(len(FINDINGS)), 0, 1)])
            nih_of = {finding: any(labels[FINDINGS.index(f)] for f in ours) for finding, ours in MAPPED.items()}
            answers = {finding: value if rng.random() < 0.8 else not value for finding, value in nih_of.items()}
            answers["Fracture"] = rng.random() < 0.1
            expert.append([name, patient, *("YES" if answers[f] else "NO" for f in expert_labels.EXPERT_FINDINGS),
                           "test"])
    labels_path, predictions_path, expert_path = (tmp_path / n for n in ("labels.csv", "p.csv", "expert.csv.gz"))
    with open(labels_path, "w", newline="") as f:
        csv.writer(f).writerows([NIH_HEADER, *rows])
    with open(predictions_path, "w", newline="") as f:
        csv.writer(f).writerows([["Image Index", *FINDINGS], *predictions[20:]])
    with gzip.open(expert_path, "wt", newline="") as f:
        csv.writer(f).writerows([["Image Index", "Patient ID", *expert_labels.EXPERT_FINDINGS, "Set Id"],
                                 *expert[:-10]])
    return str(labels_path), str(predictions_path), str(expert_path)


def _expected(labels_path, predictions_path, expert_path, resamples, seed=0):
    """Each expert finding's AUCs and percentile intervals, from the files, with sklearn on explicitly resampled
    image lists (every image of each drawn patient, as often as drawn)."""
    entries = {e.image_index: e for e in nih.read_data_entry(labels_path)[0]}
    with open(predictions_path) as f:
        predicted = {row["Image Index"]: row for row in csv.DictReader(f)}
    with gzip.open(expert_path, "rt") as f:
        graded = [row for row in csv.DictReader(f) if row["Image Index"] in predicted]
    names = [row["Image Index"] for row in graded]
    patients = np.array([entries[name].patient_id for name in names])
    unique = np.unique(patients)
    draws = np.random.default_rng(seed).integers(0, len(unique), size=(resamples, len(unique)))
    images_of = [np.flatnonzero(patients == p) for p in unique]
    resampled = [np.concatenate([images_of[i] for i in draw]) for draw in draws]
    expected = {}
    for finding, ours in MAPPED.items():
        scores = np.array([max(float(predicted[n][f]) for f in ours) for n in names])
        references = {"expert": np.array([row[finding] == "YES" for row in graded]),
                      "nih": np.array([any(entries[n].labels[FINDINGS.index(f)] for f in ours) for n in names])}
        for reference_name, y in references.items():
            samples = [roc_auc_score(y[i], scores[i]) for i in resampled if y[i].min() != y[i].max()]
            expected[finding, reference_name] = (roc_auc_score(y, scores), *np.percentile(samples, [2.5, 97.5]))
    return len(names), expected


def test_score_grades_against_radiologists_and_nih_on_the_same_images(tmp_path, capsys):
    labels_path, predictions_path, expert_path = _release(tmp_path)
    output = str(tmp_path / "metrics.json")
    assert cli.main(["score", "--predictions", predictions_path, "--labels", labels_path, "--expert-labels",
                     expert_path, "--bootstrap", "200", "--output", output]) == 0
    printed = capsys.readouterr().out
    grade = json.loads(open(output).read())["expert"]
    num_images, expected = _expected(labels_path, predictions_path, expert_path, 200)
    assert grade["num_images"] == num_images
    assert grade["findings"]["Fracture"] == {"scored": False, "reason": "not among the 14 ChestX-ray14 findings"}
    for finding, ours in MAPPED.items():
        entry = grade["findings"][finding]
        assert entry["from"] == ours
        for reference in ("expert", "nih"):
            auc, low, high = expected[finding, reference]
            assert entry[f"auc_{reference}"] == pytest.approx(auc, abs=1e-12)
            assert entry[f"auc_{reference}_ci"]["low"] == pytest.approx(low, abs=1e-12)
            assert entry[f"auc_{reference}_ci"]["high"] == pytest.approx(high, abs=1e-12)
    assert "against radiologists" in printed and "not scored" in printed


def test_no_shared_image_or_a_bad_answer_is_one_line(tmp_path, capsys):
    labels_path, predictions_path, expert_path = _release(tmp_path)
    assert cli.main(["score", "--predictions", predictions_path, "--labels", labels_path, "--expert-labels",
                     expert_path, "--expert-split", "val"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no image with Set Id 'val'" in error
    with gzip.open(expert_path, "rt") as f:
        text = f.read().replace(",NO,", ",maybe,", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    assert cli.main(["score", "--predictions", predictions_path, "--labels", labels_path, "--expert-labels",
                     str(bad)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "line" in error and "YES or NO" in error


def test_the_released_labels():
    path = shared_data("nih", "google2019_nih-chest-xray-labels.csv.gz")
    test, val, every = (expert_labels.read_expert_labels(path, split) for split in ("test", "val", "all"))
    assert (len(test.names), len(val.names), len(every.names)) == (1962, 2414, 4376)
    official_test = set(nih.read_image_list(shared_data("nih", "test_list.txt")))
    assert set(test.names) <= official_test and not set(val.names) & official_test
    entries = {e.image_index: e for e in nih.read_data_entry(shared_data("nih", "Data_Entry_2017_v2020.csv.gz"))[0]}
    assert all(entries[name].patient_id == patient for name, patient in zip(every.names, every.patient_ids))
    # Pneumothorax, the one finding both label sets name: of the radiologists' 195 positives among the test images,
    # NIH's v2020 labels call 97 positive — why grading against them matters.
    k = expert_labels.EXPERT_FINDINGS.index("Pneumothorax")
    nih_positive = np.array([entries[n].labels[FINDINGS.index("Pneumothorax")] for n in test.names], bool)
    expert_positive = test.labels[:, k]
    assert (expert_positive.sum(), (nih_positive & expert_positive).sum()) == (195, 97)
