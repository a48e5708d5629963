"""Metrics over predictions: per-finding ROC AUC (scikit-learn) and their mean.

A finding with only one class among the scored images has no AUC: it gets None (null in JSON) and a warning, and the
mean is over the findings that have one — never a crash halfway through an evaluation.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrjax.findings import FINDINGS


def per_finding_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    aucs = {}
    for k, finding in enumerate(FINDINGS):
        column = labels[:, k]
        if column.min() == column.max():
            logging.warning("%s: only one class among %d images, AUC undefined", finding, len(column))
            aucs[finding] = None
        else:
            aucs[finding] = float(roc_auc_score(column, probabilities[:, k]))
    return aucs


def mean_auc(aucs: dict[str, float | None]) -> float | None:
    defined = [value for value in aucs.values() if value is not None]
    return float(np.mean(defined)) if defined else None


def summarize(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The `metrics.json` content: {auc: {finding: value}, mean_auc, num_images}."""
    aucs = per_finding_auc(labels, probabilities)
    return {"auc": aucs, "mean_auc": mean_auc(aucs), "num_images": int(len(labels))}


def auc_table(metrics: dict) -> str:
    """A plain-text per-finding AUC table ending with the mean."""
    width = max(len(f) for f in FINDINGS)
    lines = [f"{'finding':<{width}}  AUC"]
    for finding, value in metrics["auc"].items():
        lines.append(f"{finding:<{width}}  {'n/a' if value is None else f'{value:.4f}'}")
    mean = metrics["mean_auc"]
    lines.append(f"{'mean':<{width}}  {'n/a' if mean is None else f'{mean:.4f}'}")
    return "\n".join(lines)
