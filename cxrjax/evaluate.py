"""Evaluation: one jitted forward over fixed-size padded batches of a split, probabilities gathered on the host.

The eval step is compiled once per (model, batch shape): padding the last batch and carrying a mask keeps the shape
fixed for the whole split. Also the `cxrjax eval` workflow: restore a checkpoint, predict, write predictions.csv and
metrics.json.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cxrjax import checkpoint, report, thresholds
from cxrjax import input as input_lib
from cxrjax import metrics as metrics_lib
from cxrjax import sharding
from cxrjax.findings import FINDINGS
from cxrjax.preprocess import normalize
from cxrjax.run import build_run, model_from_config
from cxrjax.state import compute_dtype


TTA_MODES = ("flip", "tencrop")


def tta_views(images, tta: str | None, crop: int):
    """The views test-time augmentation averages over, stacked on a new leading axis.

    flip: the image and its mirror. tencrop (CheXNet): the four corner and the centre `crop`² windows of the full
    image, and their mirrors. Static slices, so all views go through one compiled forward pass.
    """
    if tta is None:
        return images[None]
    if tta == "flip":
        return jnp.stack([images, images[:, :, ::-1]])
    if tta == "tencrop":
        height, width = images.shape[1:3]
        corners = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop),
                   ((height - crop) // 2, (width - crop) // 2)]
        crops = [images[:, top:top + crop, left:left + crop] for top, left in corners]
        return jnp.stack(crops + [c[:, :, ::-1] for c in crops])
    raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {TTA_MODES}")


def make_predict_step(model, dtype, predict_head: str = "logits", *, tta: str | None = None, crop: int | None = None):
    """`step(variables, images uint8, metadata=None) -> probabilities float32`, jitted, batch sharded along "data".

    With `tta`, probabilities are averaged over `tta_views` (for tencrop the images are the uncropped ones).
    `metadata` (age, sex, view arrays) is needed by the metadata-fusion model only.
    """

    @jax.jit
    def step(variables, images, metadata=None):
        views = tta_views(images, tta, crop)
        num_views = views.shape[0]
        # Image-major (image n's views at rows n·V ... n·V + V − 1): the rows of the images a device holds stay on
        # that device, so the batch sharding carries through. View-major rows would interleave the devices' images,
        # which XLA resolves by gathering the batch (ten-crop ran 8x slower so on 8 CPU devices).
        batch = jnp.swapaxes(views, 0, 1).reshape((-1, *views.shape[2:]))
        if metadata is not None:
            metadata = jax.tree.map(lambda values: jnp.repeat(values, num_views, axis=0), metadata)
        outputs = model.apply(variables, normalize(batch, dtype), metadata=metadata, train=False)
        probabilities = jax.nn.sigmoid(outputs[predict_head].astype(jnp.float32))
        return probabilities.reshape((images.shape[0], num_views, -1)).mean(axis=1)

    return step


def predict_records(predict_step, variables, shards, records, *, global_batch: int, crop: int, mesh,
                    num_threads: int = 4, workers: int = 0):
    """Probabilities (len(records), 14) for the given record numbers, in that order."""
    block, num_blocks = sharding.process_block(mesh, global_batch)
    dataset = input_lib.eval_dataset(shards, records, global_batch=global_batch, crop=crop,
                                     process_index=block, process_count=num_blocks,
                                     read_options=grain.ReadOptions(num_threads=num_threads,
                                                                    prefetch_buffer_size=num_threads),
                                     workers=workers)
    probabilities, order, mask = [], [], []
    for batch in dataset:
        inputs = sharding.to_global({name: batch[name] for name in ("image", *input_lib.METADATA_FIELDS)}, mesh)
        metadata = {name: inputs[name] for name in input_lib.METADATA_FIELDS}
        probabilities.append(sharding.to_host(predict_step(variables, inputs["image"], metadata)))
        local = sharding.to_global({"record": batch["record"], "mask": batch["mask"]}, mesh)
        order.append(sharding.to_host(local["record"]))
        mask.append(sharding.to_host(local["mask"]))
    probabilities, order, mask = (np.concatenate(a) for a in (probabilities, order, mask))
    keep = mask.astype(bool)
    by_record = dict(zip(order[keep].tolist(), probabilities[keep]))
    return np.stack([by_record[int(r)] for r in records])


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
class Inference:
    """What inference needs from a run directory: the model, its variables and the config it was trained with."""

    config: ml_collections.ConfigDict
    model: Any
    variables: dict
    dtype: Any
    step: int
    extra: dict  # JSON saved with the checkpoint (e.g. validation thresholds)

    def predict_step(self):
        return make_predict_step(self.model, self.dtype, self.config.model.predict_head)


def load_inference(workdir: str, which: str | int = "best") -> Inference:
    """Restores only the model variables of a checkpoint; needs neither the shards nor the optimizer."""
    step, config, extra, variables = checkpoint.load_variables(workdir, which)
    config = ml_collections.ConfigDict(config)
    return Inference(config, model_from_config(config), variables, compute_dtype(config.model.dtype), step, extra)


VAL = "val"  # the split operating points are chosen on


def _saved_operating_points(workdir: str, which: str | int) -> dict | None:
    """The thresholds saved with a checkpoint: chosen at the end of its epoch on the plain model's validation
    predictions; None in a checkpoint written mid-epoch (SIGTERM)."""
    mngr = checkpoint.manager(workdir)
    saved = checkpoint.restore_json(mngr, checkpoint.resolve_step(mngr, which), "extra").get("thresholds")
    mngr.close()
    return saved


def _predict_workdir(workdir: str, which: str | int, splits: tuple[str, ...], tta: str | None):
    """Restores a checkpoint and predicts `splits`: (run, step, {split: probabilities})."""
    mngr = checkpoint.manager(workdir)
    step = checkpoint.resolve_step(mngr, which)
    config = ml_collections.ConfigDict(checkpoint.restore_json(mngr, step, "config"))
    run = build_run(config)
    for split in splits:
        if split not in run.records:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(run.records)}")
    state = checkpoint.restore(mngr, step, run.state)
    mngr.close()
    crop = config.data.crop
    predict_step = make_predict_step(run.model, run.dtype, config.model.predict_head, tta=tta, crop=crop)
    probabilities = {split: predict_records(predict_step, run.variables(state), run.shards, run.records[split],
                                            global_batch=config.eval_batch_size,
                                            crop=run.shards.size if tta == "tencrop" else crop, mesh=run.mesh,
                                            num_threads=config.data.num_threads,
                                            workers=config.data.get("num_workers", 0))
                     for split in splits}
    return run, step, probabilities


def evaluate_workdir(workdir: str, which: str | int = "best", split: str = "test", *, ensemble=(),
                     tta: str | None = None, bootstrap: int = 1000) -> dict:
    """Restores a checkpoint of `workdir`, predicts `split`, writes W/eval/<split>/: predictions.csv, metrics.json
    (with patient-level bootstrap CIs and the operating points chosen on validation) and report.md + roc/pr.png.

    `ensemble`: more workdirs (same data and split) whose probabilities are averaged with this one's (Ge 2018's
    "R18 + R18-F-MSML" rows); `tta`: flip or tencrop. Either writes to W/eval/<split>[_tta-<mode>][_ensemble-<n>].

    Operating points are thresholds chosen on validation for exactly what is evaluated: a plain evaluation uses the
    checkpoint's own; TTA, an ensemble or a checkpoint saved without them (mid-epoch) predict the validation split the
    same way and choose there (`metrics["operating_points_from"]` says which).
    """
    saved = _saved_operating_points(workdir, which)
    rechoose = bool(tta or ensemble) or saved is None
    splits = tuple(dict.fromkeys((split, VAL) if rechoose else (split,)))
    run, step, probabilities = _predict_workdir(workdir, which, splits, tta)
    names = {name: run.shards.metadata.image_index[run.records[name]] for name in splits}
    members = [probabilities]
    for other in ensemble:
        other_run, _, other_probabilities = _predict_workdir(other, which, splits, tta)
        for name in splits:
            if not np.array_equal(other_run.shards.metadata.image_index[other_run.records[name]], names[name]):
                raise ValueError(f"{other} evaluates other images on the {name} split than {workdir}; an ensemble "
                                 "needs the same data and split protocol")
        members.append(other_probabilities)
    probabilities = {name: np.mean([member[name] for member in members], axis=0) for name in splits}
    records = run.records[split]
    if rechoose:
        operating_points = thresholds.choose_thresholds(run.shards.metadata.labels[run.records[VAL]],
                                                        probabilities[VAL])
    else:
        operating_points = saved
    folder = split + (f"_tta-{tta}" if tta else "") + (f"_ensemble-{len(members)}" if ensemble else "")
    labels = run.shards.metadata.labels[records]
    metrics = metrics_lib.full_metrics(labels, probabilities[split], run.shards.metadata.patient_id[records],
                                       bootstrap=bootstrap, thresholds=operating_points)
    metrics |= {"step": step, "split": split, "tta": tta, "ensemble": [workdir, *ensemble],
                "operating_points_from": f"{VAL} predictions of this evaluation" if rechoose else "checkpoint"}
    out = os.path.join(workdir, "eval", folder)
    if jax.process_index() == 0:
        write_predictions(os.path.join(out, "predictions.csv"), names[split], probabilities[split])
        write_metrics(os.path.join(out, "metrics.json"), metrics)
        report.write_report(out, labels, probabilities[split], metrics, operating_points,
                            f"{run.config.model.name} on the {split} split ({folder}, step {step})",
                            split=run.config.data.protocol)
    return metrics
