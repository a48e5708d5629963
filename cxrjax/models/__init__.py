"""The model registry: one plain dict from name to backbone constructor, and `create_model`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from cxrjax.models import resnet
from cxrjax.models.heads import Classifier

BACKBONES = {
    "resnet18": resnet.ResNet18,
}


def create_model(name: str, num_classes: int = 14, dtype: Any = jnp.float32, **backbone_kwargs):
    """A classifier `model.apply(variables, images, train=...) -> {"logits": (N, num_classes) float32}`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name](dtype=dtype, **backbone_kwargs)
    return Classifier(backbone=backbone, num_classes=num_classes, dtype=dtype)
