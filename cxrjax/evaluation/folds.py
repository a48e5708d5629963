"""Aggregating k-fold runs (Baltruschat 2019's 5-fold patient-level resampling) into mean ± sd per finding."""

from __future__ import annotations

import json
import os

import numpy as np

from cxrjax.data.findings import FINDINGS


def aggregate_folds(workdirs: list[str], split: str = "test") -> dict:
    """Reads each run's `eval/<split>/metrics.json` (from `cxrjax eval`); returns per-finding and mean-AUC
    {mean, sd (n − 1), n, values}. A finding undefined in a fold is left out of that finding's statistics."""
    runs = []
    for workdir in workdirs:
        path = os.path.join(workdir, "eval", split, "metrics.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing; run `cxrjax eval --workdir {workdir} --split {split}` first")
        with open(path) as f:
            runs.append(json.load(f))

    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return {"mean": None, "sd": None, "n": 0, "values": []}
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return {"mean": float(np.mean(values)), "sd": sd, "n": len(values), "values": values}

    return {"split": split, "workdirs": list(workdirs),
            "auc": {finding: stats([run["auc"][finding] for run in runs]) for finding in FINDINGS},
            "mean_auc": stats([run["mean_auc"] for run in runs])}


def folds_table(result: dict) -> str:
    width = max(len(f) for f in FINDINGS)

    def row(name, entry):
        if entry["mean"] is None:
            return f"{name:<{width}}  n/a"
        sd = "" if entry["sd"] is None else f" ± {entry['sd']:.4f}"
        return f"{name:<{width}}  {entry['mean']:.4f}{sd}  (n={entry['n']})"

    lines = [f"{'finding':<{width}}  AUC mean ± sd over folds"]
    lines += [row(finding, result["auc"][finding]) for finding in FINDINGS]
    lines.append(row("mean", result["mean_auc"]))
    return "\n".join(lines)
