"""Heads that turn a backbone's feature map into named logits.

Every model returns a dict of named float32 logits (`{"logits": ...}` for a plain classifier), so that multi-head
methods (F-MSML, CAN) and the loss composition `{head: (loss, weight)}` share one contract:

    model.apply(variables, images, metadata=None, train=False, ...) -> {head: float32 [B, num_classes]}

`images` are normalised float NHWC; `metadata` is None or `{"age": float32 [B] years, "sex": int32 [B] (0 M, 1 F),
"view": int32 [B] (0 PA, 1 AP)}`. Only `MetadataClassifier` reads it; every other model accepts and ignores it, so
one train step serves all of them.

Here: global-average-pooling heads, metadata fusion (Baltruschat 2019 "meta") and bilinear pooling (Ge 2018). The
models with two backbones (F-MSML, CAN) are in `multistream.py`.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

AGE_SCALE = 100.0  # years → the age feature: age / 100, clipped to [0, 1]
METADATA_FEATURES = 5  # age, one-hot sex (2), one-hot view position (2)
SIGNED_SQRT_EPS = 1e-8  # floor inside the signed square root's derivative (see `signed_sqrt`)
L2_EPS = 1e-12  # as torch.nn.functional.normalize: vectors shorter than this are divided by it instead


def gap_logits(features, num_classes: int, dtype, name: str):
    """Global average pooling, then a dense layer `name`; float32 logits whatever the compute dtype.

    Call inside a compact module: the dense layer becomes that module's child `name`.
    """
    pooled = jnp.mean(features, axis=(1, 2))
    return nn.Dense(num_classes, dtype=dtype, name=name)(pooled).astype(jnp.float32)


class Classifier(nn.Module):
    """backbone → global average pooling → dense 'fc', logits in float32 whatever the compute dtype.

    The parameter names ('backbone', 'fc') are those of `weights.from_torch` and of existing checkpoints. `metadata`
    is accepted and ignored (the common call contract).
    """

    backbone: nn.Module
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        features = self.backbone(x, train=train)
        return {"logits": gap_logits(features, self.num_classes, self.dtype, name="fc")}


def example_metadata(batch_size: int) -> dict[str, jax.Array]:
    """Metadata of the right dtypes and shapes (all zeros), e.g. for `model.init`."""
    return {"age": jnp.zeros((batch_size,), jnp.float32), "sex": jnp.zeros((batch_size,), jnp.int32),
            "view": jnp.zeros((batch_size,), jnp.int32)}


def encode_metadata(metadata: Mapping[str, Any]) -> jax.Array:
    """float32 [B, 5]: [age / 100 clipped to [0, 1], one-hot sex (M, F), one-hot view (PA, AP)].

    Codes as in `cxrjax.data.nih.SEXES` / `VIEWS` (the batches' 'sex' and 'view'). Why this encoding: age in years
    divided by 100 is of the order of the pooled ReLU features it is concatenated with; the clip bounds the few
    impossible ages of the 2017 CSV (data-entry errors of several hundred years) at 100. Sex and view are
    categories, so one-hot rather than 0/1: each value gets its own weight, and a code outside {0, 1} (e.g. -1 for
    unknown) encodes as all zeros instead of an out-of-range number.
    """
    age = jnp.clip(jnp.asarray(metadata["age"], jnp.float32) / AGE_SCALE, 0.0, 1.0)
    sex = jax.nn.one_hot(metadata["sex"], 2, dtype=jnp.float32)
    view = jax.nn.one_hot(metadata["view"], 2, dtype=jnp.float32)
    return jnp.concatenate([age[:, None], sex, view], axis=-1)


class MetadataClassifier(nn.Module):
    """Baltruschat et al. 2019 "meta": backbone → global average pooling → concatenate `encode_metadata` → dense 'fc'.

    As read here: the available text says only that age, gender and view position are fused with the image features;
    where (here: right before the classifier) and how they are encoded (`encode_metadata`) are our choices. The
    non-image features join the image features right before the last (and only) dense layer, so the classifier
    weighs age, sex and view position against the image evidence; 'fc' has C + 5 inputs (fresh when importing
    ImageNet weights; the backbone keeps the name 'backbone', see `models.load_backbone`). Metadata is required: a
    missing dict raises rather than silently fusing zeros (for `init`, pass `example_metadata`).
    """

    backbone: nn.Module
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        if metadata is None:
            raise ValueError("MetadataClassifier needs metadata {'age', 'sex', 'view'} (for init: example_metadata)")
        pooled = jnp.mean(self.backbone(x, train=train), axis=(1, 2))
        fused = jnp.concatenate([pooled, encode_metadata(metadata).astype(pooled.dtype)], axis=-1)
        return {"logits": nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(fused).astype(jnp.float32)}


LSE_SHARPNESS = 10.0  # Wang et al. 2017's best r


def lse_pool(x, sharpness: float = LSE_SHARPNESS):
    """Log-sum-exp pooling over the spatial axes (Wang et al. 2017): [B, H, W, C] → float32 [B, C],

        x_p = x* + (1 / r) log[(1 / HW) Σ_ij exp(r (x_ij − x*))],  x* = max_ij x_ij,

    between average pooling (r → 0) and max pooling (r → ∞). The max is subtracted inside, as Wang do, so that
    exp never overflows; computed in float32."""
    x = x.astype(jnp.float32)
    peak = jax.lax.stop_gradient(jnp.max(x, axis=(1, 2)))
    shifted = sharpness * (x - peak[:, None, None, :])
    return peak + (jax.nn.logsumexp(shifted, axis=(1, 2)) - jnp.log(x.shape[1] * x.shape[2])) / sharpness


class LSEClassifier(nn.Module):
    """Wang et al. 2017's classifier: backbone → transition layer → LSE pooling → dense 'fc'.

    The transition layer maps the backbone's last feature map to "a uniform dimension" D at each location; the
    paper names neither its kernel nor its activation. As read here: a 1×1 convolution with bias to D = the
    backbone's width (2048 for ResNet-50, as the paper's D) followed by ReLU, so that LSE pools non-negative
    evidence as the backbone's own ReLU maps are. LSE pooling with r = `sharpness` (10, the paper's best)."""

    backbone: nn.Module
    num_classes: int
    sharpness: float = LSE_SHARPNESS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        features = self.backbone(x, train=train)
        transition = nn.relu(nn.Conv(features.shape[-1], (1, 1), dtype=self.dtype, name="transition")(features))
        pooled = lse_pool(transition, self.sharpness)
        return {"logits": nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)}


@jax.custom_jvp
def signed_sqrt(x):
    """sign(x) √|x|, with the derivative 1 / (2 √(|x| + eps)) instead of 1 / (2 √|x|).

    Why: bilinear features of ReLU maps are often exactly 0 (a channel silent over the whole image), where the true
    derivative is infinite and sign(0) · ∞ gives NaN. Flooring the denominator, as bilinear-CNN implementations do,
    keeps the forward value exact and the gradient finite (at most 1 / (2 √eps) = 5000).
    """
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


@signed_sqrt.defjvp
def _signed_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return signed_sqrt(x), t * 0.5 * jax.lax.rsqrt(jnp.abs(x) + SIGNED_SQRT_EPS)


def l2_normalize(x):
    """x / max(‖x‖, eps) over the last axis, with finite gradients at x = 0 (no √ of 0 is differentiated)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), L2_EPS**2))


