"""Metric definitions on hand-made cases, the vectorised bootstrap against scikit-learn, and the real reference run.

Expected values are worked out by hand (the fractions in the comments) or computed here by an independent route
(explicit pairs, scikit-learn on explicitly built subsets or resamples, the finding strings of the Data_Entry CSV).
"""

import csv
import json
import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import shared_data
from cxrjax import metrics
from cxrjax.data.findings import FINDINGS
from cxrjax.data.nih import read_data_entry
from cxrjax.evaluation.score import read_predictions
from cxrjax.metrics import published

A, C = FINDINGS.index("Atelectasis"), FINDINGS.index("Cardiomegaly")


def _six_images():
    """Six images, two findings used (Atelectasis, Cardiomegaly); images 4 and 5 are No Finding."""
    labels = np.zeros((6, 14), np.uint8)
    probabilities = np.full((6, 14), 0.5)
    labels[:, A] = [1, 1, 0, 0, 0, 0]
    labels[:, C] = [0, 1, 1, 0, 0, 1]
    probabilities[:, A] = [0.9, 0.6, 0.7, 0.3, 0.1, 0.5]
    probabilities[:, C] = [0.2, 0.8, 0.7, 0.4, 0.6, 0.3]
    return labels, probabilities


def test_definitions_on_six_images(caplog):
    labels, probabilities = _six_images()
    result = metrics.full_metrics(labels, probabilities, bootstrap=0)
    # AUC, Atelectasis: positives .9 .6 vs negatives .7 .3 .1 .5 -> .9 beats 4, .6 beats 3 of 8 pairs.
    assert result["auc"]["Atelectasis"] == pytest.approx(7 / 8)
    # Cardiomegaly: positives .8 .7 .3 vs negatives .2 .4 .6 -> 3 + 3 + 1 of 9 pairs.
    assert result["auc"]["Cardiomegaly"] == pytest.approx(7 / 9)
    assert all(result["auc"][f] is None for f in FINDINGS if f not in ("Atelectasis", "Cardiomegaly"))
    # One warning line for every undefined value, not one per finding and metric.
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("AUC undefined for 12 findings with a single class among these 6 images: Effusion, "
                                  "Infiltration, "), warnings
    assert "; AP for 12: Effusion, " in warnings[0]
    assert result["mean_auc"] == pytest.approx((7 / 8 + 7 / 9) / 2)
    # W-AUC: prevalences 2/6 and 3/6 -> 7/24 + 7/18 = 49/72; normalised by 5/6.
    assert result["w_auc"] == pytest.approx(49 / 72)
    assert result["w_auc_normalized"] == pytest.approx(49 / 72 / (5 / 6))
    # D-AUC: diseased images 1, 2, 3, 6. Atelectasis .9 .6 vs .7 .5 -> 3/4; Cardiomegaly .8 .7 .3 vs .2 -> 1.
    assert result["d_auc"]["Atelectasis"] == pytest.approx(3 / 4)
    assert result["d_auc"]["Cardiomegaly"] == pytest.approx(1.0)
    assert result["mean_d_auc"] == pytest.approx(7 / 8)
    # N-AUC: against No Finding images 4, 5. Atelectasis .9 .6 vs .3 .1 -> 1; Cardiomegaly .8 .7 .3 vs .4 .6 -> 4/6.
    assert result["n_auc"]["Atelectasis"] == pytest.approx(1.0)
    assert result["n_auc"]["Cardiomegaly"] == pytest.approx(2 / 3)
    # AP: Atelectasis ranks + - + -> 1/2 · 1 + 1/2 · 2/3; Cardiomegaly ranks + + - - + -> (1 + 1 + 3/5) / 3.
    assert result["ap"]["Atelectasis"] == pytest.approx(5 / 6)
    assert result["ap"]["Cardiomegaly"] == pytest.approx(13 / 15)
    assert result["ap"]["Hernia"] is None and result["map"] == pytest.approx((5 / 6 + 13 / 15) / 2)
    assert result["positives"]["Cardiomegaly"] == 3 and result["num_no_finding"] == 2
    assert result["bootstrap"] is None
    assert json.loads(json.dumps(result)) == result


def _pairwise_auc(labels, scores, weights):
    """The Mann–Whitney AUC by explicit enumeration of weighted positive-negative pairs."""
    pos, neg = labels == 1, labels == 0
    diff = scores[pos][:, None] - scores[neg][None, :]
    pair_weights = weights[pos][:, None] * weights[neg][None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).ravel() @ pair_weights.ravel() / pair_weights.sum()


