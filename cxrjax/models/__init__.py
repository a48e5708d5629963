"""The model registry: a backbone (`BACKBONES`) inside an architecture (`ARCHITECTURES`), built by `create_model`;
and the helpers that training needs around any of them: `init_variables`, `load_backbone`, `parameter_groups`.

An architecture is one record (`Architecture`): how it is built, which of its modules take imported (ImageNet)
weights, which layers Grad-CAM explains, whether it reads age, sex and view, and whether its streams start tied.
Everything outside this package asks the record (`ARCHITECTURES[name]`, `architecture_of(model)`), so adding an
architecture touches this package and its test only.

A model is named by two config fields, `name` (the feature extractor, a key of BACKBONES) and `architecture` (what
is built around it, a key of ARCHITECTURES; default "classifier"):

| architecture | module                            | outputs                             | paper rows                  |
|--------------|-----------------------------------|-------------------------------------|-----------------------------|
| classifier   | heads.Classifier                  | logits                              | R18, D121, ResNet-50, Swin  |
| fusion       | heads.MetadataClassifier          | logits                              | Baltruschat "meta"          |
| bilinear     | heads.SelfBilinear                | fce                                 | R18-BL, D121-BL             |
| lse          | heads.LSEClassifier               | logits                              | Wang 2017                   |
| fmsml        | multistream.FMSML                 | ce, msml, fce                       | R18-, D121-, VGG-F-MSML     |
| can          | multistream.CrossAttentionNetwork | logits, branch1, branch2, attention | CAN                         |

Every model is called as `model.apply(variables, images, metadata=None, train=False, ...)` and returns float32
[B, num_classes] logits per head (CAN's 'attention' is [B, 2, H*W]; see `multistream`). Parameters are grouped by the
top-level module that holds them (`parameter_groups`):

| architecture | groups                                             |
|--------------|----------------------------------------------------|
| classifier   | backbone, fc                                       |
| fusion       | backbone, fc                                       |
| bilinear     | backbone, fce                                      |
| lse          | backbone, transition, fc                           |
| fmsml        | stream1, stream2, ce, msml, fce                    |
| can          | branch1, branch2, branch1_fc, branch2_fc, cross    |
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cxrjax.data.findings import NUM_FINDINGS
from cxrjax.models import densenet, resnet, swin, vgg
from cxrjax.models.heads import Classifier, LSEClassifier, MetadataClassifier, SelfBilinear, example_metadata
from cxrjax.models.multistream import FMSML, CrossAttentionNetwork, tie_streams

BACKBONES = {
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet38": resnet.ResNet38,
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

BackboneFactory = Callable[..., nn.Module]  # (registered backbone name, **options) → module (dtype etc. applied)

# The options that end a backbone at its last convolutional layer, which bilinear pooling reads: Ge et al. 2018 pool
# VGG-16's conv5_3 (14×14 at 224²), not pool5's 7×7 map. ResNets and DenseNets end there already. The plain
# classifiers keep the whole backbone (GAP over pool5 for VGG); F-MSML's stream heads (GAP + dense) read the same
# map as its bilinear head.
LAST_CONV_LAYER = {name: {"final_pool": False} for name in BACKBONES if name.startswith("vgg")}


def _classifier(backbone: BackboneFactory, name: str, num_classes: int, dtype):
    return Classifier(backbone=backbone(name), num_classes=num_classes, dtype=dtype)


def _fusion(backbone: BackboneFactory, name: str, num_classes: int, dtype):
    return MetadataClassifier(backbone=backbone(name), num_classes=num_classes, dtype=dtype)


def _bilinear(backbone: BackboneFactory, name: str, num_classes: int, dtype, reduce_channels: int | None = None):
    return SelfBilinear(backbone=backbone(name, **LAST_CONV_LAYER.get(name, {})), num_classes=num_classes,
                        reduce_channels=reduce_channels, dtype=dtype)


def _lse(backbone: BackboneFactory, name: str, num_classes: int, dtype):
    return LSEClassifier(backbone=backbone(name), num_classes=num_classes, dtype=dtype)


def _fmsml(backbone: BackboneFactory, name: str, num_classes: int, dtype, reduce_channels: int | None = None):
    last_conv = LAST_CONV_LAYER.get(name, {})
    return FMSML(stream1=backbone(name, **last_conv), stream2=backbone(name, **last_conv), num_classes=num_classes,
                 reduce_channels=reduce_channels, dtype=dtype)


def _can(backbone: BackboneFactory, name: str, num_classes: int, dtype, second_backbone: str | None = None,
         reduce_channels: int | None = None):
    return CrossAttentionNetwork(branch1=backbone(name), branch2=backbone(second_backbone or name),
                                 num_classes=num_classes, channels=reduce_channels, dtype=dtype)


Layer = tuple[str, ...]  # a submodule's path, e.g. ("backbone",)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What an architecture is, in one place.

    `pretrained_into`: module → the `config.model` field naming the `cxrjax import-weights` file its backbone comes
    from (a second field that is empty falls back to `pretrained`); None: the import is the whole model (the plain
    classifier, its fc too when the class count matches). `gradcam_layers`: the feature maps Grad-CAM explains,
    summed (a head that reads two backbones is explained by both). `tie_streams`: init gives stream2 stream1's
    weights when their shapes match (Ge et al. start both streams from the same weights)."""

    build: Callable[..., nn.Module]  # (backbone factory, name, num_classes, dtype, **options) → the model
    module: type  # the flax module class `build` returns: how a built model finds its record
    pretrained_into: Mapping[str, str] | None
    gradcam_layers: tuple[Layer, ...]
    reads_metadata: bool = False  # age, sex and view position besides the image
    tie_streams: bool = False


