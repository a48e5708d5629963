"""Device-side input normalisation: uint8 grayscale pixels → float ImageNet-normalised 3-channel images.

Why on the device: shards and host batches stay uint8 (4x less host memory and host→device traffic than float32), and
the ImageNet stems of every backbone expect 3 channels normalised with ImageNet's mean/std. A grayscale X-ray is fed
as R = G = B, each channel normalised with its own ImageNet statistics: exactly what torchvision's
`Grayscale(num_output_channels=3)` + `Normalize(IMAGENET_MEAN, IMAGENET_STD)` gives the PyTorch clones.
"""

from __future__ import annotations

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images, dtype=jnp.float32):
    """(N, H, W, 1 or 3) uint8 → (N, H, W, 3) `dtype`, computed in float32 then cast."""
    x = images.astype(jnp.float32) / 255.0
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, x.shape[:-1] + (3,))
    x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
    return x.astype(dtype)
