"""The Python way in: `cxrjax.load(workdir)` gives a `Predictor` that predicts image files, PIL images or uint8
arrays, and draws their Grad-CAM maps, exactly as `cxrjax predict` does (one jitted forward over fixed-size padded
batches, the checkpoint's operating points for the decisions).

An in-memory image goes through the same steps as a file: grayscale on the 0..255 scale (`decode.to_grayscale_float`
for a PIL image), the area resize to `data.size`², the centre crop to `data.crop`².
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from cxrjax.data import images
from cxrjax.data.decode import to_grayscale_float
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation.load import TrainedRun, load_run, load_weights
from cxrjax.inference import explain, pictures, predict

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def _pixels(image: ImageLike, index: int) -> tuple[np.ndarray, str, bool]:
    """(float 0..255 (H, W) pixels, a name for messages, whether it is a file)."""
    if isinstance(image, (str, os.PathLike)):
        return images.read_pixels(image), os.fspath(image), True
    if isinstance(image, Image.Image):
        return to_grayscale_float(image), f"<PIL image {index}>", False
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
            raise ValueError(f"image {index}: expected a uint8 array (H, W), (H, W, 1) or RGB (H, W, 3), got "
                             f"{image.dtype} {image.shape}")
        picture = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
        return to_grayscale_float(picture), f"<array {index}>", False
    raise TypeError(f"image {index}: expected a file path, a PIL image or a uint8 array, got {type(image).__name__}")


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A trained run, ready to predict. `run` is what `evaluation.load.load_run` read; `thresholds` the operating
    points that turn probabilities into decisions (the checkpoint's, chosen on validation by `rule`)."""

    run: TrainedRun
    thresholds: predict.Thresholds

    @property
    def findings(self) -> tuple[str, ...]:
        return FINDINGS

    def _load(self, items: Sequence[ImageLike], metadata: predict.Metadata | None) -> list[predict.Loaded]:
        data = self.run.config.data
        reads_metadata = self.run.architecture.reads_metadata
        loaded = []
        for index, image in enumerate(items):
            pixels, name, is_file = _pixels(image, index)
            own = None
            if reads_metadata:
                tags = predict.dicom_metadata(name) if is_file else predict.Metadata()
                own = predict.choose_metadata(name, metadata or predict.Metadata(), tags,
                                              predict.describe_model(self.run))
            loaded.append(predict.Loaded(name, images.model_input(pixels, data.size, data.crop),
                                         (pixels.shape[1], pixels.shape[0]), own))
        return loaded

    def predict(self, images_: ImageLike | Iterable[ImageLike], *, metadata: predict.Metadata | None = None,
                batch_size: int = 16) -> list[predict.Prediction]:
        """One `Prediction` per image (file path, PIL image or uint8 array), in order: the 14 probabilities and the
        findings at or above their operating point. `metadata`: age, sex and view for a model that reads them
        (DICOM files may carry their own). An unreadable file raises `images.UnreadableImage`."""
        items = [images_] if isinstance(images_, (str, os.PathLike, Image.Image, np.ndarray)) else list(images_)
        return predict.predict_loaded(self.run, self._load(items, metadata), batch_size=batch_size,
                                      thresholds=self.thresholds)

    def gradcam(self, image: ImageLike, finding: str, *, metadata: predict.Metadata | None = None) -> np.ndarray:
        """The Grad-CAM map of `finding` for one image, (height, width) in the image's own frame, min-max scaled to
        0..1; over the whole image where the model takes it (`explain.accepts_field_of_view`), else its centre crop."""
        if finding not in FINDINGS:
            raise ValueError(f"unknown finding {finding!r}; choose from {', '.join(FINDINGS)}")
        (item,) = self._load([image], metadata)
        pixels = _pixels(image, 0)[0]
        maps = explain.maps_in_source_frame(self.run, [item], explain.accepts_field_of_view(self.run), 1,
                                            explain.gradcam_step(self.run), pixels=[pixels])
        return pictures.scale_map(maps[0][FINDINGS.index(finding)])


def load(workdir: str, checkpoint: str | int = "best", *, rule: str | None = None, mesh: Any = None) -> Predictor:
    """`cxrjax.load("runs/r18")`: the run of `workdir` at `checkpoint` (best, latest or a step) from its checkpoint
    alone, with the operating points chosen on validation by `rule` (youden, the default, or f1; 0.5 where none were
    saved). `cxrjax.load("weights/xrv_all.msgpack")`: an imported chest X-ray model, zero-shot, with its own
    operating points (`load_weights`)."""
    run = load_weights(workdir, mesh=mesh) if os.path.isfile(workdir) else load_run(workdir, checkpoint, mesh=mesh)
    return Predictor(run, predict.decision_thresholds(run, rule))
