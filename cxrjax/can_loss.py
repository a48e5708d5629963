"""The attention loss of the Cross-Attention Network (Ma, Wang & Hoi 2019), as interpreted in
`cxrjax.models.multistream.CrossAttentionNetwork` (the paper's formula is not available).

It follows the loss contract of `cxrjax.losses` — `(output [B, ...], labels [B, C]) -> [B]` — so that it can be
registered in `losses.LOSSES` and composed with `build_objective` on the CAN's 'attention' head.
"""

from __future__ import annotations

import jax.numpy as jnp


def attention_agreement(attention, labels=None):
    """Total variation distance between the two branches' spatial attention maps: ½ Σ_n |a1(n) − a2(n)| ∈ [0, 1].

    `attention`: [B, 2, N], two distributions over the N = H·W locations (the CAN's 'attention' output). 0 when the
    branches attend to the same places, 1 when to disjoint ones. `labels` is not used (the attention loss needs no
    annotation); it is accepted for the loss contract. Computed in at least float32.
    """
    maps = jnp.asarray(attention, jnp.promote_types(jnp.result_type(attention), jnp.float32))
    return 0.5 * jnp.sum(jnp.abs(maps[:, 0] - maps[:, 1]), axis=-1)
