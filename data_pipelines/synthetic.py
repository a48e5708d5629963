"""A synthetic ChestX-ray14 release: same files, same columns, learnable findings.

Why: the demo and the tests need a data set that exercises the whole real pipeline (CSV parsing, split lists, PNG
decoding, patient-level splits, long-tailed multi-label learning) without the 45 GB release. Each of the 14 findings is
drawn as its own shape at its own place on a chest-like background, so a model can learn it and a per-finding AUC
means something; Grad-CAM should peak where the finding was drawn (the box list records where).

Label statistics follow the real release: the v2020 CSV's prevalences, compressed as p_max * (p / p_max) ** 0.5 so the
order of the long tail is kept (Infiltration most common, Hernia rarest) while the rarest finding still has positives
in a demo-sized test split; about half the images are "No Finding"; findings co-occur (each image draws several,
plus clinically common pairs); patients have several follow-up images; age, sex and view position are filled.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
from PIL import Image

from cxrjax.data.findings import FINDINGS, NUM_FINDINGS

# Share of images with each finding in Data_Entry_2017_v2020.csv (112,120 images).
REAL_PREVALENCE = np.array([0.1031, 0.0248, 0.1188, 0.1774, 0.0516, 0.0565, 0.0128, 0.0473, 0.0416, 0.0205, 0.0224,
                            0.0150, 0.0302, 0.0020])
ABNORMAL_FRACTION = 0.46  # the release has 53.8% "No Finding"
IMAGES_PER_PATIENT = 3.6  # 112,120 images / 30,805 patients
# Pairs that co-occur often in the release: the second is added with this probability when the first is present.
CO_OCCURRING = (("Effusion", "Atelectasis", 0.15), ("Infiltration", "Effusion", 0.1), ("Mass", "Nodule", 0.3),
                ("Cardiomegaly", "Edema", 0.3), ("Consolidation", "Pneumonia", 0.25))
# The box list covers these eight findings, spelling one differently.
BOX_FINDINGS = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Effusion",
                "Infiltration": "Infiltrate", "Mass": "Mass", "Nodule": "Nodule", "Pneumonia": "Pneumonia",
                "Pneumothorax": "Pneumothorax"}

DATA_ENTRY_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                     "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


def marginal_prevalence() -> np.ndarray:
    """Per-finding share of images in the synthetic release (the real tail, compressed)."""
    return REAL_PREVALENCE.max() * np.sqrt(REAL_PREVALENCE / REAL_PREVALENCE.max())


def sample_labels(rng: np.random.Generator) -> np.ndarray:
    """Multi-hot labels of one image."""
    labels = np.zeros(NUM_FINDINGS, np.uint8)
    if rng.random() >= ABNORMAL_FRACTION:
        return labels
    conditional = np.minimum(marginal_prevalence() / ABNORMAL_FRACTION * 0.75, 0.95)
    labels[:] = rng.random(NUM_FINDINGS) < conditional
    if not labels.any():
        labels[rng.choice(NUM_FINDINGS, p=conditional / conditional.sum())] = 1
    for first, second, probability in CO_OCCURRING:
        if labels[FINDINGS.index(first)] and rng.random() < probability:
            labels[FINDINGS.index(second)] = 1
    return labels


# --- drawing ---------------------------------------------------------------------------------------------------------
# Every finding: (centre x, centre y, size) in units of the image side, and a painter that returns an additive map.


def _ellipse(xx, yy, cx, cy, rx, ry):
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2


def _disc(xx, yy, cx, cy, r, _rng):
    return (_ellipse(xx, yy, cx, cy, r, r) <= 1.0).astype(np.float32) * 0.45


def _ring(xx, yy, cx, cy, r, _rng):
    d = np.sqrt(_ellipse(xx, yy, cx, cy, r, r))
    return ((d >= 0.45) & (d <= 1.0)).astype(np.float32) * 0.5


def _band(xx, yy, cx, cy, r, _rng):
    return ((np.abs(xx - cx) <= r * 1.6) & (np.abs(yy - cy) <= r * 0.3)).astype(np.float32) * 0.45


def _square(xx, yy, cx, cy, r, _rng):
    return ((np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)).astype(np.float32) * 0.4


def _effusion(xx, yy, cx, cy, r, _rng):
    meniscus = yy >= cy - r * 0.5 + 0.6 * r * ((xx - cx) / r) ** 2
    return (meniscus & (np.abs(xx - cx) <= r) & (yy <= cy + r)).astype(np.float32) * 0.4


def _patches(xx, yy, cx, cy, r, rng):
    inside = _ellipse(xx, yy, cx, cy, r, r * 1.3) <= 1.0
    n = xx.shape[0]
    coarse = rng.random((max(n // 8, 2), max(n // 8, 2)))
    texture = np.kron(coarse, np.ones((8, 8)))[:n, :n] if n >= 16 else rng.random((n, n))
    return (inside & (texture > 0.45)).astype(np.float32) * 0.45


def _blur_blob(xx, yy, cx, cy, r, _rng):
    return np.exp(-_ellipse(xx, yy, cx, cy, r, r)).astype(np.float32) * 0.5


def _dark_crescent(xx, yy, cx, cy, r, _rng):
    outer = _ellipse(xx, yy, cx, cy, r, r * 1.5) <= 1.0
    inner = _ellipse(xx, yy, cx + r * 0.5, cy, r, r * 1.5) <= 1.0
    return -(outer & ~inner).astype(np.float32) * 0.5


def _vertical_stripes(xx, yy, cx, cy, r, _rng):
    stripes = (np.abs(np.abs(xx - cx) - r) <= r * 0.25) & (np.abs(yy - cy) <= r * 1.5)
    return stripes.astype(np.float32) * 0.4


def _dark_lungs(xx, yy, cx, cy, r, _rng):
    left = _ellipse(xx, yy, cx - r, cy, r * 0.6, r * 0.8) <= 1.0
    right = _ellipse(xx, yy, cx + r, cy, r * 0.6, r * 0.8) <= 1.0
    return -(left | right).astype(np.float32) * 0.35


def _grid(xx, yy, cx, cy, r, _rng):
    inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    period = max(r / 2.0, 2.5 / xx.shape[0])
    lines = (np.mod(xx - cx, period) < period * 0.35) | (np.mod(yy - cy, period) < period * 0.35)
    return (inside & lines).astype(np.float32) * 0.45


def _edge_line(xx, yy, cx, cy, r, _rng):
    return ((np.abs(xx - cx) <= r * 0.5) & (np.abs(yy - cy) <= r * 2.5)).astype(np.float32) * 0.5


# Centres stay inside [0.15, 0.85] so that a centre crop of 7/8 of the side (crop 224 of 256) keeps every finding.
PATTERNS = {  # finding: (painter, centre x, centre y, size)
    "Atelectasis": (_band, 0.30, 0.68, 0.08),
    "Cardiomegaly": (_disc, 0.55, 0.62, 0.16),
    "Effusion": (_effusion, 0.72, 0.76, 0.12),
    "Infiltration": (_patches, 0.70, 0.45, 0.11),
    "Mass": (_disc, 0.30, 0.30, 0.07),
    "Nodule": (_disc, 0.68, 0.24, 0.04),
    "Pneumonia": (_blur_blob, 0.78, 0.62, 0.07),
    "Pneumothorax": (_dark_crescent, 0.20, 0.22, 0.08),
    "Consolidation": (_square, 0.32, 0.48, 0.06),
    "Edema": (_vertical_stripes, 0.50, 0.40, 0.08),
    "Emphysema": (_dark_lungs, 0.50, 0.22, 0.12),
    "Fibrosis": (_grid, 0.24, 0.82, 0.07),
    "Pleural_Thickening": (_edge_line, 0.84, 0.45, 0.06),
    "Hernia": (_ring, 0.50, 0.84, 0.08),
}
assert tuple(PATTERNS) == FINDINGS


def _background(size: int, rng: np.random.Generator, xx, yy) -> np.ndarray:
    """A chest-like radiograph: bright body, two dark lung fields, bright mediastinum, noise."""
    image = 0.55 + 0.1 * yy
    for side in (0.3, 0.7):
        image -= 0.25 * (_ellipse(xx, yy, side + rng.normal(0, 0.01), 0.45, 0.17, 0.3) <= 1.0)
    image += 0.1 * (np.abs(xx - 0.5) < 0.06)
    image = image * rng.uniform(0.85, 1.15) + rng.normal(0, 0.04, (size, size))
    return image.astype(np.float32)


def draw_image(labels: np.ndarray, size: int, rng: np.random.Generator):
    """Returns a uint8 (size, size) image and each drawn finding's box (x, y, w, h) in pixels."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    xx, yy = np.meshgrid(grid, grid)
    image = _background(size, rng, xx, yy)
    boxes = {}
    for k in np.flatnonzero(labels):
        finding = FINDINGS[k]
        painter, cx, cy, r = PATTERNS[finding]
        cx, cy = cx + rng.normal(0, 0.015), cy + rng.normal(0, 0.015)
        r *= rng.uniform(0.85, 1.15)
        paint = painter(xx, yy, cx, cy, r, rng) * rng.uniform(0.8, 1.2)
        image += paint
        rows, cols = np.nonzero(np.abs(paint) > 0.1 * np.abs(paint).max())
        if len(rows):
            boxes[finding] = (float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                              float(rows.max() - rows.min() + 1))
    return np.clip(image * 255.0, 0, 255).astype(np.uint8), boxes


