"""The localisation check of Wang et al. 2017 (ChestX-ray8, §4.2): do Grad-CAM maps find the experts' boxes?

For every expert box (BBox_List_2017.csv) of an image in the evaluated split, the Grad-CAM map of the box's finding
is min-max scaled to 0..1 (`pictures.scale_map`) and thresholded at `fraction` (default 0.7). Wang et al. scale their
heatmaps to 0..255 and threshold them by intensity; 0.7 is close to the higher of their two thresholds (180 of 255).
The bounding box of the largest 8-connected component of the thresholded map is the predicted box. With the expert
box, both in the model input frame (the expert box scaled by the resize from the original size in the manifest to
`data.size`, shifted by the centre crop, clipped to it), it gives:
  IoU  = |P ∩ G| / |P ∪ G|
  IoBB = |P ∩ G| / |P|   (intersection over the *predicted* box — Wang et al.'s "intersection over the detected
                          B-Box area ratio")
A box is localised at T(IoU) if IoU > T, at T(IoBB) if IoBB > T (Wang et al.'s strict inequality), for
T ∈ {0.1, 0.25, 0.5}; the report gives, per finding and over all boxes, the share of boxes localised. An expert box
outside the model's centre crop, or a flat map (no hot region), counts as a miss.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
from scipy import ndimage

from cxrjax.data import images, nih, shard_format, splits
from cxrjax.data.findings import FINDINGS
from cxrjax.data.progress import progress
from cxrjax.evaluation.load import TrainedRun, load_run
from cxrjax.inference import pictures
from cxrjax.inference.explain import gradcam_step
from cxrjax.inference.pictures import scale_map
from cxrjax.inference.predict import Loaded, metadata_batch, padded_batches

T_VALUES = (0.1, 0.25, 0.5)
DEFAULT_FRACTION = 0.7
EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Localized:
    """One expert box and the box predicted from its finding's map, both (x, y, w, h) in the model input frame."""

    image_index: str
    finding: str
    truth: tuple[float, float, float, float]
    predicted: tuple[float, float, float, float]
    iou: float
    iobb: float


def predicted_box(heatmap: np.ndarray, fraction: float = DEFAULT_FRACTION) -> tuple[float, float, float, float]:
    """(x, y, w, h) around the largest 8-connected region where the scaled map is ≥ `fraction`; none if flat."""
    scaled = scale_map(heatmap)
    if not scaled.any():
        return EMPTY_BOX
    regions, count = ndimage.label(scaled >= fraction, structure=np.ones((3, 3)))
    largest = int(np.argmax(np.bincount(regions.ravel(), minlength=count + 1)[1:]))
    rows, cols = ndimage.find_objects(regions)[largest]
    return float(cols.start), float(rows.start), float(cols.stop - cols.start), float(rows.stop - rows.start)


def _intersection(a, b) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)


def iou(predicted, truth) -> float:
    union = predicted[2] * predicted[3] + truth[2] * truth[3] - _intersection(predicted, truth)
    return _intersection(predicted, truth) / union if union > 0 else 0.0


def iobb(predicted, truth) -> float:
    """Intersection over the predicted box's area."""
    area = predicted[2] * predicted[3]
    return _intersection(predicted, truth) / area if area > 0 else 0.0


def localize(predicted_boxes: Sequence, truth_boxes: Sequence, image_index: Sequence[str],
             findings: Sequence[str]) -> list[Localized]:
    return [Localized(name, finding, tuple(t), tuple(p), iou(p, t), iobb(p, t))
            for name, finding, t, p in zip(image_index, findings, truth_boxes, predicted_boxes)]


def _accuracy(rows: list[Localized], t_values: Sequence[float]) -> dict:
    ious, iobbs = np.array([r.iou for r in rows]), np.array([r.iobb for r in rows])
    return {"num_boxes": len(rows),
            "iou": {str(t): float(np.mean(ious > t)) for t in t_values},
            "iobb": {str(t): float(np.mean(iobbs > t)) for t in t_values},
            "mean_iou": float(ious.mean()), "mean_iobb": float(iobbs.mean())}


def localization_metrics(rows: list[Localized], t_values: Sequence[float] = T_VALUES) -> dict:
    """JSON-able: share of boxes localised at each T(IoU) and T(IoBB), per finding (those with boxes) and overall."""
    per_finding = {f: _accuracy([r for r in rows if r.finding == f], t_values)
                   for f in FINDINGS if any(r.finding == f for r in rows)}
    return {"num_boxes": len(rows), "num_images": len({r.image_index for r in rows}),
            "per_finding": per_finding, "all": _accuracy(rows, t_values) if rows else None}


