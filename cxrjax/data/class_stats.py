"""Per-finding statistics of a split's labels, computed once on the host (the class-aware losses' α_c)."""

from __future__ import annotations

import numpy as np


def positive_rate(labels) -> np.ndarray:
    """The fraction of images positive for each finding: `labels` [N, C] multi-hot {0, 1} -> [C] float64.

    Called on the training split's labels and handed to `losses.build_objective`, so class-aware losses see the
    training distribution, never the validation or test one. Rejects an empty split and labels other than 0 / 1
    (probabilities or class indices passed by mistake).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"positive_rate expects labels [N > 0, C], got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("positive_rate expects multi-hot labels in {0, 1}")
    return labels.mean(axis=0, dtype=np.float64)