def test_rank_auc_equals_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # coarse: many ties
    integer_weights = rng.integers(0, 4, (500, 6))
    real_weights = rng.random((500, 3))
    unit = metrics.weighted_rank_auc(labels, scores, np.ones((500, 1)))
    assert unit[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    by_rank = metrics.weighted_rank_auc(labels, scores, integer_weights)
    for b in range(integer_weights.shape[1]):
        copies = np.repeat(np.arange(500), integer_weights[:, b])
        assert by_rank[b] == pytest.approx(roc_auc_score(labels[copies], scores[copies]), abs=1e-12)
    by_rank = metrics.weighted_rank_auc(labels, scores, real_weights)
    for b in range(real_weights.shape[1]):
        assert by_rank[b] == pytest.approx(_pairwise_auc(labels, scores, real_weights[:, b]), abs=1e-12)
        assert by_rank[b] == pytest.approx(roc_auc_score(labels, scores, sample_weight=real_weights[:, b]), abs=1e-9)


def test_rank_auc_is_nan_for_one_class():
    labels = np.array([1, 1, 0, 0])
    weights = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])  # resample 0: positives only; 1: negatives only
    assert np.isnan(metrics.weighted_rank_auc(labels, np.arange(4.0), weights)).all()


def _clustered(num_patients=40, seed=0):
    """Images grouped by patient (1-5 each) with labels and scores that carry a patient effect."""
    rng = np.random.default_rng(seed)
    patient_ids = np.repeat(np.arange(num_patients) * 7 + 1000, rng.integers(1, 6, num_patients))
    n = len(patient_ids)
    labels = (rng.random((n, 14)) < 0.3).astype(np.uint8)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random((n, 14)), 0, 1)
    return labels, probabilities, patient_ids


def test_bootstrap_resamples_are_whole_patients():
    labels, probabilities, patient_ids = _clustered()
    counts, image_patient = metrics.patient_resample_counts(patient_ids, 20, np.random.default_rng(5))
    num_patients = len(np.unique(patient_ids))
    assert counts.shape == (num_patients, 20) and (counts.sum(axis=0) == num_patients).all()
    # Every image of a patient gets that patient's count; the AUCs are those of the explicit resampled data sets.
    samples = metrics.bootstrap_auc_samples(labels, probabilities, patient_ids, resamples=20, seed=5)
    for b in range(20):
        copies = np.repeat(np.arange(len(labels)), counts[image_patient, b])
        for k in range(14):
            y = labels[copies, k]
            expected = roc_auc_score(y, probabilities[copies, k]) if 0 < y.sum() < len(y) else np.nan
            np.testing.assert_allclose(samples[b, k], expected, atol=1e-12)


def test_bootstrap_is_unchanged_when_each_patients_images_are_duplicated():
    """Resampling patients: duplicating every image within its patient changes no resample's AUC, so the CIs are
    identical. Resampling images would see twice the images and give narrower, different intervals."""
    labels, probabilities, patient_ids = _clustered()
    once = metrics.bootstrap_auc_ci(labels, probabilities, patient_ids, resamples=300, seed=11)
    twice = metrics.bootstrap_auc_ci(np.tile(labels, (2, 1)), np.tile(probabilities, (2, 1)),
                                     np.tile(patient_ids, 2), resamples=300, seed=11)
    for finding in FINDINGS:
        assert twice["auc"][finding]["low"] == pytest.approx(once["auc"][finding]["low"], abs=1e-12)
        assert twice["auc"][finding]["high"] == pytest.approx(once["auc"][finding]["high"], abs=1e-12)
    assert twice["mean_auc"] == pytest.approx(once["mean_auc"], abs=1e-12)


def test_bootstrap_is_seeded():
    labels, probabilities, patient_ids = _clustered()
    first = metrics.bootstrap_auc_ci(labels, probabilities, patient_ids, resamples=100, seed=1)
    assert metrics.bootstrap_auc_ci(labels, probabilities, patient_ids, resamples=100, seed=1) == first
    assert metrics.bootstrap_auc_ci(labels, probabilities, patient_ids, resamples=100, seed=2) != first


