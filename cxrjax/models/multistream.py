"""Models with two backbones: Ge et al. 2018's two-stream F-MSML network and Ma, Wang & Hoi 2019's Cross-Attention
Network (CAN). Both follow the call contract of `heads.py` (metadata accepted and ignored) and return several named
heads, one per loss term of their paper.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from cxrjax.models.heads import BilinearHead, conv1x1, gap_logits, match_spatial

ATTENTION_EPS = 1e-6  # keeps an all-zero (dead) map's normalisation finite; such a map comes out as zeros


class FMSML(nn.Module):
    """Ge et al. 2018's F-MSML: two streams of one architecture, three heads.

      stream1 → global average pooling → dense → 'ce'    (trained with cross-entropy, E_CE)
      stream2 → global average pooling → dense → 'msml'  (trained with the multi-label softmax loss, E_MSML)
      bilinear pooling of both final maps → dense → 'fce' (the fused cross-entropy, E_FCE)

    The paper's total is α(E_MSML + E_CE) + β E_FCE with α = 0.2, β = 0.6. The two streams are separate modules
    ('stream1', 'stream2') with separate parameters: different losses make them learn different features, which the
    bilinear head then combines.

    Initial weights: the paper starts both streams from the same (ImageNet) weights. Flax's `init` draws each
    module's parameters from its own RNG stream, so `model.init` alone gives two different streams; `tie_streams`
    copies stream1's variables into stream2, and `models.init_variables` applies it. With imported weights use
    `models.load_backbone(variables, imported, into=("stream1", "stream2"))`.
    """

    stream1: nn.Module
    stream2: nn.Module
    num_classes: int
    reduce_channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        features1 = self.stream1(x, train=train)
        features2 = self.stream2(x, train=train)
        return {
            "ce": gap_logits(features1, self.num_classes, self.dtype, name="ce"),
            "msml": gap_logits(features2, self.num_classes, self.dtype, name="msml"),
            "fce": BilinearHead(self.num_classes, self.reduce_channels, self.dtype, name="fce")(features1, features2),
        }


def tie_streams(variables: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` with 'stream2' replaced by a copy of 'stream1' in every collection (params and batch_stats).

    A pure function on the variable dict (usable inside `jit`/`eval_shape`). A copy, not the same arrays: a train
    step that donates its state cannot take two leaves backed by one buffer. Raises ValueError if the two streams do
    not have the same structure and shapes (then they cannot share weights).
    """
    tied = {}
    for collection, tree in variables.items():
        tree = dict(tree)
        if "stream1" in tree:
            shapes = [jax.tree.map(jnp.shape, tree[name]) for name in ("stream1", "stream2")]
            if shapes[0] != shapes[1]:
                raise ValueError(f"stream1 and stream2 differ in {collection!r}; they cannot share initial weights")
            tree["stream2"] = jax.tree.map(lambda value: value.copy(), tree["stream1"])
        tied[collection] = tree
    return tied


class CrossAttention(nn.Module):
    """The cross-attention block of CAN (an interpretation: see `CrossAttentionNetwork`).

    Each map is projected by a learned 1x1 conv + ReLU to `channels` ('proj1', 'proj2'), the two are brought to one
    spatial size (`match_spatial`), multiplied elementwise (Hadamard product), average-pooled and classified by dense
    'fc'. Returns float32 logits [B, num_classes] and the spatial attention maps float32 [B, 2, H*W] of the two
    projected maps (channel mean, normalised to sum 1 over locations).
    """

    num_classes: int
    channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features1, features2):
        channels = self.channels or min(features1.shape[-1], features2.shape[-1])
        projected1 = nn.relu(conv1x1(channels, self.dtype, "proj1")(features1))
        projected2 = nn.relu(conv1x1(channels, self.dtype, "proj2")(features2))
        projected1, projected2 = match_spatial(projected1, projected2)
        logits = gap_logits(projected1 * projected2, self.num_classes, self.dtype, name="fc")
        attention = jnp.stack([spatial_attention(projected1), spatial_attention(projected2)], axis=1)
        return logits, attention


def spatial_attention(features):
    """float32 [B, H*W]: a non-negative map's channel mean, normalised to a distribution over locations."""
    energy = jnp.mean(features.astype(jnp.float32), axis=-1).reshape(features.shape[0], -1)
    return energy / (jnp.sum(energy, axis=-1, keepdims=True) + ATTENTION_EPS)


class CrossAttentionNetwork(nn.Module):
    """Ma, Wang & Hoi 2019 (CAN), as interpreted here; the paper's text is not available to this project.

    What is known: two networks; "cross-attention" is the Hadamard product of their feature maps, meant to remove
    attention noise; loss = cross-entropy + an attention loss + a multi-label balance loss. Assumed here:

      * Branches: two backbones 'branch1', 'branch2', any registered architectures (equal or different), each with
        Flax's independent initialisation (no weight tying: the point is two *different* views of the image).
      * Per-branch heads: each branch's map → global average pooling → dense ('branch1_fc', 'branch2_fc') →
        outputs 'branch1', 'branch2', so that each branch gets its own cross-entropy and learns a useful map by itself
        (our reading of "cross-entropy" next to the fused loss).
      * Cross-attention ('cross', see `CrossAttention`): both maps to a common channel count by 1x1 conv + ReLU
        (`channels`; default the smaller of the two branch widths), to a common spatial size, then their Hadamard
        product. The ReLU keeps both maps non-negative, so the product is large only where BOTH networks respond:
        a soft AND that suppresses what only one of them sees (the "attention noise"); with signed maps the product
        would have no such meaning. The product is average-pooled and classified → output 'logits' (the prediction).
      * Attention loss: output 'attention' [B, 2, H*W] holds the two branches' spatial attention maps (channel mean
        of the projected maps, normalised to sum 1). `cxrjax.losses.attention_agreement` penalises their total
        variation distance ½ Σ|a1 − a2| ∈ [0, 1]. Why agreement rather than sparsity: the Hadamard product only
        carries signal where both branches attend; if they attend to disjoint regions the fused feature vanishes, so
        the attention loss pulls each branch's evidence to where the other finds it, which is what makes the
        product informative ("helps the cross-attention process"); an L1 sparsity on the product would instead
        reward attending to as little as possible, which suits focal findings (nodule) but not diffuse ones
        (cardiomegaly, effusion). Its blind spot: two equally diffuse maps agree perfectly, so it is a regulariser
        next to the classification losses, not a substitute for them.
      * Multi-label balance loss: `losses.can_balance` on 'logits' (its own documented interpretation).
    """

    branch1: nn.Module
    branch2: nn.Module
    num_classes: int
    channels: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, metadata: Mapping[str, Any] | None = None, train: bool = False):
        features1 = self.branch1(x, train=train)
        features2 = self.branch2(x, train=train)
        logits, attention = CrossAttention(self.num_classes, self.channels, self.dtype, name="cross")(
            features1, features2)
        return {
            "logits": logits,
            "branch1": gap_logits(features1, self.num_classes, self.dtype, name="branch1_fc"),
            "branch2": gap_logits(features2, self.num_classes, self.dtype, name="branch2_fc"),
            "attention": attention,
        }
