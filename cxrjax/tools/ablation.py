"""Loss ablation: one config trained once per loss, same data, split and seed, compared per finding.

Only the prediction head's loss changes between runs (other heads of a multi-head model keep theirs), so differences
in the table come from the loss alone — the same data order, augmentation and initialisation are used by every run.
"""

from __future__ import annotations

import json
import os
import re

import ml_collections

from cxrjax import losses
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import evaluate
from cxrjax.training import train


def run_name(spec: str) -> str:
    """A folder-safe name for a loss spec: `class_aware:margin=0` → `class_aware-margin=0`."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", spec).strip("-")


def run_ablation(config: ml_collections.ConfigDict, workdir: str, loss_specs: list[str], split: str = "test",
                 stop_requested=lambda step: False) -> dict[str, dict]:
    """Trains and evaluates one run per loss spec in `workdir/<spec>`; returns {spec: metrics}. Resumable."""
    terms = {spec: losses.parse_loss(spec) for spec in loss_specs}  # fail on a bad spec before any training
    results = {}
    for spec, term in terms.items():
        run_config = ml_collections.ConfigDict(config.to_dict())
        run_config.losses[config.model.predict_head] = term
        run_dir = os.path.join(workdir, run_name(spec))
        if train.train_and_evaluate(run_config, run_dir, stop_requested)["stopped_early"]:
            break
        results[spec] = evaluate.evaluate_workdir(run_dir, "best", split)
    with open(os.path.join(workdir, "ablation.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def ablation_table(results: dict[str, dict]) -> str:
    """Per-finding AUC, one column per loss, ending with the mean."""
    specs = list(results)
    width = max(len(f) for f in FINDINGS)
    columns = [max(len(spec), 6) for spec in specs]
    lines = [f"{'finding':<{width}}  " + "  ".join(f"{s:>{c}}" for s, c in zip(specs, columns))]

    def cell(value, column):
        return f"{'n/a' if value is None else f'{value:.4f}':>{column}}"

    for finding in FINDINGS:
        lines.append(f"{finding:<{width}}  " + "  ".join(cell(results[s]["auc"][finding], c)
                                                         for s, c in zip(specs, columns)))
    lines.append(f"{'mean':<{width}}  " + "  ".join(cell(results[s]["mean_auc"], c) for s, c in zip(specs, columns)))
    return "\n".join(lines)