def test_bootstrap_skips_one_class_resamples_and_counts_them():
    labels, probabilities, patient_ids = _clustered()
    labels[:, A] = 0
    labels[patient_ids == patient_ids[0], A] = 1  # Atelectasis: the first patient's images only
    result = metrics.bootstrap_auc_ci(labels, probabilities, patient_ids, resamples=200, seed=4)
    counts, image_patient = metrics.patient_resample_counts(patient_ids, 200, np.random.default_rng(4))
    drawn = int((counts[image_patient[0]] > 0).sum())  # resamples that contain the only positive patient
    assert 0 < drawn < 200
    assert result["auc"]["Atelectasis"]["resamples_used"] == drawn
    assert result["mean_auc"]["resamples_used"] <= drawn
    assert result["auc"]["Cardiomegaly"]["resamples_used"] == 200


def test_weighted_average_precision_equals_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.random(400) + 0.3 * labels, 1)  # coarse: many ties, across classes too
    integer_weights = rng.integers(0, 4, (400, 6))
    by_rank = metrics.weighted_average_precision(labels, scores, integer_weights)
    for b in range(integer_weights.shape[1]):
        copies = np.repeat(np.arange(400), integer_weights[:, b])
        assert by_rank[b] == pytest.approx(average_precision_score(labels[copies], scores[copies]), abs=1e-12)
    real_weights = rng.random((400, 3))
    by_rank = metrics.weighted_average_precision(labels, scores, real_weights)
    for b in range(real_weights.shape[1]):
        expected = average_precision_score(labels, scores, sample_weight=real_weights[:, b])
        assert by_rank[b] == pytest.approx(expected, abs=1e-12)
    # No positive drawn: undefined. Six images by hand: + - + - at .9 .7 .6 .3 -> (1 + 2/3) / 2.
    assert np.isnan(metrics.weighted_average_precision(labels, scores, np.where(labels[:, None] == 1, 0, 1)))[0]
    assert metrics.weighted_average_precision(np.array([1, 0, 1, 0]), np.array([.9, .7, .6, .3]),
                                              np.ones((4, 1)))[0] == pytest.approx(5 / 6)


_INTERVAL_METRICS = ("mean_auc", "w_auc", "w_auc_normalized", "mean_d_auc", "mean_n_auc", "map")
_PER_FINDING_METRICS = ("auc", "d_auc", "n_auc", "ap")


def test_every_interval_is_of_the_same_resampled_data_sets():
    """Each metric's samples are those of full_metrics on the explicitly built resamples, all from one set of draws,
    and each interval is their 2.5th-97.5th percentile."""
    labels, probabilities, patient_ids = _clustered(num_patients=30, seed=2)
    labels[::4] = 0  # some No Finding images, so that N-AUC has negatives
    resamples, seed = 12, 9
    samples = metrics.bootstrap_samples(labels, probabilities, patient_ids, resamples=resamples, seed=seed)
    counts, image_patient = metrics.patient_resample_counts(patient_ids, resamples, np.random.default_rng(seed))
    explicit = []
    for b in range(resamples):
        copies = np.repeat(np.arange(len(labels)), counts[image_patient, b])
        explicit.append(metrics.full_metrics(labels[copies], probabilities[copies], bootstrap=0))
        for name in _PER_FINDING_METRICS:
            expected = [np.nan if explicit[b][name][f] is None else explicit[b][name][f] for f in FINDINGS]
            np.testing.assert_allclose(samples[name][b], expected, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(samples["prevalence"][b], list(explicit[b]["prevalence"].values()), atol=1e-12)
    result = metrics.bootstrap_ci(labels, probabilities, patient_ids, resamples=resamples, seed=seed)
    for name in _INTERVAL_METRICS:
        low, high = np.percentile([e[name] for e in explicit], [2.5, 97.5])
        assert result[name] == pytest.approx({"low": low, "high": high, "resamples_used": resamples}, abs=1e-12)
    for name in _PER_FINDING_METRICS:
        values = [e[name]["Effusion"] for e in explicit]
        low, high = np.percentile(values, [2.5, 97.5])
        assert result[name]["Effusion"] == pytest.approx({"low": low, "high": high, "resamples_used": resamples},
                                                         abs=1e-12)


def _all_intervals(result):
    """(name, point estimate, interval) of every defined metric of a full_metrics result."""
    ci = result["bootstrap"]
    for name in _INTERVAL_METRICS:
        yield name, result[name], ci[name]
    for name in _PER_FINDING_METRICS:
        for finding in FINDINGS:
            if result[name][finding] is not None:
                yield f"{name} {finding}", result[name][finding], ci[name][finding]


def test_intervals_bracket_the_point_estimates_and_are_seeded():
    labels, probabilities, patient_ids = _clustered(num_patients=150, seed=6)
    labels[::3] = 0
    result = metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=100, seed=3)
    named = list(_all_intervals(result))
    assert len(named) == len(_INTERVAL_METRICS) + 14 * len(_PER_FINDING_METRICS)
    for name, point, interval in named:
        assert interval["low"] < point < interval["high"], name
        assert interval["resamples_used"] == 100, name
    assert metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=100, seed=3) == result
    other = metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=100, seed=4)["bootstrap"]
    for name in _INTERVAL_METRICS:
        assert other[name] != result["bootstrap"][name], name
    assert json.loads(json.dumps(result)) == result


