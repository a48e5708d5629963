"""Metrics over predictions: the ROC AUC family, average precision, and patient-level bootstrap confidence intervals.

Definitions (labels Y [N, 14] multi-hot in canonical order, probabilities S [N, 14]; an image with an all-zero row is
a "No Finding" image):

- AUC_c: ROC AUC of S[:, c] against Y[:, c] over all images (scikit-learn's `roc_auc_score`; a tie between a positive
  and a negative counts one half). Mean AUC: the unweighted (macro) mean over the findings whose AUC is defined.
- prevalence_c: the share of images with finding c, P_c / N.
- W-AUC (Ge et al. 2018): Σ_c prevalence_c · AUC_c, unnormalised. On ChestX-ray14 the prevalences sum to about 0.74
  (many images have no finding, some several), which is why Ge's W-AUCs lie in 0.58–0.60 while their AUCs lie in
  0.77–0.85. W-AUC normalised: the same sum divided by Σ_c prevalence_c, a prevalence-weighted mean AUC on the AUC
  scale. Both sums run over the findings whose AUC is defined.
- D-AUC_c ("disease vs disease"): ROC AUC of S[:, c] with the images that have finding c as positives and the images
  that have at least one other finding but not c as negatives; "No Finding" images are left out. It asks whether the
  model tells finding c apart from other diseases. Mean D-AUC: macro mean over the defined ones.
- N-AUC_c ("disease vs non-disease"): ROC AUC of S[:, c] with the images that have finding c as positives and the
  "No Finding" images as negatives; images with only other findings are left out. Mean N-AUC: macro mean.
- AP_c: average precision, Σ_n (R_n − R_{n−1}) P_n over the thresholds of the precision-recall curve
  (scikit-learn's `average_precision_score`, no interpolation); defined when finding c has a positive. mAP: macro mean.
- Bootstrap 95% confidence intervals (percentile method): each resample draws as many patients as there are, with
  replacement, and takes every image of each drawn patient (as many times as the patient was drawn), so images of one
  patient — correlated follow-ups — stay together, as they do in a patient-level split. Every metric above is
  recomputed on the same resamples (one set of draws, so the intervals of different metrics are of the same
  resampled data sets): AUC_c, D-AUC_c, N-AUC_c and AP_c; their means; both W-AUCs, with the prevalences of the
  resample. The interval is the 2.5th and 97.5th percentile over the resamples. A resample in which a per-finding
  value is undefined (a single class among the images that count) is skipped for it; a resample counts for a mean
  (and for the W-AUCs, built on the AUCs) only when every finding whose value is defined on the full set is defined
  in it. The number of resamples used is reported with each interval.

Anything undefined (a single class among the images that count) is None, null in JSON, and means are over the defined
values — an evaluation never crashes halfway through. `summarize` and `full_metrics` say so in one warning line naming
the findings (`warn_undefined`); the line per finding and metric is INFO (`cxrjax --verbose`), since a small split
would otherwise print dozens. Everything returned is JSON-able.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrjax.data.findings import FINDINGS
from cxrjax.data.progress import progress
from cxrjax.metrics import thresholds as thresholds_lib

# Resamples per vectorised block: bounds the memory of the bootstrap (block × images float64) to tens of MB.
_BOOTSTRAP_BLOCK = 100


def _auc_or_none(labels: np.ndarray, scores: np.ndarray, what: str) -> float | None:
    if labels.size == 0 or labels.min() == labels.max():
        logging.info("%s: only one class among %d images, AUC undefined", what, labels.size)
        return None
    return float(roc_auc_score(labels, scores))


def _mean_or_none(values) -> float | None:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


def per_finding_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """AUC_c for every finding, None where the images have one class only."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    return {finding: _auc_or_none(labels[:, k], probabilities[:, k], finding) for k, finding in enumerate(FINDINGS)}


def mean_auc(aucs: dict[str, float | None]) -> float | None:
    return _mean_or_none(aucs.values())


def prevalence(labels: np.ndarray) -> dict[str, float]:
    """prevalence_c = P_c / N, the share of images with finding c."""
    shares = np.asarray(labels).mean(axis=0, dtype=np.float64)
    return {finding: float(share) for finding, share in zip(FINDINGS, shares)}


