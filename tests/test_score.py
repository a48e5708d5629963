"""`cxrjax score`: exact AUCs on the reference predictions; one clear error line for each kind of bad input."""

import csv
import json

import numpy as np
import pytest

from conftest import shared_data
from cxrjax import cli, metrics
from cxrjax.data.findings import FINDINGS


def test_reproduces_the_published_reference_aucs(tmp_path):
    predictions = shared_data("reference", "densenet121_test_predictions.csv")
    labels = shared_data("nih", "Data_Entry_2017_v2020.csv.gz")
    output = tmp_path / "metrics.json"
    assert cli.main(["score", "--predictions", predictions, "--labels", labels, "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    with open(shared_data("reference", "densenet121_test_aucs.csv")) as f:
        published = {row["label"]: float(row["auc"]) for row in csv.DictReader(f)}
    assert set(published) == set(FINDINGS) and result["num_images"] == 22_433
    for finding, auc in published.items():
        assert abs(result["auc"][finding] - auc) < 1e-9, finding


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def labelled(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"{i:08d}_000.png" for i in range(1, 41)]
    labels = rng.integers(0, 2, (40, 14))
    labels[:, 13] = 0  # Hernia: no positive image
    _write(tmp_path / "Data_Entry.csv",
           ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
            "View Position"],
           [[n, "|".join(f for f, y in zip(FINDINGS, row) if y) or "No Finding", 0, i, 50, "M", "PA"]
            for i, (n, row) in enumerate(zip(names, labels))])
    probabilities = np.clip(labels * 0.6 + rng.random((40, 14)) * 0.4, 0, 1)
    return tmp_path, names, labels, probabilities


def test_scores_prob_columns_and_image_lists(labelled):
    tmp_path, names, labels, probabilities = labelled
    _write(tmp_path / "p.csv", ["Image Index", *(f"prob_{f}" for f in FINDINGS)],
           [[n, *p] for n, p in zip(names, probabilities)])
    (tmp_path / "list.txt").write_text("\n".join(names[:30]) + "\n")
    from cxrjax.evaluation.score import score

    result = score(str(tmp_path / "p.csv"), str(tmp_path / "Data_Entry.csv"), str(tmp_path / "list.txt"))
    expected = metrics.per_finding_auc(labels[:30], probabilities[:30])
    assert result["num_images"] == 30 and result["auc"] == expected
    assert result["auc"]["Hernia"] is None  # one class only: null, not a crash
    assert result["mean_auc"] == pytest.approx(np.mean([v for v in expected.values() if v is not None]))


@pytest.mark.parametrize("problem,message", [
    ("unknown", "are not in"),
    ("column", "lack columns for Hernia"),
    ("range", "outside [0, 1]"),
    ("nan", "outside [0, 1]"),
    ("duplicate", "more than once"),
    ("list", "have no prediction"),
])
def test_bad_input_is_one_clear_error(labelled, capsys, problem, message):
    tmp_path, names, _, probabilities = labelled
    header, rows = ["Image Index", *FINDINGS], [[n, *p] for n, p in zip(names, probabilities)]
    if problem == "unknown":
        rows[3][0] = "99999999_000.png"
    elif problem == "column":
        header, rows = header[:-1], [r[:-1] for r in rows]
    elif problem == "range":
        rows[5][2] = 1.5
    elif problem == "nan":
        rows[5][2] = "nan"
    elif problem == "duplicate":
        rows[6][0] = rows[7][0]
    _write(tmp_path / "p.csv", header, rows)
    args = ["score", "--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "Data_Entry.csv")]
    if problem == "list":
        (tmp_path / "list.txt").write_text("00000001_000.png\n77777777_000.png\n")
        args += ["--images", str(tmp_path / "list.txt")]
    assert cli.main(args) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("cxrjax score: error:") and message in error