def bilinear_pool(a, b):
    """Ge et al. 2018 / Lin et al. 2015 bilinear feature: float32 [B, Ca * Cb] from a [B, H, W, Ca], b [B, H, W, Cb].

    The outer product a(h, w) b(h, w)ᵀ averaged over the H·W locations (one einsum, accumulated in float32 whatever
    the inputs' dtype), flattened row-major (index i * Cb + j), then signed square root and L2 normalisation.
    """
    height, width = a.shape[1:3]
    outer = jnp.einsum("bhwi,bhwj->bij", a, b, preferred_element_type=jnp.float32) / (height * width)
    return l2_normalize(signed_sqrt(outer.reshape(outer.shape[0], -1)))


def match_spatial(a, b):
    """a and b at a common spatial size: the larger map resized (antialiased bilinear) to the smaller one's H, W.

    Every backbone here has stride 32, so two of them see the same map size for one image; sizes differ only for
    differently sized inputs or a custom backbone. Downsizing the finer map loses nothing the coarser one has, and
    the antialiasing makes it an area-like average rather than a subsampling.
    """
    if a.shape[1:3] == b.shape[1:3]:
        return a, b
    size = min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2])

    def resize(x):
        if x.shape[1:3] == size:
            return x
        return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), method="linear", antialias=True)

    return resize(a), resize(b)


def conv1x1(features: int, dtype, name: str) -> nn.Conv:
    """A learned 1x1 convolution with bias: a per-location linear map of the channels."""
    return nn.Conv(features, (1, 1), dtype=dtype, name=name)


class BilinearHead(nn.Module):
    """Bilinear pooling → dense 'fc' (the paper's 1x1 conv on the pooled 1x1 map) → float32 logits.

    `head(a, b)` pools two maps (F-MSML's two streams); `head(a)` pools a map with itself (the "BL" networks).
    Maps of different spatial sizes are aligned by `match_spatial`.

    `reduce_channels`: None keeps the full Ca * Cb vector (Ge's setting: 512² = 262,144 for ResNet-18 and VGG-16,
    1024² = 1,048,576 for DenseNet-121, i.e. a 14.7M-parameter 'fc'). An integer k first maps each side by a learned
    linear 1x1 conv to k channels ('reduce1', 'reduce2'; one shared 'reduce' for a self-bilinear head, which keeps
    its feature symmetric), so the vector is k² wide: a low-rank bilinear model, for memory or speed.
    """

    num_classes: int
    reduce_channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, a, b=None):
        def reduce(x, name):
            return x if self.reduce_channels is None else conv1x1(self.reduce_channels, self.dtype, name)(x)

        if b is None:
            a = b = reduce(a, "reduce")
        else:
            a, b = match_spatial(reduce(a, "reduce1"), reduce(b, "reduce2"))
        pooled = bilinear_pool(a, b).astype(self.dtype)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)


class SelfBilinear(nn.Module):
    """Ge's "BL" networks (R18-BL, D121-BL): ONE backbone, its final map bilinearly pooled with itself → {'fce'}.

    The head is named 'fce' like F-MSML's bilinear head, since it is the same head on a single stream.
    """

    backbone: nn.Module
    num_classes: int
    reduce_channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        features = self.backbone(x, train=train)
        return {"fce": BilinearHead(self.num_classes, self.reduce_channels, self.dtype, name="fce")(features)}