def weighted_auc(aucs: dict[str, float | None], prevalences: dict[str, float]) -> dict[str, float | None]:
    """Ge's W-AUC, Σ prevalence_c · AUC_c, and its normalised form divided by Σ prevalence_c (defined AUCs only)."""
    defined = [finding for finding, value in aucs.items() if value is not None]
    if not defined:
        return {"w_auc": None, "w_auc_normalized": None}
    total = sum(prevalences[finding] * aucs[finding] for finding in defined)
    weight = sum(prevalences[finding] for finding in defined)
    return {"w_auc": float(total), "w_auc_normalized": float(total / weight) if weight > 0 else None}


def disease_vs_disease_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """D-AUC_c: images with c against images with another finding but not c ("No Finding" images left out)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    diseased = labels.any(axis=1)
    return {finding: _auc_or_none(labels[diseased, k], probabilities[diseased, k], f"D-AUC {finding}")
            for k, finding in enumerate(FINDINGS)}


def disease_vs_normal_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """N-AUC_c: images with c against "No Finding" images (images with only other findings left out)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    normal = ~labels.any(axis=1)
    aucs = {}
    for k, finding in enumerate(FINDINGS):
        keep = normal | (labels[:, k] == 1)
        aucs[finding] = _auc_or_none(labels[keep, k], probabilities[keep, k], f"N-AUC {finding}")
    return aucs


def per_finding_average_precision(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """AP_c, None where finding c has no positive image."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    values = {}
    for k, finding in enumerate(FINDINGS):
        if not labels[:, k].any():
            logging.info("%s: no positive image, average precision undefined", finding)
            values[finding] = None
        else:
            values[finding] = float(average_precision_score(labels[:, k], probabilities[:, k]))
    return values


def _negatives_below(scores: np.ndarray, negatives: np.ndarray, weights: np.ndarray, at: np.ndarray):
    """Weights of the `negatives` (image indices) scoring below each of `at`, and at most it, per weighting:
    ([len(at), B], [len(at), B], total [B]). Negatives are sorted once; each score finds its strictly-lower and tied
    negatives by binary search, and cumulative sums of the negatives' weights give their weight per weighting."""
    negatives = negatives[np.argsort(scores[negatives], kind="stable")]
    negative_scores = scores[negatives]
    cumulative = np.zeros((len(negatives) + 1, weights.shape[1]))
    np.cumsum(weights[negatives], axis=0, out=cumulative[1:])
    below = cumulative[np.searchsorted(negative_scores, at, side="left")]
    up_to = cumulative[np.searchsorted(negative_scores, at, side="right")]
    return below, up_to, cumulative[-1]


def _divide(numerator: np.ndarray, denominator: np.ndarray, where_zero: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), where_zero)


def _rank_auc(positive_weights: np.ndarray, below: np.ndarray, up_to: np.ndarray, total_negative: np.ndarray):
    """Σ_{i positive} w_i (W−(s < s_i) + W−(s ≤ s_i)) / 2 / (W+ · W−) per weighting, NaN without a pair."""
    wins = (positive_weights * (below + up_to)).sum(axis=0) / 2
    return _divide(wins, positive_weights.sum(axis=0) * total_negative, np.nan)


def _average_precision(positive_scores: np.ndarray, positive_weights: np.ndarray, negatives_at_or_above: np.ndarray):
    """Σ_{i positive} w_i · precision(s_i) / W+ per weighting, NaN without a positive; precision(s) = TP / (TP + FP)
    of calling every image scoring at least s positive, FP being `negatives_at_or_above` [P, B]."""
    order = np.argsort(positive_scores, kind="stable")
    cumulative = np.zeros((len(order) + 1, positive_weights.shape[1]))
    np.cumsum(positive_weights[order], axis=0, out=cumulative[1:])
    true_positives = cumulative[-1] - cumulative[np.searchsorted(positive_scores[order], positive_scores, "left")]
    precision = _divide(true_positives, true_positives + negatives_at_or_above, 0.0)
    return _divide((positive_weights * precision).sum(axis=0), cumulative[-1], np.nan)


def weighted_rank_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one finding under many weightings of the images at once: `weights` [N, B] -> [B] (NaN: one class).

    An image of weight w counts as w copies of itself, so integer weights give exactly the AUC of the resampled data
    set: the Mann–Whitney statistic Σ_{i positive} w_i (W−(s < s_i) + W−(s = s_i) / 2) / (W+ · W−), ties counting
    one half, which is what scikit-learn computes (see `_negatives_below` for how the negatives' weights are
    counted). Weightings are columns so that every array operation runs over contiguous rows.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    weights = np.asarray(weights, np.float64)
    positives = np.flatnonzero(labels)
    below, up_to, total = _negatives_below(scores, np.flatnonzero(~labels), weights, scores[positives])
    return _rank_auc(weights[positives], below, up_to, total)


