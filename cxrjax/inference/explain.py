"""Grad-CAM (Selvaraju et al. 2017) of every finding over the backbone's final feature map, and overlay PNGs.

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

import os
from typing import Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from cxrjax.data import images
from cxrjax.data.findings import FINDINGS, NUM_FINDINGS
from cxrjax.inference.predict import FileError, Metadata, inference_files, metadata_batch, padded_batches
from cxrjax.models import Layer, architecture_of
from cxrjax.models.preprocess import normalize

OVERLAY_OPACITY = 0.6  # colour weight where the map is at its maximum; the radiograph shows through elsewhere


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


def make_gradcam_step(model, dtype, predict_head: str = "logits", layer=None):
    """`step(variables, images uint8 (N, H, W, 1), metadata=None) -> {"cam": (N, 14, H, W), "probabilities":
    (N, 14)}`, float32, jitted. Maps are non-negative and unscaled (`scale_map` them to show or threshold them).
    `metadata` ({"age", "sex", "view"} arrays (N,)) is for the metadata-fusion model, which needs it. `layer`: the
    submodule path whose output is explained, or several whose maps are summed; default `default_layers(model)`."""
    layers = _layers(model, layer)

    @jax.jit
    def step(variables, images, metadata=None):
        x = normalize(images, dtype)
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
    return make_gradcam_step(inference.model, inference.dtype, inference.config.model.predict_head, layer)


def scale_map(heatmap: np.ndarray) -> np.ndarray:
    """A map min-max scaled to 0..1 (all zeros if it is flat): Grad-CAM maps carry an offset shared by the whole
    image, and what is shown or thresholded is where the map stands out of it."""
    low, high = float(heatmap.min()), float(heatmap.max())
    return np.zeros(heatmap.shape, np.float32) if high <= low else ((heatmap - low) / (high - low)).astype(np.float32)


def overlay(gray: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 (H, W) radiograph + (H, W) map → uint8 (H, W, 3): the scaled map in the jet colour map, blended in
    proportion to its value so that cold regions show the radiograph unchanged."""
    from matplotlib import colormaps

    heat = scale_map(heatmap)
    colour = colormaps["jet"](heat)[..., :3] * 255.0
    alpha = (OVERLAY_OPACITY * heat)[..., None]
    blended = (1.0 - alpha) * gray[..., None].astype(np.float32) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def cam_filename(path: str, finding: str) -> str:
    """`<image stem>_<finding>.png`."""
    return f"{os.path.splitext(os.path.basename(path))[0]}_{finding}.png"


def write_cam_overlays(inference, paths: Iterable[str], out_dir: str, *, findings: Sequence[str] = FINDINGS,
                       batch_size: int = 8, metadata: Metadata | None = None) -> tuple[list[str], list[FileError]]:
    """For each readable file and finding, OUT_DIR/<image stem>_<finding>.png: the Grad-CAM map, taken back to the
    file's own frame (nothing outside the centre crop the model sees), over the file's own pixels.

    `metadata` as for `cxrjax.inference.predict.predict_files` (age, sex, view for a model that reads them; DICOM tags
    fill what is not given; `MissingMetadata` for a file left without). Returns the written paths and one error per
    unreadable file.
    """
    unknown = sorted(set(findings) - set(FINDINGS))
    if unknown:
        raise ValueError(f"unknown findings {unknown}; choose from {', '.join(FINDINGS)}")
    os.makedirs(out_dir, exist_ok=True)
    data = inference.config.data
    step = gradcam_step(inference)
    written, errors = [], []
    for files, batch in padded_batches(inference_files(inference, paths, errors, metadata), batch_size):
        cams = np.asarray(step(inference.variables, batch, metadata_batch(files, batch_size))["cam"])
        for item, maps in zip(files, cams):
            gray = images.read_image(item.path)
            for finding in findings:
                heat = images.map_to_source(maps[FINDINGS.index(finding)], item.source_size, data.size)
                target = os.path.join(out_dir, cam_filename(item.path, finding))
                Image.fromarray(overlay(gray, heat)).save(target)
                written.append(target)
    return written, errors
