"""Pictures a radiologist can read: a Grad-CAM map over the radiograph, titled with the finding, its probability and
its operating point, with a colour bar, and the expert's box or the CAM's box where there is one.

Why matplotlib's object API (a `Figure` per picture, no pyplot): pictures are written from worker code and tests,
where pyplot's global state and GUI backends have no place.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

HEAT_COLOURS = "jet"
OVERLAY_OPACITY = 0.6  # colour weight where the map is at its maximum; the radiograph shows through elsewhere
DPI = 100
# Shown at the file's own size within these bounds (pixels of the image's longer side): a 1024² release image at full
# resolution, a small test image large enough that the title and colour bar stay legible.
MIN_SIDE, MAX_SIDE = 512, 1024
BOX_STYLES = {"expert": ("#00e676", "-"), "CAM": ("#ffffff", "--")}  # colour, line style


@dataclasses.dataclass(frozen=True)
class Box:
    """(x, y, w, h) in the picture's pixel frame, and whose box it is ("expert" or "CAM")."""

    x: float
    y: float
    w: float
    h: float
    kind: str


def scale_map(heatmap: np.ndarray) -> np.ndarray:
    """A map min-max scaled to 0..1 (all zeros if it is flat): Grad-CAM maps carry an offset shared by the whole
    image, and what is shown or thresholded is where the map stands out of it."""
    low, high = float(heatmap.min()), float(heatmap.max())
    return np.zeros(heatmap.shape, np.float32) if high <= low else ((heatmap - low) / (high - low)).astype(np.float32)


def overlay(gray: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 (H, W) radiograph + (H, W) map → uint8 (H, W, 3): the scaled map in the jet colour map, blended in
    proportion to its value so that cold regions show the radiograph unchanged."""
    heat = scale_map(heatmap)
    colour = colormaps[HEAT_COLOURS](heat)[..., :3] * 255.0
    alpha = (OVERLAY_OPACITY * heat)[..., None]
    blended = (1.0 - alpha) * gray[..., None].astype(np.float32) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def picture_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) in pixels of the picture of a `height` x `width` image: the image at its own size within
    MIN_SIDE..MAX_SIDE, plus room for the colour bar on the right and the title above."""
    scale = min(max(MIN_SIDE / max(height, width), 1.0), MAX_SIDE / max(height, width))
    return round(width * scale * 1.18), round(height * scale * 1.12)


def write_cam_picture(path: str, gray: np.ndarray, heatmap: np.ndarray, title: str, boxes: tuple[Box, ...] = ()):
    """Writes `path` (PNG): `gray` (H, W) uint8 with `heatmap` (H, W, any scale) blended over it by `overlay`, the
    colour bar of the scaled map, `title` above, and each box outlined and named in the legend."""
    width, height = picture_size(*gray.shape)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    axes.imshow(overlay(gray, heatmap), interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title, fontsize=12)
    named = set()
    for box in boxes:  # each kind named once in the legend
        colour, style = BOX_STYLES[box.kind]
        axes.add_patch(Rectangle((box.x, box.y), box.w, box.h, fill=False, edgecolor=colour, linestyle=style,
                                 linewidth=2.0, label=None if box.kind in named else f"{box.kind} box"))
        named.add(box.kind)
    if boxes:
        axes.legend(loc="lower right", fontsize=9, framealpha=0.6)
    colour_bar = figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[HEAT_COLOURS]), ax=axes,
                                 fraction=0.046, pad=0.02)
    colour_bar.set_label("Grad-CAM, scaled to the image's own range", fontsize=9)
    figure.savefig(path)
