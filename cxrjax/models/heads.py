"""Heads that turn a backbone's feature map into named logits.

Every model returns a dict of named float32 logits (`{"logits": ...}` for a plain classifier), so that multi-head
methods (F-MSML, CAN) and the loss composition `{head: (loss, weight)}` share one contract.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Classifier(nn.Module):
    """backbone → global average pooling → dense, logits in float32 whatever the compute dtype."""

    backbone: nn.Module
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = self.backbone(x, train=train)
        pooled = jnp.mean(features, axis=(1, 2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(pooled)
        return {"logits": logits.astype(jnp.float32)}
