"""DenseNet-BC backbones in torchvision's layout (Huang et al. 2017; CheXNet's DenseNet-121).

Module names mirror torchvision's state-dict keys below `features.` (`denseblock1/denselayer1/norm1` ~
`features.denseblock1.denselayer1.norm1`), so weight import is a plain renaming. The backbone ends with torchvision's
`norm5` and the ReLU that torchvision applies in `DenseNet.forward`, so its feature map equals torchvision's
`F.relu(model.features(x))`, the input of the global pooling.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cxrjax.models.layers import avg_pool, batch_norm, conv, max_pool


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck (bn_size * growth_rate) then BN-ReLU-3x3 conv, giving growth_rate new channels.

    Takes the list of all previous feature maps and concatenates them itself (as torchvision does), so that a
    rematerialised layer does not keep the concatenation alive for the backward pass.
    """

    growth_rate: int
    bn_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Sequence[Any], train: bool):
        x = jnp.concatenate(inputs, axis=-1)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="norm1")(x))
        x = conv(self.bn_size * self.growth_rate, 1, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="norm2")(x))
        return conv(self.growth_rate, 3, dtype=self.dtype, name="conv2")(x)


class DenseBlock(nn.Module):
    """`num_layers` dense layers, each seeing the concatenation of the block input and all earlier layers' outputs.

    With `remat`, each layer is recomputed in the backward pass instead of storing its activations (torchvision's
    `memory_efficient=True`): the stored activations of a block then grow linearly, not quadratically, with depth.
    """

    num_layers: int
    growth_rate: int
    bn_size: int
    remat: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        layer_cls = nn.remat(DenseLayer, static_argnums=(2,)) if self.remat else DenseLayer
        features = [x]
        for i in range(self.num_layers):
            layer = layer_cls(self.growth_rate, self.bn_size, dtype=self.dtype, name=f"denselayer{i + 1}")
            features.append(layer(features, train))
        return jnp.concatenate(features, axis=-1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling halving the resolution."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="norm")(x))
        x = conv(self.features, 1, dtype=self.dtype, name="conv")(x)
        return avg_pool(x, (2, 2), (2, 2))


class DenseNet(nn.Module):
    """DenseNet backbone: image (N, H, W, 3) → ReLU(norm5(features)) (N, H/32, W/32, C); any H, W ≥ 32."""

    growth_rate: int
    block_config: Sequence[int]
    num_init_features: int
    bn_size: int = 4
    remat: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(self.num_init_features, 7, 2, dtype=self.dtype, name="conv0")(x.astype(self.dtype))
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="norm0")(x))
        x = max_pool(x, 3, 2, 1)
        channels = self.num_init_features
        for i, num_layers in enumerate(self.block_config):
            x = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.remat, dtype=self.dtype,
                           name=f"denseblock{i + 1}")(x, train)
            channels += num_layers * self.growth_rate
            if i != len(self.block_config) - 1:
                channels //= 2
                x = Transition(channels, dtype=self.dtype, name=f"transition{i + 1}")(x, train)
        return nn.relu(batch_norm(train, dtype=self.dtype, name="norm5")(x))


DenseNet121 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64)
DenseNet161 = functools.partial(DenseNet, growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96)
DenseNet169 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64)
DenseNet201 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64)
