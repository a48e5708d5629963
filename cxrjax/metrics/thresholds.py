"""Per-finding operating points: thresholds chosen on a validation split, applied to another split.

An AUC says how well a model ranks; a reader needs a yes/no per finding, so a threshold per finding has to be chosen
— on validation, never on the split it is reported on, or the test numbers are optimistic. Two rules:

- Youden: the threshold t maximising Youden's J = TPR(t) − FPR(t) over the points of the ROC curve (sensitivity +
  specificity − 1); it balances errors on both classes whatever the prevalence.
- F1: the threshold maximising F1 = 2·precision·recall / (precision + recall) over the points of the precision-recall
  curve (F1 taken as 0 where precision + recall = 0); it ignores true negatives, which suits rare findings.

An image is called positive for a finding when its probability is ≥ the threshold (scikit-learn's convention for the
curves' thresholds). Ties in J or F1 go to the highest threshold. A finding with a single class on validation gets
threshold None and no operating point (one warning line names them all). Thresholds are plain floats in a JSON-able dict
{"youden": {finding: t}, "f1": {finding: t}}, saved with a checkpoint and read back by evaluation.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrjax.data.findings import FINDINGS

RULES = ("youden", "f1")


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold of maximal TPR − FPR (both classes must be present)."""
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    # The curve's first point (threshold +inf, nothing called positive) is no operating point.
    return float(thresholds[1:][np.argmax((tpr - fpr)[1:])])


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold of maximal F1 (both classes must be present)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # scikit-learn returns thresholds in increasing order, with a final (precision 1, recall 0) point that has none.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    best = np.flatnonzero(f1 == f1.max())[-1]  # the highest of the tied thresholds
    return float(thresholds[best])


def choose_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, dict[str, float | None]]:
    """{"youden": {finding: t}, "f1": {finding: t}} from a validation split's labels and probabilities."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    chosen = {rule: {} for rule in RULES}
    single_class = []
    for k, finding in enumerate(FINDINGS):
        column = labels[:, k]
        if column.min() == column.max():
            single_class.append(finding)
            chosen["youden"][finding] = chosen["f1"][finding] = None
            continue
        chosen["youden"][finding] = youden_threshold(column, probabilities[:, k])
        chosen["f1"][finding] = f1_threshold(column, probabilities[:, k])
    if single_class:
        logging.warning("no operating point for %d finding%s with a single class among %d validation images: %s",
                        len(single_class), "s" * (len(single_class) > 1), len(labels), ", ".join(single_class))
    return chosen


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Counts and rates of calling `scores >= threshold` positive; a rate with a zero denominator is None.

    sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN),
    F1 = 2TP/(2TP+FP+FN).
    """
    truth = np.asarray(labels).astype(bool)
    called = np.asarray(scores, np.float64) >= threshold
    tp, fp = int((called & truth).sum()), int((called & ~truth).sum())
    fn, tn = int((~called & truth).sum()), int((~called & ~truth).sum())
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def apply_thresholds(labels: np.ndarray, probabilities: np.ndarray,
                     thresholds: dict[str, float | None]) -> dict[str, dict | None]:
    """{finding: operating_point(...)} for one rule's {finding: t}; None for a finding without a threshold."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    return {finding: None if thresholds.get(finding) is None
            else operating_point(labels[:, k], probabilities[:, k], thresholds[finding])
            for k, finding in enumerate(FINDINGS)}