BACKBONE: Layer = ("backbone",)
ARCHITECTURES = {
    "classifier": Architecture(_classifier, Classifier, None, (BACKBONE,)),
    "fusion": Architecture(_fusion, MetadataClassifier, {"backbone": "pretrained"}, (BACKBONE,), reads_metadata=True),
    "bilinear": Architecture(_bilinear, SelfBilinear, {"backbone": "pretrained"}, (BACKBONE,)),
    "lse": Architecture(_lse, LSEClassifier, {"backbone": "pretrained"}, (BACKBONE,)),
    "fmsml": Architecture(_fmsml, FMSML, {"stream1": "pretrained", "stream2": "pretrained"},
                          (("stream1",), ("stream2",)), tie_streams=True),
    "can": Architecture(_can, CrossAttentionNetwork, {"branch1": "pretrained", "branch2": "pretrained_second"},
                        (("branch1",), ("branch2",))),
}


def architecture_of(model: nn.Module) -> Architecture:
    """The record of a built model."""
    for architecture in ARCHITECTURES.values():
        if type(model) is architecture.module:
            return architecture
    raise ValueError(f"{type(model).__name__} is not a registered architecture")


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    """A config's `model.dtype` name → the dtype activations are computed in (parameters and losses stay float32)."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {sorted(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]


def create_model(name: str, num_classes: int = 14, dtype: Any = jnp.float32, *, architecture: str = "classifier",
                 second_backbone: str | None = None, reduce_channels: int | None = None, **backbone_kwargs):
    """The model `architecture` (a key of ARCHITECTURES) around backbone(s) `name` (a key of BACKBONES).

    `second_backbone` ("can" only): the second branch's backbone; default `name`. `reduce_channels` ("bilinear",
    "fmsml": the learned 1x1 reduction before bilinear pooling, default None = full width; "can": the common channel
    count of the cross-attention, default the smaller branch width). `backbone_kwargs` (e.g. `remat=True`) go to
    every backbone. An option that the architecture does not take raises ValueError rather than being ignored.
    `create_model(name, num_classes, dtype)` is the plain GAP + fc classifier, parameters 'backbone' and 'fc'.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    for backbone_name in (name, second_backbone):
        if backbone_name is not None and backbone_name not in BACKBONES:
            raise ValueError(f"unknown model {backbone_name!r}; known: {', '.join(sorted(BACKBONES))}")
    build = ARCHITECTURES[architecture].build
    options = {key: value for key, value in (("second_backbone", second_backbone),
                                             ("reduce_channels", reduce_channels)) if value is not None}
    unused = sorted(set(options) - set(inspect.signature(build).parameters))
    if unused:
        raise ValueError(f"architecture {architecture!r} does not take {', '.join(unused)}")
    return build(lambda backbone_name, **extra: BACKBONES[backbone_name](dtype=dtype, **backbone_kwargs, **extra),
                 name, num_classes, dtype, **options)