def test_intervals_collapse_when_every_resample_is_the_data_set():
    """One patient, or patients whose images are all alike: every resample is the data set (up to repeating all of
    it), so every interval is the point estimate. The six images leave most findings undefined: no interval."""
    labels, probabilities = _six_images()
    single = metrics.full_metrics(labels, probabilities, np.full(6, 7), bootstrap=20, seed=0)
    alike = metrics.full_metrics(np.tile(labels, (5, 1)), np.tile(probabilities, (5, 1)), np.repeat(np.arange(5), 6),
                                 bootstrap=20, seed=0)
    for result in (single, alike):
        named = list(_all_intervals(result))
        assert len(named) == len(_INTERVAL_METRICS) + 2 * len(_PER_FINDING_METRICS)
        for name, point, interval in named:
            assert interval == pytest.approx({"low": point, "high": point, "resamples_used": 20}, abs=1e-12), name
        assert result["bootstrap"]["auc"]["Hernia"] is None and result["bootstrap"]["d_auc"]["Hernia"] is None
    assert single["bootstrap"]["num_patients"] == 1 and alike["bootstrap"]["num_patients"] == 5
    # One resample: an interval of one value.
    clustered = _clustered()
    one = metrics.bootstrap_ci(*clustered, resamples=1, seed=0)
    for name in _INTERVAL_METRICS:
        assert one[name]["low"] == one[name]["high"] and one[name]["resamples_used"] == 1


def test_full_metrics_requires_patient_ids_for_intervals(caplog):
    labels, probabilities, patient_ids = _clustered()
    assert metrics.full_metrics(labels, probabilities, bootstrap=50)["bootstrap"] is None
    assert "no patient ids" in caplog.text
    result = metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=50)
    assert result["bootstrap"]["resamples"] == 50 and result["num_patients"] == len(np.unique(patient_ids))
    with pytest.raises(ValueError, match="patient ids"):
        metrics.full_metrics(labels, probabilities, patient_ids[:-1], bootstrap=50)


def test_auc_table_shows_intervals_only_when_computed():
    labels, probabilities, patient_ids = _clustered()
    plain = metrics.auc_table(metrics.summarize(labels, probabilities)).splitlines()
    assert plain[0].split() == ["finding", "AUC"] and len(plain) == 16 and plain[-1].startswith("mean")
    full = metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=50)
    table = metrics.auc_table(full).splitlines()
    assert "95% CI" in table[0] and "N-AUC" in table[0] and table[-2].startswith("mean")
    assert table[-1] == (f"AUC {full['mean_auc']:.4f} · W-AUC {full['w_auc']:.4f} (normalised "
                         f"{full['w_auc_normalized']:.4f}) · D-AUC {full['mean_d_auc']:.4f} · N-AUC "
                         f"{full['mean_n_auc']:.4f}")
    interval = full["bootstrap"]["auc"]["Hernia"]
    assert f"[{interval['low']:.4f}, {interval['high']:.4f}]" in table[14]


# --- the independent DenseNet-121 reference run: 22,433 images of a random patient-level test split -------------

@pytest.fixture(scope="module")
def reference():
    names, probabilities = read_predictions(shared_data("reference", "densenet121_test_predictions.csv"))
    entries, _ = read_data_entry(shared_data("nih", "Data_Entry_2017_v2020.csv.gz"))
    by_name = {entry.image_index: entry for entry in entries}
    chosen = [by_name[name] for name in names]
    labels = np.stack([entry.labels for entry in chosen])
    patient_ids = np.array([entry.patient_id for entry in chosen])
    with open(shared_data("reference", "densenet121_test_aucs.csv")) as f:
        aucs = {row["label"]: float(row["auc"]) for row in csv.DictReader(f)}
    start = time.perf_counter()
    result = metrics.full_metrics(labels, probabilities, patient_ids, bootstrap=1000, seed=0)
    seconds = time.perf_counter() - start
    return {"entries": chosen, "labels": labels, "probabilities": probabilities, "patient_ids": patient_ids,
            "aucs": aucs, "metrics": result, "seconds": seconds}


