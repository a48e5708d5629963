"""Swin Transformer backbones in timm's layout (Liu et al. 2021; timm >= 0.9: patch merging at the start of stages
1..3).

Module names mirror timm's state-dict keys (`layers_1/blocks_0/attn/qkv` ~ `layers.1.blocks.0.attn.qkv`), so weight
import is a plain renaming. The backbone's output is timm's `forward_features` (final LayerNorm applied, NHWC), and
timm's head is global average pooling + `head.fc`, i.e. our `Classifier`: imported models match timm end to end.

Input sizes: the feature map of every stage must be divisible by the window, i.e. image sides that are multiples of
32 x window (224, 448, ... for window 7; 384, 768, ... for window 12). timm pads other sizes inside each block; we
refuse them instead of silently attending to padding. As in timm, a stage whose feature map is no larger than the
window (the last stage at 224 for window 7) does not shift its windows. The relative-position index and the
shifted-window attention mask depend only on static shapes: they are numpy constants built once per shape, not
parameters; the relative-position bias table is a parameter of shape ((2w-1)^2, heads).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cxrjax.models.layers import gelu, layer_norm

# timm initialises every Linear and the relative-position bias table with a truncated normal of std 0.02.
dense_init = nn.initializers.truncated_normal(0.02)


@functools.lru_cache(maxsize=None)
def relative_position_index(window: int) -> np.ndarray:
    """(w², w²) index into the bias table of the relative offset between every pair of tokens in a window."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


@functools.lru_cache(maxsize=None)
def shifted_window_mask(height: int, width: int, window: int, shift: tuple[int, int]) -> np.ndarray:
    """(num_windows, w², w²) additive mask: -100 between tokens that the cyclic shift brought into one window from
    different image regions, 0 elsewhere (timm's values, so that softmax outputs match)."""
    regions = np.zeros((height, width), np.float32)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift[0]), slice(-shift[0], None)):
        for cols in (slice(0, -window), slice(-window, -shift[1]), slice(-shift[1], None)):
            regions[rows, cols] = label
            label += 1
    windows = window_partition(regions[None, :, :, None], window)[..., 0]
    different = windows[:, None, :] != windows[:, :, None]
    return np.where(different, -100.0, 0.0).astype(np.float32)


