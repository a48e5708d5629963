"""VGG backbones in torchvision's layout (Simonyan & Zisserman 2015), with or without BatchNorm.

The backbone is torchvision's `features` (the conv stack, final feature map at stride 32); torchvision's
`classifier` (7x7 adaptive pooling, then a 25088-4096-4096-1000 MLP) is not part of it: our heads pool globally and
apply one dense layer, and weight import skips `classifier.*` explicitly. Each module is named after its index in
torchvision's `features` Sequential (`features_3` ~ `features.3`; ReLUs and pools hold an index but no weights).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cxrjax.models.layers import batch_norm, conv, max_pool

POOL = "M"

CONFIGS = {
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
}


class VGG(nn.Module):
    """VGG `features`: image (N, H, W, 3) → (N, H/32, W/32, 512) after pool5; any H, W ≥ 32.

    `final_pool=False` ends at the last convolutional layer's ReLU instead (conv5_3 for VGG-16: H/16 × W/16, 14×14 at
    224²), the map Ge et al. 2018 pool bilinearly (`models.LAST_CONV_LAYER`). pool5 has no weights, so both read
    the same variables."""

    config: Sequence[int | str]
    with_batch_norm: bool
    dtype: Any = jnp.float32
    final_pool: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        index = 0
        for position, item in enumerate(self.config):
            if item == POOL:
                if position == len(self.config) - 1 and not self.final_pool:
                    break
                x = max_pool(x, 2, 2, 0)
                index += 1
                continue
            x = conv(item, 3, use_bias=True, dtype=self.dtype, name=f"features_{index}")(x)
            index += 1
            if self.with_batch_norm:
                x = batch_norm(train, dtype=self.dtype, name=f"features_{index}")(x)
                index += 1
            x = nn.relu(x)
            index += 1
        return x


VGG16 = functools.partial(VGG, config=CONFIGS[16], with_batch_norm=False)
VGG16BN = functools.partial(VGG, config=CONFIGS[16], with_batch_norm=True)
VGG19 = functools.partial(VGG, config=CONFIGS[19], with_batch_norm=False)
VGG19BN = functools.partial(VGG, config=CONFIGS[19], with_batch_norm=True)
