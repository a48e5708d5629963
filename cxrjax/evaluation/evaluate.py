"""`cxrjax eval`: a trained run's predictions on a split, their metrics with patient-level CIs, and the operating
points, written beside the run (W/eval/<split>/: predictions.csv, metrics.json, report.md, roc.png, pr.png).

The run is loaded from its checkpoint alone (`load.load_run`); the shards are those of its config, or of
`data_dir` when they have moved.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import jax
import numpy as np

from cxrjax import metrics as metrics_lib
from cxrjax.data import shard_format, splits
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import expert_labels, report
from cxrjax.evaluation.forward import predict_split
from cxrjax.evaluation.load import TrainedRun, load_run, load_weights
from cxrjax.metrics import thresholds
from cxrjax.runtime import sharding

VAL = "val"  # the split operating points are chosen on


def write_predictions(path: str, image_index, probabilities: np.ndarray) -> None:
    """predictions.csv: header `Image Index,<14 findings>`, one row per image."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Image Index", *FINDINGS])
        for name, row in zip(image_index, probabilities):
            writer.writerow([name, *(f"{p:.7g}" for p in row)])


def write_metrics(path: str, metrics: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(metrics, f, indent=1)


@dataclasses.dataclass(frozen=True)
class _Predicted:
    """A run's predictions on some splits of its shards."""

    run: TrainedRun
    shards: shard_format.Shards
    records: dict[str, np.ndarray]  # every split of the run's protocol
    probabilities: dict[str, np.ndarray]  # the predicted splits only


def _predict_workdir(run: TrainedRun, mesh, split_names: tuple[str, ...], tta: str | None,
                     data_dir: str | None) -> _Predicted:
    data = run.config.data
    shards = shard_format.open_shards(shard_format.builder_dir(data_dir or data.data_dir, data.size, data.labels))
    records = splits.split_records(data, shards.metadata)
    for name in split_names:
        if name not in records:
            raise ValueError(f"unknown split {name!r}; choose one of {sorted(records)}")
    step = run.predict_step(tta)
    crop = shards.size if tta == "tencrop" else None
    return _Predicted(run, shards, records, {name: predict_split(step, run.variables, shards, records[name],
                                                                 run.config, mesh, crop=crop,
                                                                 desc=f"eval: predicting {name}")
                                             for name in split_names})


def evaluate_workdir(workdir: str, which: str | int = "best", split: str = "test", *, ensemble=(),
                     tta: str | None = None, bootstrap: int = 1000, data_dir: str | None = None,
                     expert: expert_labels.ExpertLabels | None = None) -> dict:
    """Loads a checkpoint of `workdir`, predicts `split`, writes W/eval/<split>/: predictions.csv, metrics.json
    (with patient-level bootstrap CIs and the operating points chosen on validation) and report.md + roc/pr.png.
    Returns metrics.json's content and `written_to`, that folder.

    `ensemble`: more workdirs (same data and split) whose probabilities are averaged with this one's (Ge 2018's
    "R18 + R18-F-MSML" rows); `tta`: flip or tencrop. Either writes to W/eval/<split>[_tta-<mode>][_ensemble-<n>].
    `data_dir`: where the shards are now, if not at the run's `config.data.data_dir`. `expert`: radiologists' labels
    (`expert_labels.read_expert_labels`) to grade the images they cover against, beside NIH's labels of the same
    images (metrics["expert"], a section of the report).

    Operating points are thresholds chosen on validation for exactly what is evaluated: a plain evaluation uses the
    checkpoint's own; TTA, an ensemble or a checkpoint saved without them (mid-epoch) predict the validation split the
    same way and choose there (`metrics["operating_points_from"]` says which).
    """
    mesh = sharding.data_mesh()
    run = load_run(workdir, which, mesh=mesh)
    others = [load_run(other, which, mesh=mesh) for other in ensemble]
    folder = split + (f"_tta-{tta}" if tta else "") + (f"_ensemble-{len(ensemble) + 1}" if ensemble else "")
    return evaluate_run(run, os.path.join(workdir, "eval", folder), split, names=[workdir, *ensemble], ensemble=others,
                        tta=tta, bootstrap=bootstrap, data_dir=data_dir, expert=expert,
                        title=f"{run.config.model.name} on the {split} split ({folder}, step {run.step})")


def evaluate_weights(path: str, out_dir: str, split: str = "test", *, data_dir: str, tta: str | None = None,
                     bootstrap: int = 1000, expert: expert_labels.ExpertLabels | None = None) -> dict:
    """`evaluate_workdir` for an imported chest X-ray model before any training (step 0, `load.load_weights`): its
    predictions on the shards of `data_dir` prepared at its resolution, into `out_dir`; the operating points are its
    own and those chosen on this evaluation's validation predictions."""
    run = load_weights(path, mesh=sharding.data_mesh())
    source = run.extra["source"]
    return evaluate_run(run, out_dir, split, names=[path], tta=tta, bootstrap=bootstrap, data_dir=data_dir,
                        expert=expert, title=f"{source['source']} {source['model']} (imported, untrained here) on "
                                             f"the {split} split")


def evaluate_run(run: TrainedRun, out: str, split: str, *, names: list[str], ensemble=(), tta: str | None = None,
                 bootstrap: int = 1000, data_dir: str | None = None,
                 expert: expert_labels.ExpertLabels | None = None, title: str) -> dict:
    """Predicts `split` with `run` (averaged with the `ensemble` runs), scores it and writes predictions.csv,
    metrics.json, report.md, roc.png and pr.png into `out` (see `evaluate_workdir`)."""
    mesh = sharding.data_mesh()
    saved = run.thresholds or {}
    rechoose = bool(tta or ensemble) or not all(rule in saved for rule in thresholds.RULES)
    split_names = tuple(dict.fromkeys((split, VAL) if rechoose else (split,)))
    members = [_predict_workdir(run, mesh, split_names, tta, data_dir)]
    first = members[0]
    image_names = {name: first.shards.metadata.image_index[first.records[name]] for name in split_names}
    for other, other_name in zip(ensemble, names[1:]):
        member = _predict_workdir(other, mesh, split_names, tta, data_dir)
        for name in split_names:
            if not np.array_equal(member.shards.metadata.image_index[member.records[name]], image_names[name]):
                raise ValueError(f"{other_name} evaluates other images on the {name} split than {names[0]}; an "
                                 "ensemble needs the same data and split protocol")
        members.append(member)
    probabilities = {name: np.mean([member.probabilities[name] for member in members], axis=0)
                     for name in split_names}
    metadata, records = first.shards.metadata, first.records[split]
    if rechoose:
        # The imported model's own operating points (a rule of its source) stay beside the ones chosen here.
        operating_points = {rule: values for rule, values in saved.items() if rule not in thresholds.RULES} | \
            thresholds.choose_thresholds(metadata.labels[first.records[VAL]], probabilities[VAL])
    else:
        operating_points = saved
    labels = metadata.labels[records]
    metrics = metrics_lib.full_metrics(labels, probabilities[split], metadata.patient_id[records],
                                       bootstrap=bootstrap, thresholds=operating_points)
    metrics |= {"step": run.step, "split": split, "tta": tta, "ensemble": names,
                "operating_points_from": f"{VAL} predictions of this evaluation" if rechoose else "checkpoint"}
    if expert is not None:
        metrics["expert"] = expert_labels.grade(expert, image_names[split], probabilities[split], labels,
                                                metadata.patient_id[records], bootstrap=bootstrap)
    if jax.process_index() == 0:
        write_predictions(os.path.join(out, "predictions.csv"), image_names[split], probabilities[split])
        write_metrics(os.path.join(out, "metrics.json"), metrics)
        report.write_report(out, labels, probabilities[split], metrics, operating_points, title,
                            measured=report.Measured(protocol=run.config.data.protocol, split=split,
                                                     labels=run.config.data.labels, num_images=len(metadata),
                                                     num_official_test=int(metadata.is_test.sum())))
    return metrics | {"written_to": out}