def weighted_average_precision(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of one finding under many weightings at once: `weights` [N, B] -> [B] (NaN: no positive).

    As for `weighted_rank_auc`, integer weights give exactly the AP of the resampled data set, scikit-learn's
    Σ_n (R_n − R_{n−1}) P_n over the distinct scores as thresholds: each positive adds its weight to the recall at its
    own score, where the precision counts every image scoring at least as high (ties included), which is
    Σ_{i positive} w_i · precision(s_i) / W+.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    weights = np.asarray(weights, np.float64)
    positives = np.flatnonzero(labels)
    below, _, total = _negatives_below(scores, np.flatnonzero(~labels), weights, scores[positives])
    return _average_precision(scores[positives], weights[positives], total - below)


def patient_resample_counts(patient_ids, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """How often each patient is drawn in each resample: ([P, resamples] counts, [N] patient index of each image).

    Each resample draws P patients uniformly with replacement, P being the number of distinct patients.
    """
    _, image_patient = np.unique(np.asarray(patient_ids), return_inverse=True)
    num_patients = int(image_patient.max()) + 1
    draws = rng.integers(0, num_patients, size=(resamples, num_patients))
    flat = (draws + num_patients * np.arange(resamples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=resamples * num_patients).reshape(resamples, num_patients)
    return np.ascontiguousarray(counts.T), image_patient


def bootstrap_samples(labels: np.ndarray, probabilities: np.ndarray, patient_ids, *, resamples: int = 1000,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """The per-finding metrics of every patient-level resample, all from one set of draws: {"auc", "d_auc", "n_auc",
    "ap", "prevalence": [resamples, 14]}, NaN where a resample leaves the value undefined.

    One pass per finding and block of resamples: the "No Finding" images and the images with other findings only
    are the N-AUC and D-AUC negatives; together they are the AUC negatives, and the AP's false positives. So their
    two cumulative weight sums (`_negatives_below`) give all four metrics, at about the cost of the AUC alone.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    counts, image_patient = patient_resample_counts(patient_ids, resamples, np.random.default_rng(seed))
    samples = {name: np.empty((resamples, len(FINDINGS))) for name in ("auc", "d_auc", "n_auc", "ap", "prevalence")}
    diseased = labels.any(axis=1)
    normal = np.flatnonzero(~diseased)
    # Prevalence from per-patient sums: Σ_images w y = Σ_patients count · (the patient's positives).
    patient_positives = np.zeros((counts.shape[0], len(FINDINGS)))
    np.add.at(patient_positives, image_patient, labels)
    patient_images = np.bincount(image_patient, minlength=counts.shape[0]).astype(np.float64)
    for start in progress(range(0, resamples, _BOOTSTRAP_BLOCK), total=-(-resamples // _BOOTSTRAP_BLOCK),
                          desc=f"bootstrap: {resamples} resamples, blocks of {_BOOTSTRAP_BLOCK}", unit="block"):
        block_counts = counts[:, start:start + _BOOTSTRAP_BLOCK].astype(np.float64)
        weights = block_counts[image_patient]
        block = slice(start, start + weights.shape[1])
        samples["prevalence"][block] = (block_counts.T @ patient_positives) / (block_counts.T @ patient_images)[:, None]
        for k in range(len(FINDINGS)):
            y, s = labels[:, k].astype(bool), probabilities[:, k]
            positives = np.flatnonzero(y)
            at, positive_weights = s[positives], weights[positives]
            n_below, n_up_to, n_total = _negatives_below(s, normal, weights, at)
            d_below, d_up_to, d_total = _negatives_below(s, np.flatnonzero(diseased & ~y), weights, at)
            samples["n_auc"][block, k] = _rank_auc(positive_weights, n_below, n_up_to, n_total)
            samples["d_auc"][block, k] = _rank_auc(positive_weights, d_below, d_up_to, d_total)
            below, total = n_below + d_below, n_total + d_total
            samples["auc"][block, k] = _rank_auc(positive_weights, below, n_up_to + d_up_to, total)
            samples["ap"][block, k] = _average_precision(at, positive_weights, total - below)
    return samples


def bootstrap_auc_samples(labels: np.ndarray, probabilities: np.ndarray, patient_ids, *, resamples: int = 1000,
                          seed: int = 0) -> np.ndarray:
    """AUC_c of every patient-level resample: [resamples, 14], NaN where the resample has one class for c."""
    return bootstrap_samples(labels, probabilities, patient_ids, resamples=resamples, seed=seed)["auc"]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> dict:
    """{low, high, resamples_used}: the central `level` percentile interval of the defined (non-NaN) values."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"low": None, "high": None, "resamples_used": 0}
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high), "resamples_used": int(values.size)}


def format_with_ci(value: float | None, interval: dict | None, undefined: str = "n/a") -> str:
    """`0.8123 [0.8010, 0.8231]`, a metric with its `percentile_interval` as every report prints it; the value alone
    where it has no interval, `undefined` where the metric itself is undefined."""
    if value is None:
        return undefined
    if not interval or interval["low"] is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval['low']:.4f}, {interval['high']:.4f}]"