@dataclasses.dataclass(frozen=True)
class SyntheticRelease:
    directory: str
    num_images: int
    num_patients: int


def write_release(directory: str | os.PathLike, num_images: int = 2000, size: int = 128, seed: int = 0,
                  test_fraction: float = 0.23, box_fraction: float = 0.3) -> SyntheticRelease:
    """Writes a synthetic release in the NIH layout: images/*.png, Data_Entry_2017_v2020.csv, train_val_list.txt,
    test_list.txt, BBox_List_2017.csv. Deterministic for a given seed."""
    directory = os.fspath(directory)
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, boxes, test_names, train_val_names = [], [], [], []
    patient = 0
    while len(rows) < num_images:
        patient += 1
        num_follow_ups = min(int(rng.geometric(1.0 / IMAGES_PER_PATIENT)), num_images - len(rows))
        sex = "M" if rng.random() < 0.565 else "F"
        age = int(np.clip(rng.normal(47, 16.6), 1, 95))
        in_test = rng.random() < test_fraction
        for follow_up in range(num_follow_ups):
            name = f"{patient:08d}_{follow_up:03d}.png"
            labels = sample_labels(rng)
            image, drawn = draw_image(labels, size, rng)
            Image.fromarray(image, mode="L").save(os.path.join(directory, "images", name), compress_level=1)
            findings = "|".join(FINDINGS[k] for k in np.flatnonzero(labels)) or "No Finding"
            view = "PA" if rng.random() < 0.6 else "AP"
            rows.append([name, findings, follow_up, patient, age + follow_up // 4, sex, view, size, size, 0.143,
                         0.143])
            (test_names if in_test else train_val_names).append(name)
            if rng.random() < box_fraction:
                boxes += [[name, BOX_FINDINGS[f], *box] for f, box in drawn.items() if f in BOX_FINDINGS]
    _write_csv(os.path.join(directory, "Data_Entry_2017_v2020.csv"), DATA_ENTRY_HEADER, rows)
    # The real header reads `Image Index,Finding Label,Bbox [x,y,w,h],,,`.
    box_header = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""]
    _write_csv(os.path.join(directory, "BBox_List_2017.csv"), box_header, boxes)
    for list_name, names in (("train_val_list.txt", train_val_names), ("test_list.txt", test_names)):
        with open(os.path.join(directory, list_name), "w") as f:
            f.writelines(name + "\n" for name in names)
    return SyntheticRelease(directory, len(rows), patient)


def _write_csv(path: str, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
