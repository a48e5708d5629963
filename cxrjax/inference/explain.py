"""Grad-CAM (Selvaraju et al. 2017) of every finding over the backbone's final feature map, and its pictures.

For finding k and feature map A (h, w, c): channel weights a_c = mean_ij dy_k/dA_ijc, map = ReLU(sum_c a_c A_c),
upsampled bilinearly (half-pixel centres, as cv2.resize in the usual implementations) to the model input size.
The two-backbone models (F-MSML's streams, CAN's branches) have a head that reads both final feature maps, so their
map is the sum of the two upsampled per-stream maps (`default_layers`): one stream alone would explain half of the
evidence.

No model module changes: `flax.linen.intercept_methods` captures the output of the submodules at `layer` (the
backbone, by default) on one forward pass, and on a second replaces it by an argument, which makes the logits a
function of the feature map to differentiate (`jax.vjp`; the replaced backbone's own computation is dead code that
XLA drops, so the gradient costs only the head). One vjp per finding under `vmap`: the whole batch's 14 maps come
from one compiled function. Each layer must be called once per forward pass. A model that reads age, sex and view
position (the fusion architecture) gets them on both passes, from `cxrjax.inference.predict`'s per-file metadata.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from cxrjax.data import images, nih
from cxrjax.data.decode import resize_area
from cxrjax.data.findings import FINDINGS, NUM_FINDINGS
from cxrjax.data.progress import progress
from cxrjax.inference import pictures
from cxrjax.inference.predict import (
    FileError,
    Loaded,
    Metadata,
    Prediction,
    Thresholds,
    decision_thresholds,
    inference_files,
    metadata_batch,
    padded_batches,
    predict_loaded,
)
from cxrjax.models import Layer, architecture_of
from cxrjax.models.heads import example_metadata
from cxrjax.models.preprocess import input_scaling, normalize


def default_layers(model) -> tuple[Layer, ...]:
    """The feature maps Grad-CAM explains, from the architecture's record: both streams of F-MSML, both branches of
    CAN, else the backbone."""
    return architecture_of(model).gradcam_layers


def _layers(model, layer) -> tuple[Layer, ...]:
    """`layer` as a tuple of paths: None → `default_layers`; one path ("backbone",) or several."""
    if layer is None:
        return default_layers(model)
    return (tuple(layer),) if all(isinstance(part, str) for part in layer) else tuple(map(tuple, layer))


def _forward(model, variables, x, layers: tuple[Layer, ...], replacements=None, metadata=None):
    """(the layers' outputs, the model's outputs); with `replacements` (one per layer) the layers' outputs are
    replaced by them."""
    captured = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path in layers:
            index = layers.index(context.module.path)
            out = out if replacements is None else replacements[index].astype(out.dtype)
            captured[index] = out
        return out

    with nn.intercept_methods(interceptor):
        outputs = model.apply(variables, x, metadata=metadata, train=False)
    for index, path in enumerate(layers):
        if index not in captured:
            raise ValueError(f"the model has no submodule at {'/'.join(path)!r} for Grad-CAM")
    return tuple(captured[index] for index in range(len(layers))), outputs


def make_gradcam_step(model, dtype, predict_head: str = "logits", layer=None, scaling: str = "imagenet"):
    """`step(variables, images uint8 (N, H, W, 1), metadata=None) -> {"cam": (N, 14, H, W), "probabilities":
    (N, 14)}`, float32, jitted. Maps are non-negative and unscaled (`scale_map` them to show or threshold them).
    `metadata` ({"age", "sex", "view"} arrays (N,)) is for the metadata-fusion model, which needs it. `layer`: the
    submodule path whose output is explained, or several whose maps are summed; default `default_layers(model)`.
    `scaling`: how the model takes its pixels (`config.model.input`)."""
    layers = _layers(model, layer)

    @jax.jit
    def step(variables, images, metadata=None):
        x = normalize(images, dtype, scaling)
        features, _ = _forward(model, variables, x, layers, metadata=metadata)
        features = tuple(feature_map.astype(jnp.float32) for feature_map in features)

        def logits_of(feature_maps):
            outputs = _forward(model, variables, x, layers, feature_maps, metadata=metadata)[1]
            return outputs[predict_head].astype(jnp.float32)

        logits, vjp = jax.vjp(logits_of, features)
        one_hot = jnp.broadcast_to(jnp.eye(NUM_FINDINGS)[:, None, :], (NUM_FINDINGS, *logits.shape))
        (grads,) = jax.vmap(vjp)(one_hot)  # per layer (14, N, h, w, c)
        cams = 0.0
        for feature_map, grad in zip(features, grads):
            weights = jnp.mean(grad, axis=(2, 3))  # (14, N, c)
            cam = nn.relu(jnp.einsum("knc,nhwc->nkhw", weights, feature_map))
            cams = cams + jax.image.resize(cam, (*cam.shape[:2], *images.shape[1:3]), "linear")
        return {"cam": cams, "probabilities": jax.nn.sigmoid(logits)}

    return step


def gradcam_step(inference, layer=None):
    """`make_gradcam_step` for a loaded checkpoint (`evaluation.load.load_run`)."""
    return make_gradcam_step(inference.model, inference.dtype, inference.config.model.predict_head, layer,
                             inference.config.model.input)


def accepts_field_of_view(inference) -> bool:
    """Whether the model takes the whole `data.size`² image, not only its `data.crop`² centre: a convolutional
    backbone with global pooling does; Swin's fixed windows do not (checked by tracing the shapes, nothing runs)."""
    size = inference.config.data.size
    try:
        jax.eval_shape(lambda variables: inference.model.apply(
            variables, jnp.zeros((1, size, size, input_scaling(inference.config.model.input).channels), jnp.float32),
            metadata=example_metadata(1), train=False),
            inference.variables)
    except Exception:  # noqa: BLE001 — a shape the model cannot take fails somewhere inside its trace
        return False
    return True