def window_partition(x, window: int):
    """(B, H, W, C) → (B * num_windows, w², C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows, window: int, height: int, width: int):
    """Inverse of `window_partition`: (B * num_windows, w², C) → (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per relative position and head."""

    num_heads: int
    window: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask: np.ndarray | None):
        batch_windows, tokens, channels = x.shape
        head_dim = channels // self.num_heads
        table = self.param("relative_position_bias_table", dense_init, ((2 * self.window - 1) ** 2, self.num_heads))
        qkv = nn.Dense(3 * channels, dtype=self.dtype, kernel_init=dense_init, name="qkv")(x)
        q, k, v = jnp.moveaxis(qkv.reshape(batch_windows, tokens, 3, self.num_heads, head_dim), 2, 0)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * head_dim**-0.5, k).astype(jnp.float32)
        bias = table[relative_position_index(self.window)]  # (w², w², heads)
        logits = logits + jnp.transpose(bias, (2, 0, 1))
        if mask is not None:
            num_windows = mask.shape[0]
            logits = logits.reshape(-1, num_windows, self.num_heads, tokens, tokens) + mask[None, :, None]
            logits = logits.reshape(batch_windows, self.num_heads, tokens, tokens)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch_windows, tokens, channels)
        return nn.Dense(channels, dtype=self.dtype, kernel_init=dense_init, name="proj")(y)


class Mlp(nn.Module):
    """Linear → exact GELU → Linear (timm's Mlp without dropout)."""

    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = gelu(nn.Dense(self.hidden, dtype=self.dtype, kernel_init=dense_init, name="fc1")(x))
        return nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=dense_init, name="fc2")(y)


class DropPath(nn.Module):
    """Stochastic depth (timm's DropPath): when training, zero a sample's residual branch with probability `rate`
    and scale the kept ones by 1 / (1 - rate). Needs the 'dropout' RNG when training with rate > 0."""

    rate: float

    @nn.compact
    def __call__(self, x, train: bool):
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        kept = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(kept, x / keep, jnp.zeros_like(x))


class SwinBlock(nn.Module):
    """Pre-norm transformer block over (shifted) windows: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    num_heads: int
    window: int
    shift: tuple[int, int]
    drop_path: float = 0.0
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        _, height, width, channels = x.shape
        y = layer_norm(dtype=self.dtype, name="norm1")(x)
        mask = None
        if any(self.shift):
            y = jnp.roll(y, (-self.shift[0], -self.shift[1]), axis=(1, 2))
            mask = shifted_window_mask(height, width, self.window, self.shift)
        y = WindowAttention(self.num_heads, self.window, dtype=self.dtype, name="attn")(
            window_partition(y, self.window), mask)
        y = window_reverse(y, self.window, height, width)
        if any(self.shift):
            y = jnp.roll(y, self.shift, axis=(1, 2))
        x = x + DropPath(self.drop_path)(y, train)
        y = Mlp(int(channels * self.mlp_ratio), dtype=self.dtype, name="mlp")(
            layer_norm(dtype=self.dtype, name="norm2")(x))
        return x + DropPath(self.drop_path)(y, train)


class PatchMerging(nn.Module):
    """Each 2x2 neighbourhood stacked into 4C channels, then LayerNorm and a bias-free Linear 4C → 2C.

    The channel order is what pretrained `reduction` weights expect: timm reshapes to (B, H/2, 2, W/2, 2, C) and
    permutes to (B, H/2, W/2, col, row, C), so the four C-channel groups are x[0::2, 0::2], x[1::2, 0::2],
    x[0::2, 1::2], x[1::2, 1::2] (the original Swin's x0, x1, x2, x3).
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        x = layer_norm(dtype=self.dtype, name="norm")(x)
        return nn.Dense(2 * c, use_bias=False, dtype=self.dtype, kernel_init=dense_init, name="reduction")(x)


class SwinStage(nn.Module):
    """Optional patch merging, then `depth` blocks alternating regular and shifted windows."""

    depth: int
    num_heads: int
    window: int
    downsample: bool
    drop_paths: Sequence[float]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        if self.downsample:
            x = PatchMerging(dtype=self.dtype, name="downsample")(x)
        _, height, width, _ = x.shape
        # timm: a feature map no larger than the window is one window; shifting it would only wrap it around.
        shift = tuple(0 if size <= self.window else self.window // 2 for size in (height, width))
        for i in range(self.depth):
            block_shift = shift if i % 2 else (0, 0)
            x = SwinBlock(self.num_heads, self.window, block_shift, self.drop_paths[i], dtype=self.dtype,
                          name=f"blocks_{i}")(x, train)
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping patch×patch convolution to `embed_dim` channels, then LayerNorm."""

    embed_dim: int
    patch_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        p = self.patch_size
        x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="proj")(x)
        return layer_norm(dtype=self.dtype, name="norm")(x)


class SwinTransformer(nn.Module):
    """Swin backbone: image (N, H, W, 3) → final-normed feature map (N, H/32, W/32, 8 * embed_dim).

    `drop_path_rate` is the stochastic-depth rate of the last block, growing linearly from 0 over all blocks as in
    timm (timm's models default to 0.1; here the default is off so that inference needs no RNG).
    """

    embed_dim: int
    depths: Sequence[int]
    num_heads: Sequence[int]
    window: int = 7
    patch_size: int = 4
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        multiple = self.patch_size * 2 ** (len(self.depths) - 1) * self.window
        if x.shape[1] % multiple or x.shape[2] % multiple:
            raise ValueError(f"Swin with window {self.window} needs image sides that are multiples of {multiple}, "
                             f"got {x.shape[1]}x{x.shape[2]}")
        x = PatchEmbed(self.embed_dim, self.patch_size, dtype=self.dtype, name="patch_embed")(x.astype(self.dtype))
        rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        first = 0
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            x = SwinStage(depth, heads, self.window, downsample=i > 0, drop_paths=tuple(rates[first:first + depth]),
                          dtype=self.dtype, name=f"layers_{i}")(x, train)
            first += depth
        return layer_norm(dtype=self.dtype, name="norm")(x)


SwinTiny = functools.partial(SwinTransformer, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
SwinSmall = functools.partial(SwinTransformer, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SwinBase = functools.partial(SwinTransformer, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
SwinBase384 = functools.partial(SwinBase, window=12)
