"""ResNet backbones in torchvision's layout (He et al. 2016; torchvision's v1.5: stride on the 3x3 conv).

Module names mirror torchvision's state-dict keys (`layer1_0.conv1` ~ `layer1.0.conv1`) so weight import is a plain
renaming. The backbone maps an NHWC image to its final NHWC feature map; heads live in `heads.py`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cxrjax.models.layers import batch_norm, conv, max_pool


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        y = conv(self.features, 3, self.stride, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn2")(y)
        return nn.relu(y + _shortcut(x, y.shape[-1], self.stride, train, self.dtype))


class Bottleneck(nn.Module):
    """1x1 → 3x3 (strided) → 1x1 with 4x expansion (ResNet-50/101/152)."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        y = conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = conv(self.features, 3, self.stride, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = conv(self.features * self.expansion, 1, dtype=self.dtype, name="conv3")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn3")(y)
        return nn.relu(y + _shortcut(x, y.shape[-1], self.stride, train, self.dtype))


def _shortcut(x, features: int, stride: int, train: bool, dtype):
    """Identity, or torchvision's `downsample` (1x1 strided conv + BN) when the shape changes."""
    if x.shape[-1] == features and stride == 1:
        return x
    x = conv(features, 1, stride, dtype=dtype, name="downsample_conv")(x)
    return batch_norm(train, dtype=dtype, name="downsample_bn")(x)


class ResNet(nn.Module):
    """ResNet backbone: image (N, H, W, 3) → final feature map (N, H/32, W/32, C)."""

    stage_sizes: Sequence[int]
    block_cls: type[nn.Module]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(64, 7, 2, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        x = max_pool(x, 3, 2, 1)
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = self.block_cls(64 * 2**stage, stride, dtype=self.dtype, name=f"layer{stage + 1}_{block}")(x, train)
        return x


# READING of Baltruschat et al. 2019's (Sci Rep 9:6381) ResNet-38, whose layout is not in the available text: He et
# al.'s bottleneck design at 38 weighted layers (the stem, 3 per block, the classifier: 2 + 3 x 12), ResNet-50's
# (3, 4, 6, 3) blocks per stage scaled by 12/16 and rounded to 12 in all. Not Wu et al.'s wide "ResNet-38" (2016), a
# different network; no ImageNet weights exist for it, so it trains from scratch.
ResNet38 = functools.partial(ResNet, stage_sizes=(2, 3, 5, 2), block_cls=Bottleneck)
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)
