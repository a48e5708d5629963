"""Layers that behave exactly like their PyTorch counterparts, so that imported torchvision/timm weights give the
same activations.

Why: Flax's 'SAME' padding is asymmetric for stride 2 (it pads more at the end), PyTorch pads symmetrically;
BatchNorm's defaults differ (torch momentum 0.1 == Flax momentum 0.9, eps 1e-5) and torch updates the running
variance with the unbiased batch variance; LayerNorm's eps is 1e-5 in torch, 1e-6 in Flax; torch's GELU is exact.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_padding(kernel_size: int, padding: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric padding as torch's `Conv2d(..., padding=p)`; default p = kernel_size // 2."""
    p = kernel_size // 2 if padding is None else padding
    return ((p, p), (p, p))


def conv(features: int, kernel_size: int, stride: int = 1, padding: int | None = None, *, use_bias: bool = False,
         dtype=None, name: str | None = None) -> nn.Conv:
    """A 2-D convolution with torch's symmetric padding."""
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride),
                   padding=torch_padding(kernel_size, padding), use_bias=use_bias, dtype=dtype, name=name)


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm2d (momentum 0.1, eps 1e-5) over the last axis, with Flax's variable names.

    Flax's `nn.BatchNorm` would give the same outputs, but it updates the running variance with the biased batch
    variance; torch uses the unbiased one (x n/(n-1)), which matters for small feature maps (n = 98 for 7x7 at batch
    2). Statistics are reduced in float32 whatever `dtype`; under `jit` with globally sharded batches they are global.
    """

    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axes)
            var = jnp.mean(jnp.square(x32 - mean), axes)
            if not self.is_initializing():
                count = x.size // features
                unbiased_var = var * (count / max(count - 1, 1))
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * unbiased_var
        multiplier = jax.lax.rsqrt(var + self.epsilon) * scale.astype(jnp.float32)
        y = (x32 - mean) * multiplier + bias.astype(jnp.float32)
        return y.astype(self.dtype or x.dtype)


def batch_norm(train: bool, *, dtype=None, name: str | None = None) -> BatchNorm:
    """torch.nn.BatchNorm2d: batch statistics when training, running statistics otherwise."""
    return BatchNorm(use_running_average=not train, dtype=dtype, name=name)


def layer_norm(*, dtype=None, name: str | None = None) -> nn.LayerNorm:
    """torch.nn.LayerNorm's eps (1e-5; Flax's default is 1e-6)."""
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, name=name)


gelu = functools.partial(nn.gelu, approximate=False)
"""torch.nn.GELU(): the exact erf form (Flax's default is the tanh approximation)."""


def max_pool(x, kernel_size: int, stride: int, padding: int):
    """torch.nn.MaxPool2d: symmetric padding with -inf (Flax's max_pool pads with -inf too)."""
    return nn.max_pool(x, (kernel_size, kernel_size), (stride, stride), padding=torch_padding(kernel_size, padding))


avg_pool = functools.partial(nn.avg_pool, count_include_pad=True)