def test_reference_aucs_by_sklearn_and_by_ranks(reference):
    result, aucs = reference["metrics"], reference["aucs"]
    by_rank = [metrics.weighted_rank_auc(reference["labels"][:, k], reference["probabilities"][:, k],
                                         np.ones((len(reference["labels"]), 1)))[0] for k in range(14)]
    for k, finding in enumerate(FINDINGS):
        assert result["auc"][finding] == pytest.approx(aucs[finding], abs=1e-9)
        assert by_rank[k] == pytest.approx(aucs[finding], abs=1e-9)
    assert round(result["mean_auc"], 3) == published.REFERENCE_REPRODUCTION.auc


def test_reference_weighted_auc(reference):
    result, aucs, entries = reference["metrics"], reference["aucs"], reference["entries"]
    shares = {f: sum(f in entry.findings for entry in entries) / len(entries) for f in FINDINGS}
    expected = sum(shares[f] * aucs[f] for f in FINDINGS)
    assert result["w_auc"] == pytest.approx(expected, abs=1e-12)
    assert 0.55 < result["w_auc"] < 0.65  # Ge's range: the prevalences sum to well under one
    assert result["w_auc_normalized"] == pytest.approx(expected / sum(shares.values()), abs=1e-12)
    assert min(aucs.values()) < result["w_auc_normalized"] < max(aucs.values())


def test_reference_d_auc_and_n_auc(reference):
    result, entries, probabilities = reference["metrics"], reference["entries"], reference["probabilities"]
    for k, finding in enumerate(FINDINGS):
        diseased = [i for i, entry in enumerate(entries) if entry.findings]
        d_truth = [finding in entries[i].findings for i in diseased]
        assert result["d_auc"][finding] == pytest.approx(roc_auc_score(d_truth, probabilities[diseased, k]), abs=1e-12)
        kept = [i for i, entry in enumerate(entries) if not entry.findings or finding in entry.findings]
        n_truth = [bool(entries[i].findings) for i in kept]
        assert result["n_auc"][finding] == pytest.approx(roc_auc_score(n_truth, probabilities[kept, k]), abs=1e-12)
    # As Ge reports: telling a disease from normal is easier than from other diseases.
    assert result["mean_n_auc"] > result["mean_auc"] > result["mean_d_auc"]


def test_reference_bootstrap_intervals(reference):
    result = reference["metrics"]
    intervals = result["bootstrap"]["auc"]
    assert result["bootstrap"]["num_patients"] == len(np.unique(reference["patient_ids"])) < len(reference["labels"])
    width = {f: intervals[f]["high"] - intervals[f]["low"] for f in FINDINGS}
    for finding in FINDINGS:
        assert intervals[finding]["low"] < result["auc"][finding] < intervals[finding]["high"]
        assert intervals[finding]["resamples_used"] > 990
    mean = result["bootstrap"]["mean_auc"]
    assert mean["low"] < result["mean_auc"] < mean["high"]
    # Hernia (42 images) is far less certain than the common findings; the mean of 14 AUCs more than any one of them.
    for common in ("Atelectasis", "Effusion", "Infiltration"):
        assert width["Hernia"] > 3 * width[common]
    assert mean["high"] - mean["low"] < min(width.values())
    # Every other metric from the same 1000 resamples: intervals around the point estimates.
    named = list(_all_intervals(result))
    assert len(named) == len(_INTERVAL_METRICS) + 14 * len(_PER_FINDING_METRICS)
    for name, point, interval in named:
        assert interval["low"] < point < interval["high"] and interval["resamples_used"] > 990, name
    ci = result["bootstrap"]
    assert ci["w_auc"]["high"] < 0.65 and ci["w_auc_normalized"]["low"] > ci["w_auc"]["high"]
    assert ci["mean_d_auc"]["high"] < ci["mean_auc"]["low"] and ci["mean_auc"]["high"] < ci["mean_n_auc"]["low"]
    ap_width = {f: ci["ap"][f]["high"] - ci["ap"][f]["low"] for f in FINDINGS}
    assert ap_width["Hernia"] > ap_width["Effusion"]
    assert reference["seconds"] < 60, f"full_metrics with 1000 resamples took {reference['seconds']:.1f} s"
    assert json.loads(json.dumps(result)) == result