def chosen_findings(prediction: Prediction, thresholds: Thresholds, findings: Sequence[str] | None = None,
                    top_k: int | None = None) -> tuple[str, ...]:
    """The findings to draw for one file: `findings` if given; else the `top_k` most probable; else those at or above
    their operating point (what a reader acts on), most probable first."""
    if findings is not None:
        return tuple(findings)
    order = [FINDINGS[k] for k in np.argsort(-prediction.probabilities, kind="stable")]
    if top_k is not None:
        return tuple(order[:top_k])
    return tuple(f for f in order if f in prediction.positive)


def cam_filename(path: str, finding: str) -> str:
    """`<image stem>_<finding>.png`."""
    return f"{os.path.splitext(os.path.basename(path))[0]}_{finding}.png"


def _resize(heatmap: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
    """A (size, size) map of the whole image → (height, width) of the file, bilinear."""
    return np.asarray(Image.fromarray(np.asarray(heatmap, np.float32), mode="F").resize(
        tuple(source_size), Image.Resampling.BILINEAR))


def maps_in_source_frame(inference, files: list[Loaded], field_of_view: bool, batch_size: int, step,
                         pixels: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """(14, height, width) Grad-CAM maps of each image in its own frame. Over the whole image where the model takes
    it (no edge where the centre crop ends), else over the centre crop the model sees, zero outside it. `pixels`:
    the images' float 0..255 pixels at full size, when they are not files (read from `item.path` otherwise)."""
    data = inference.config.data
    if field_of_view:
        pixels = pixels or [images.read_pixels(item.path) for item in files]
        files = [dataclasses.replace(item, image=resize_area(full, data.size)[..., None])
                 for item, full in zip(files, pixels)]
    maps = []
    for chunk, batch in padded_batches(files, batch_size):
        cams = np.asarray(step(inference.variables, batch, metadata_batch(chunk, batch_size))["cam"])
        for item, cam in zip(chunk, cams):
            if field_of_view:
                maps.append(np.stack([_resize(m, item.source_size) for m in cam]))
            else:
                maps.append(np.stack([images.map_to_source(m, item.source_size, data.size) for m in cam]))
    return maps


def write_cam_overlays(inference, paths: Iterable[str], out_dir: str, *, thresholds: Thresholds | None = None,
                       findings: Sequence[str] | None = None, top_k: int | None = None,
                       boxes: Sequence[nih.Box] = (), batch_size: int = 8,
                       metadata: Metadata | None = None) -> tuple[list[str], list[FileError]]:
    """For each readable file, OUT_DIR/<image stem>_<finding>.png for the findings `chosen_findings` picks: the
    Grad-CAM map over the file's own pixels, titled with the finding, its probability and its operating point, with
    a colour bar, and the expert's boxes of that image and finding from `boxes` (the release's box list) drawn.

    The probability and the decision are the prediction's (the centre crop, as `predict_files` and evaluation); the map
    covers the whole image where the model takes it (`accepts_field_of_view`). `metadata` as for `predict_files`.
    Returns the written paths and one error per unreadable file.
    """
    unknown = sorted(set(findings or ()) - set(FINDINGS))
    if unknown:
        raise ValueError(f"unknown findings {unknown}; choose from {', '.join(FINDINGS)}")
    if top_k is not None and not 1 <= top_k <= len(FINDINGS):
        raise ValueError(f"--top-k {top_k}: choose 1 to {len(FINDINGS)}")
    thresholds = thresholds or decision_thresholds(inference)
    errors: list[FileError] = []
    files = list(inference_files(inference, paths, errors, metadata))
    predictions = predict_loaded(inference, files, batch_size=batch_size, thresholds=thresholds)
    maps = maps_in_source_frame(inference, files, accepts_field_of_view(inference), batch_size,
                                 gradcam_step(inference))
    by_image: dict[tuple[str, str], list[nih.Box]] = {}
    for box in boxes:
        by_image.setdefault((box.image_index, box.finding), []).append(box)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for item, prediction, cams in progress(zip(files, predictions, maps), total=len(files), unit="file",
                                           desc="Grad-CAM pictures"):
        gray = images.read_image(item.path)
        for finding in chosen_findings(prediction, thresholds, findings, top_k):
            k = FINDINGS.index(finding)
            probability, threshold = float(prediction.probabilities[k]), float(thresholds.values[k])
            side = "above" if probability >= threshold else "below"
            title = (f"{finding}: p = {probability:.3f} ({os.path.basename(item.path)})\n"
                     f"{side} its operating point {threshold:.3f} ({thresholds.rule})")
            expert = tuple(pictures.Box(b.x, b.y, b.w, b.h, "expert")
                           for b in by_image.get((os.path.basename(item.path), finding), ()))
            target = os.path.join(out_dir, cam_filename(item.path, finding))
            pictures.write_cam_picture(target, gray, cams[k], title, expert)
            written.append(target)
    return written, errors
