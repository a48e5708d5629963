"""Layers that behave exactly like their PyTorch counterparts, so that imported torchvision/timm weights give the
same activations.

Why: Flax's 'SAME' padding is asymmetric for stride 2 (it pads more at the end), PyTorch pads symmetrically;
BatchNorm's defaults differ (torch momentum 0.1 == Flax momentum 0.9, eps 1e-5).
"""

from __future__ import annotations

import functools

import flax.linen as nn


def torch_padding(kernel_size: int, padding: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric padding as torch's `Conv2d(..., padding=p)`; default p = kernel_size // 2."""
    p = kernel_size // 2 if padding is None else padding
    return ((p, p), (p, p))


def conv(features: int, kernel_size: int, stride: int = 1, padding: int | None = None, *, use_bias: bool = False,
         dtype=None, name: str | None = None) -> nn.Conv:
    """A 2-D convolution with torch's symmetric padding."""
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride),
                   padding=torch_padding(kernel_size, padding), use_bias=use_bias, dtype=dtype, name=name)


def batch_norm(train: bool, *, dtype=None, name: str | None = None) -> nn.BatchNorm:
    """torch.nn.BatchNorm2d's defaults (momentum 0.1, eps 1e-5) in Flax's convention."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


def max_pool(x, kernel_size: int, stride: int, padding: int):
    """torch.nn.MaxPool2d: symmetric padding with -inf (Flax's max_pool pads with -inf too)."""
    return nn.max_pool(x, (kernel_size, kernel_size), (stride, stride), padding=torch_padding(kernel_size, padding))


avg_pool = functools.partial(nn.avg_pool, count_include_pad=True)