def _defined_on_full_set(labels: np.ndarray) -> dict[str, np.ndarray]:
    """[14] bool per per-finding metric: whether the full set defines it (both classes among the images counted)."""
    positive = labels.any(axis=0)
    diseased, normal = labels.any(axis=1), ~labels.any(axis=1)
    return {"auc": labels.min(axis=0) != labels.max(axis=0),
            "d_auc": positive & (labels[diseased] == 0).any(axis=0),
            "n_auc": positive & normal.any(),
            "ap": positive}


def _complete(samples: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """The resamples (rows) in which every finding of `defined` has a value."""
    return ~np.isnan(samples[:, defined]).any(axis=1) if defined.any() else np.zeros(len(samples), bool)


def bootstrap_ci(labels: np.ndarray, probabilities: np.ndarray, patient_ids, *, resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Percentile confidence intervals of every metric of `full_metrics`, resampling patients (see module doc).

    Returns {"resamples", "seed", "level", "num_patients", and per metric its interval {low, high, resamples_used}:
    "auc", "d_auc", "n_auc", "ap": {finding: interval, or None where the value is undefined on the full set};
    "mean_auc", "mean_d_auc", "mean_n_auc", "map", "w_auc", "w_auc_normalized": interval}.
    """
    labels = np.asarray(labels)
    samples = bootstrap_samples(labels, probabilities, patient_ids, resamples=resamples, seed=seed)
    defined = _defined_on_full_set(labels)
    result = {"resamples": int(resamples), "seed": int(seed), "level": float(level),
              "num_patients": int(len(np.unique(np.asarray(patient_ids))))}
    for name, mean_name in (("auc", "mean_auc"), ("d_auc", "mean_d_auc"), ("n_auc", "mean_n_auc"), ("ap", "map")):
        values, ok = samples[name], defined[name]
        result[name] = {finding: percentile_interval(values[:, k], level) if ok[k] else None
                        for k, finding in enumerate(FINDINGS)}
        means = values[_complete(values, ok)][:, ok].mean(axis=1) if ok.any() else np.empty(0)  # none defined
        result[mean_name] = percentile_interval(means, level)
    complete = _complete(samples["auc"], defined["auc"])
    auc, shares = samples["auc"][complete][:, defined["auc"]], samples["prevalence"][complete][:, defined["auc"]]
    total, weight = (shares * auc).sum(axis=1), shares.sum(axis=1)
    result["w_auc"] = percentile_interval(total, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)
    result["w_auc_normalized"] = percentile_interval(normalized, level)
    return result


bootstrap_auc_ci = bootstrap_ci  # the earlier name, from when only the AUCs had intervals


_UNDEFINED_NAMES = {"auc": "AUC", "d_auc": "D-AUC", "n_auc": "N-AUC", "ap": "AP"}


def warn_undefined(metrics: dict) -> None:
    """One warning line naming the findings whose AUC, D-AUC, N-AUC or AP `metrics` leaves undefined (None), e.g.
    "AUC undefined for 2 findings with a single class among these 8 images: Hernia, Mass; AP for 1: Hernia"."""
    parts = []
    for key, name in _UNDEFINED_NAMES.items():
        undefined = [finding for finding, value in metrics.get(key, {}).items() if value is None]
        if undefined:
            parts.append(f"{name} for {len(undefined)}: {', '.join(undefined)}" if parts else
                         f"{name} undefined for {len(undefined)} finding{'s' * (len(undefined) > 1)} with a single "
                         f"class among these {metrics['num_images']} images: {', '.join(undefined)}")
    if parts:
        logging.warning("%s", "; ".join(parts))


def _summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    aucs = per_finding_auc(labels, probabilities)
    return {"auc": aucs, "mean_auc": mean_auc(aucs), "num_images": int(len(labels))}


def summarize(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The minimal `metrics.json` content, cheap enough for every validation: {auc: {finding: value}, mean_auc,
    num_images}."""
    result = _summary(labels, probabilities)
    warn_undefined(result)
    return result


def full_metrics(labels: np.ndarray, probabilities: np.ndarray, patient_ids=None, *, bootstrap: int = 1000,
                 seed: int = 0, thresholds: dict | None = None) -> dict:
    """`summarize` plus every metric of the module doc, for metrics.json and the report.

    Adds: positives {finding: count}, num_no_finding, prevalence, w_auc, w_auc_normalized, d_auc, mean_d_auc, n_auc,
    mean_n_auc, ap, map, bootstrap (the intervals of all of these AUCs, means and APs, see `bootstrap_ci`; None when
    `bootstrap` is 0 or no patient ids are given — resampling images instead would understate the uncertainty when
    patients have several images) and, with patient ids, num_patients. With `thresholds`
    (`cxrjax.metrics.thresholds.choose_thresholds` of a validation split): operating_points {rule: {finding: counts and
    rates}}.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    result = _summary(labels, probabilities)
    shares = prevalence(labels)
    d_auc = disease_vs_disease_auc(labels, probabilities)
    n_auc = disease_vs_normal_auc(labels, probabilities)
    ap = per_finding_average_precision(labels, probabilities)
    result |= {
        "positives": {finding: int(count) for finding, count in zip(FINDINGS, labels.sum(axis=0))},
        "num_no_finding": int((~labels.any(axis=1)).sum()),
        "prevalence": shares,
        **weighted_auc(result["auc"], shares),
        "d_auc": d_auc, "mean_d_auc": _mean_or_none(d_auc.values()),
        "n_auc": n_auc, "mean_n_auc": _mean_or_none(n_auc.values()),
        "ap": ap, "map": _mean_or_none(ap.values()),
        "bootstrap": None,
    }
    warn_undefined(result)
    if bootstrap and patient_ids is not None:
        if len(patient_ids) != len(labels):
            raise ValueError(f"{len(patient_ids)} patient ids for {len(labels)} images")
        result["bootstrap"] = bootstrap_ci(labels, probabilities, patient_ids, resamples=bootstrap, seed=seed)
        result["num_patients"] = result["bootstrap"]["num_patients"]
    elif bootstrap:
        logging.warning("no patient ids: no bootstrap confidence intervals")
    if thresholds is not None:
        result["operating_points"] = {rule: thresholds_lib.apply_thresholds(labels, probabilities, by_finding)
                                      for rule, by_finding in thresholds.items()}
    return result


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def auc_table(metrics: dict) -> str:
    """A plain-text per-finding table ending with the mean row; CI, AP, D-AUC and N-AUC columns when present."""
    width = max(len(f) for f in FINDINGS)
    full = "ap" in metrics
    ci = (metrics.get("bootstrap") or {}).get("auc", {})
    header = f"{'finding':<{width}}  AUC"
    if ci:
        header += "     95% CI         "
    if full:
        header += "  AP      D-AUC   N-AUC"
    lines = [header]

    def row(name, auc, interval, ap, d_auc, n_auc):
        line = f"{name:<{width}}  {_format(auc):<6}"
        if ci:
            line += (f"  [{_format(interval['low'])}, {_format(interval['high'])}]" if interval and interval["low"]
                     is not None else f"  {'':<16}")
        if full:
            line += f"  {_format(ap):<6}  {_format(d_auc):<6}  {_format(n_auc):<6}"
        return line.rstrip()

    for finding, value in metrics["auc"].items():
        lines.append(row(finding, value, ci.get(finding), *(metrics[k][finding] if full else None
                                                            for k in ("ap", "d_auc", "n_auc"))))
    mean_ci = (metrics.get("bootstrap") or {}).get("mean_auc")
    lines.append(row("mean", metrics["mean_auc"], mean_ci,
                     *(metrics[k] if full else None for k in ("map", "mean_d_auc", "mean_n_auc"))))
    if full:  # Ge 2018's four averages, in its order, for its tables
        lines.append(f"AUC {_format(metrics['mean_auc'])} · W-AUC {_format(metrics['w_auc'])} (normalised "
                     f"{_format(metrics['w_auc_normalized'])}) · D-AUC {_format(metrics['mean_d_auc'])} · N-AUC "
                     f"{_format(metrics['mean_n_auc'])}")
    return "\n".join(lines)