def model_from_config(model: ml_collections.ConfigDict) -> nn.Module:
    """The model a config's `model` section describes (name, architecture, second_backbone, reduce_channels, dtype,
    backbone_kwargs), with the 14 findings' outputs."""
    return create_model(model.name, NUM_FINDINGS, compute_dtype(model.dtype), architecture=model.architecture,
                        second_backbone=model.second_backbone or None, reduce_channels=model.reduce_channels or None,
                        **model.backbone_kwargs.to_dict())


def init_variables(model: nn.Module, rng, images, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`model.init` for any registered architecture, plus what the papers ask of initial weights.

    Passes `example_metadata` when `metadata` is None (the fusion model needs some to build its 'fc'), and gives
    F-MSML's two streams stream1's initial weights (`tie_streams`; Ge et al. start both streams from the same
    weights), where the streams have one architecture. Pure, so usable under `jax.eval_shape` and `jit`.
    """
    if metadata is None:
        metadata = example_metadata(images.shape[0])
    variables = model.init(rng, images, metadata=metadata, train=False)
    if architecture_of(model).tie_streams and _shapes(variables["params"]["stream1"]) == _shapes(
            variables["params"]["stream2"]):
        variables = tie_streams(variables)
    return variables


def _shapes(tree):
    return jax.tree.map(np.shape, tree)


def load_backbone(variables: Mapping[str, Any], imported: Mapping[str, Any], into: Sequence[str]) -> dict[str, Any]:
    """`variables` with each module named in `into` replaced by the backbone of `imported`.

    `imported` is a plain classifier's variables, e.g. `weights.from_torch("resnet18", state_dict)` or
    `weights.load_variables("resnet18_imagenet.msgpack")`: `{"params": {"backbone": ..., "fc": ...},
    "batch_stats": {"backbone": ...}}`; its 'fc' is not used. Typical `into`: ("backbone",) for the fusion and
    bilinear models, ("stream1", "stream2") for F-MSML (the paper's same initial weights), ("branch1",) and then
    ("branch2",) from another import for a CAN with two architectures. Strict: every collection of each target must
    come from `imported` with the same structure and shapes, else ValueError. Returns a new dict in which each target
    holds its own copy (a train step that donates its state cannot take two leaves backed by one buffer).
    """
    result = {collection: dict(tree) for collection, tree in variables.items()}
    for target in into:
        holders = [collection for collection, tree in result.items() if target in tree]
        if not holders:
            raise ValueError(f"the model has no module {target!r}; top-level modules: {sorted(result['params'])}")
        sources = {collection for collection, tree in imported.items() if "backbone" in tree}
        if sources != set(holders):
            raise ValueError(f"{target!r} has collections {sorted(holders)}, the import's backbone {sorted(sources)}")
        for collection in holders:
            source = imported[collection]["backbone"]
            if _shapes(source) != _shapes(result[collection][target]):
                raise ValueError(f"the imported backbone does not fit {collection}/{target}: structure or shapes "
                                 "differ")
            result[collection][target] = jax.tree.map(lambda value: value.copy(), source)
    return result


def parameter_groups(params: Mapping[str, Any]) -> dict[str, Any]:
    """A tree of `params`' structure whose every leaf is its group: the name of the top-level module holding it.

    For freezing with optax, e.g. Ge's Local-Fixed stage (streams frozen) or Baltruschat's frozen ImageNet features:

        labels = parameter_groups(params)
        tx = optax.multi_transform({"stream1": optax.set_to_zero(), "stream2": optax.set_to_zero(),
                                    "ce": adam, "msml": adam, "fce": adam}, labels)

    The groups of each architecture are listed in this module's docstring.
    """
    return {group: jax.tree.map(lambda _: group, tree) for group, tree in params.items()}
