"""The model registry: one plain dict from name to backbone constructor, and `create_model`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from cxrjax.models import densenet, resnet, swin, vgg
from cxrjax.models.heads import Classifier

BACKBONES = {
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet50": resnet.ResNet50,
    "resnet101": resnet.ResNet101,
    "resnet152": resnet.ResNet152,
    "densenet121": densenet.DenseNet121,
    "densenet161": densenet.DenseNet161,
    "densenet169": densenet.DenseNet169,
    "densenet201": densenet.DenseNet201,
    "vgg16": vgg.VGG16,
    "vgg16_bn": vgg.VGG16BN,
    "vgg19": vgg.VGG19,
    "vgg19_bn": vgg.VGG19BN,
    "swin_tiny": swin.SwinTiny,
    "swin_small": swin.SwinSmall,
    "swin_base": swin.SwinBase,
    "swin_base_384": swin.SwinBase384,
}


def create_model(name: str, num_classes: int = 14, dtype: Any = jnp.float32, **backbone_kwargs):
    """A classifier `model.apply(variables, images, train=...) -> {"logits": (N, num_classes) float32}`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name](dtype=dtype, **backbone_kwargs)
    return Classifier(backbone=backbone, num_classes=num_classes, dtype=dtype)