def format_localization(metrics: dict) -> str:
    """Plain text: per finding (and all), boxes and the share localised at each T(IoU) and T(IoBB)."""
    if not metrics["num_boxes"]:
        return "no expert boxes on images of this split"
    t_values = list(metrics["all"]["iou"])
    header = ["finding", "boxes", *(f"IoU>{t}" for t in t_values), *(f"IoBB>{t}" for t in t_values)]
    table = [[finding, str(m["num_boxes"]), *(f"{m['iou'][t]:.3f}" for t in t_values),
              *(f"{m['iobb'][t]:.3f}" for t in t_values)]
             for finding, m in [*metrics["per_finding"].items(), ("all", metrics["all"])]]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                enumerate(zip(row, widths))) for row in [header, *table])


def write_box_picture(out_dir: str, row: Localized, image: np.ndarray, heatmap: np.ndarray, number: int) -> str:
    """OUT_DIR/<image stem>_<finding>_<number>.png: the model's input crop with the finding's Grad-CAM map, the
    expert's box and the box predicted from the map, titled with their IoU and IoBB."""
    stem = os.path.splitext(row.image_index)[0]
    path = os.path.join(out_dir, f"{stem}_{row.finding}_{number}.png")
    title = f"{row.finding}: IoU {row.iou:.2f}, IoBB {row.iobb:.2f}\n{row.image_index} (the model's input crop)"
    boxes = (pictures.Box(*row.truth, "expert"), pictures.Box(*row.predicted, "CAM"))
    pictures.write_cam_picture(path, image[..., 0], heatmap, title, boxes)
    return path


def localize_shards(inference: TrainedRun, shards: shard_format.Shards, records: np.ndarray, boxes: list[nih.Box], *,
                    fraction: float = DEFAULT_FRACTION, batch_size: int = 16,
                    out_dir: str | None = None) -> list[Localized]:
    """Grad-CAM on the shard images of `records` that have expert boxes, one `Localized` per box; with `out_dir`,
    also one `write_box_picture` per box."""
    data, metadata = inference.config.data, shards.metadata
    record_of = {str(metadata.image_index[r]): int(r) for r in records}
    by_image: dict[str, list[nih.Box]] = {}
    for box in boxes:
        if box.image_index in record_of and box.finding in FINDINGS:
            by_image.setdefault(box.image_index, []).append(box)
    offset = images.crop_offset(data.size, data.crop)
    with_metadata = inference.architecture.reads_metadata  # the fusion model gets each record's own age, sex and view

    def load(name: str) -> Loaded:
        record = record_of[name]
        image = shards.source[record]["image"][offset:offset + data.crop, offset:offset + data.crop]
        fields = ((float(metadata.age[record]), int(metadata.sex[record]), int(metadata.view[record]))
                  if with_metadata else None)
        return Loaded(name, image, tuple(metadata.source_size[record]), fields)

    step = gradcam_step(inference)
    rows = []
    read = progress(by_image, total=len(by_image), desc="localize: Grad-CAM of the images with expert boxes",
                    unit="img")
    for files, batch in padded_batches(map(load, read), batch_size):
        cams = np.asarray(step(inference.variables, batch, metadata_batch(files, batch_size))["cam"])
        for item, maps in zip(files, cams):
            image_boxes = by_image[item.path]
            truth = [images.box_to_input((b.x, b.y, b.w, b.h), item.source_size, data.size, data.crop)
                     for b in image_boxes]
            predicted = [predicted_box(maps[FINDINGS.index(b.finding)], fraction) for b in image_boxes]
            image_rows = localize(predicted, truth, [item.path] * len(image_boxes), [b.finding for b in image_boxes])
            if out_dir is not None:
                os.makedirs(out_dir, exist_ok=True)
                for number, row in enumerate(image_rows):
                    write_box_picture(out_dir, row, item.image, maps[FINDINGS.index(row.finding)], number)
            rows += image_rows
    read.close()
    return rows


def localize_workdir(workdir: str, boxes_csv: str, *, which: str | int = "best", split: str = "test",
                     fraction: float = DEFAULT_FRACTION, batch_size: int = 16,
                     out_dir: str | None = None) -> tuple[dict, list[Localized]]:
    """The check for a run directory: its checkpoint, its shards and split, the release's box list.

    Returns (metrics, per-box rows); metrics also name the step, the split and the map threshold.
    """
    inference = load_run(workdir, which)
    data = inference.config.data
    shards = shard_format.open_shards(shard_format.builder_dir(data.data_dir, data.size, data.labels))
    records = splits.split_records(data, shards.metadata)
    if split not in records:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(records)}")
    rows = localize_shards(inference, shards, records[split], nih.read_boxes(boxes_csv), fraction=fraction,
                           batch_size=batch_size, out_dir=out_dir)
    metrics = {"step": inference.step, "split": split, "cam_threshold": fraction}
    return metrics | localization_metrics(rows), rows
