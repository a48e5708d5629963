"""Device-side input scaling: uint8 grayscale pixels → the float images a model was trained on.

Why on the device: shards and host batches stay uint8 (4x less host memory and host→device traffic than float32).
Why a choice (`config.model.input`, a key of `INPUTS`): a model's first layer is only meaningful on the inputs its
weights were learned from, so the scaling is part of the model, saved with its config and used by training,
evaluation, prediction and Grad-CAM alike:

- "imagenet": the ImageNet stems of torchvision/timm expect 3 channels normalised with ImageNet's mean/std. A
  grayscale X-ray is fed as R = G = B, each channel normalised with its own statistics: exactly what torchvision's
  `Grayscale(num_output_channels=3)` + `Normalize(IMAGENET_MEAN, IMAGENET_STD)` gives the PyTorch clones.
- "xrv": torchxrayvision's chest X-ray models take one channel scaled to [−1024, 1024]
  (`xrv.datasets.normalize(img, 255)`: (2 · p / 255 − 1) · 1024, computed in float32 as there).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
XRV_RANGE = 1024.0  # torchxrayvision's models see pixels in [−XRV_RANGE, XRV_RANGE]


@dataclasses.dataclass(frozen=True)
class InputScaling:
    channels: int  # the model's input channels
    description: str  # for messages and help


INPUTS = {
    "imagenet": InputScaling(3, "3 channels (R = G = B), ImageNet mean/std"),
    "xrv": InputScaling(1, "1 channel scaled to [−1024, 1024] (torchxrayvision)"),
}


def input_scaling(name: str) -> InputScaling:
    if name not in INPUTS:
        raise ValueError(f"unknown model input {name!r}; choose one of {', '.join(INPUTS)}")
    return INPUTS[name]


def normalize(images, dtype=jnp.float32, scaling: str = "imagenet"):
    """(N, H, W, 1) uint8 → (N, H, W, channels of `scaling`) `dtype`, computed in float32 then cast.

    A 3-channel uint8 input is accepted for "imagenet" (each channel normalised with its own statistics)."""
    channels = input_scaling(scaling).channels
    x = images.astype(jnp.float32) / 255.0
    if scaling == "xrv":
        if x.shape[-1] != 1:
            raise ValueError(f"the xrv input takes grayscale images (1 channel), not {x.shape[-1]} channels")
        return ((2.0 * x - 1.0) * XRV_RANGE).astype(dtype)
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, x.shape[:-1] + (channels,))
    x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
    return x.astype(dtype)
