"""Two-backbone models and the registry around them: F-MSML's heads, independent streams and tied initial weights;
the CAN's Hadamard cross-attention against NumPy; the attention loss; importing backbones into streams; parameter
groups for freezing; finite gradients and float32 outputs under bf16 for every architecture.

Most tests register two tiny backbones (codebase modules cut to one block) so that every architecture compiles in
seconds; the paper's sizes are checked by shape evaluation, and one test trains through a real ResNet-18 F-MSML.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cxrjax import losses
from cxrjax.models import (
    ARCHITECTURES,
    BACKBONES,
    create_model,
    init_variables,
    load_backbone,
    parameter_groups,
    resnet,
    vgg,
)
from cxrjax.models.heads import Classifier, bilinear_pool, example_metadata
from cxrjax.models.multistream import tie_streams

KEY = jax.random.key(0, impl="rbg")
X = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
METADATA = {"age": jnp.array([35.0, 70.0]), "sex": jnp.array([0, 1]), "view": jnp.array([1, 0])}

GROUPS = {  # the table in cxrjax/models/__init__.py
    "classifier": {"backbone", "fc"},
    "fusion": {"backbone", "fc"},
    "bilinear": {"backbone", "fce"},
    "lse": {"backbone", "transition", "fc"},
    "fmsml": {"stream1", "stream2", "ce", "msml", "fce"},
    "can": {"branch1", "branch2", "branch1_fc", "branch2_fc", "cross"},
}
HEADS = {"classifier": {"logits"}, "fusion": {"logits"}, "bilinear": {"fce"}, "lse": {"logits"},
         "fmsml": {"ce", "msml", "fce"}, "can": {"logits", "branch1", "branch2", "attention"}}


@pytest.fixture(autouse=True)
def tiny_backbones(monkeypatch):
    """tiny_resnet: stride 4, 64 channels, BatchNorm; tiny_vgg: stride 4, 16 channels; tiny_vgg8: stride 8."""
    monkeypatch.setitem(BACKBONES, "tiny_resnet",
                        functools.partial(resnet.ResNet, stage_sizes=(1,), block_cls=resnet.BasicBlock))
    monkeypatch.setitem(BACKBONES, "tiny_vgg",
                        functools.partial(vgg.VGG, config=(8, vgg.POOL, 16, vgg.POOL), with_batch_norm=False))
    monkeypatch.setitem(BACKBONES, "tiny_vgg8", functools.partial(
        vgg.VGG, config=(8, vgg.POOL, 16, vgg.POOL, 16, vgg.POOL), with_batch_norm=False))


def tiny(architecture: str, dtype=jnp.float32, backbone: str = "tiny_resnet"):
    """Each architecture on the tiny backbones (CAN: `backbone` and tiny_vgg)."""
    options = {"second_backbone": "tiny_vgg"} if architecture == "can" else {}
    return create_model(backbone, 14, dtype, architecture=architecture, **options)


@functools.cache
def tiny_variables(architecture: str, backbone: str = "tiny_resnet"):
    model = tiny(architecture, backbone=backbone)
    return jax.jit(lambda key: init_variables(model, key, X))(KEY)


def donate(tree):
    """What a train step with a donated state does to its input: refuses two leaves backed by one buffer."""
    jax.jit(lambda tree: jax.tree.map(lambda leaf: leaf + 1, tree), donate_argnums=0)(tree)


def features(model, variables, module: str):
    """The final feature map of backbone `module` of `model`."""
    return model.apply(variables, X, method=lambda m, x: getattr(m, module)(x))


def test_fmsml_has_three_heads_from_two_streams_with_the_same_initial_weights():
    model = tiny("fmsml")
    variables = tiny_variables("fmsml")
    for collection in ("params", "batch_stats"):
        jax.tree.map(np.testing.assert_array_equal, variables[collection]["stream1"],
                     variables[collection]["stream2"])
    untied = jax.jit(lambda key: model.init(key, X))(KEY)  # Flax alone draws each stream from its own RNG
    assert not np.array_equal(untied["params"]["stream1"]["conv1"]["kernel"],
                              untied["params"]["stream2"]["conv1"]["kernel"])
    tied = tie_streams(untied)
    jax.tree.map(np.testing.assert_array_equal, tied["params"]["stream2"], untied["params"]["stream1"])
    donate(tied)  # copies, not one buffer twice

    outputs = jax.jit(model.apply)(variables, X)
    assert {head: (value.shape, value.dtype) for head, value in outputs.items()} == {
        head: ((2, 14), jnp.float32) for head in ("ce", "msml", "fce")}
    params = variables["params"]
    f1, f2 = features(model, variables, "stream1"), features(model, variables, "stream2")
    np.testing.assert_allclose(outputs["ce"], f1.mean((1, 2)) @ params["ce"]["kernel"] + params["ce"]["bias"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["msml"], f2.mean((1, 2)) @ params["msml"]["kernel"] + params["msml"]["bias"],
                               rtol=1e-5, atol=1e-5)
    fc = params["fce"]["fc"]
    assert fc["kernel"].shape == (64 * 64, 14)
    np.testing.assert_allclose(outputs["fce"], bilinear_pool(f1, f2) @ fc["kernel"] + fc["bias"], rtol=1e-5,
                               atol=1e-5)


def test_fmsml_streams_are_separate_parameters():
    """Changing one stream's weights moves its own GAP head and the bilinear head, never the other stream's head."""
    model, variables = tiny("fmsml"), tiny_variables("fmsml")
    apply = jax.jit(model.apply)
    before = apply(variables, X)
    for changed, untouched_head, moved_head in (("stream1", "msml", "ce"), ("stream2", "ce", "msml")):
        params = dict(variables["params"])
        params[changed] = jax.tree.map(lambda p: p * 1.1, params[changed])
        after = apply({**variables, "params": params}, X)
        np.testing.assert_array_equal(after[untouched_head], before[untouched_head])
        assert not np.allclose(after[moved_head], before[moved_head])
        assert not np.allclose(after["fce"], before["fce"])


def test_can_cross_attention_is_the_hadamard_product_of_projected_maps_numpy_check():
    model, variables = tiny("can"), tiny_variables("can")
    outputs = jax.jit(model.apply)(variables, X)
    params = {name: jax.tree.map(lambda p: np.asarray(p, np.float64), tree)
              for name, tree in variables["params"].items()}
    f1 = np.asarray(features(model, variables, "branch1")[0], np.float64)  # (8, 8, 64): ResNet branch
    f2 = np.asarray(features(model, variables, "branch2")[0], np.float64)  # (8, 8, 16): VGG branch
    cross = params["cross"]
    p1 = np.maximum(f1 @ cross["proj1"]["kernel"][0, 0] + cross["proj1"]["bias"], 0.0)  # 1x1 conv + ReLU to 16
    p2 = np.maximum(f2 @ cross["proj2"]["kernel"][0, 0] + cross["proj2"]["bias"], 0.0)
    hadamard = p1 * p2
    logits = hadamard.mean((0, 1)) @ cross["fc"]["kernel"] + cross["fc"]["bias"]
    np.testing.assert_allclose(outputs["logits"][0], logits, rtol=1e-4, atol=1e-5)
    for k, p in enumerate((p1, p2)):
        energy = p.mean(-1).ravel()
        np.testing.assert_allclose(outputs["attention"][0, k], energy / energy.sum(), rtol=1e-4, atol=1e-6)
    branch1 = f1.mean((0, 1)) @ params["branch1_fc"]["kernel"] + params["branch1_fc"]["bias"]
    np.testing.assert_allclose(outputs["branch1"][0], branch1, rtol=1e-4, atol=1e-5)


def test_can_brings_branches_of_different_strides_to_one_size():
    model = create_model("tiny_resnet", 14, architecture="can", second_backbone="tiny_vgg8", reduce_channels=8)
    shapes = jax.eval_shape(lambda key: init_variables(model, key, X), KEY)
    assert shapes["params"]["cross"]["proj1"]["kernel"].shape == (1, 1, 64, 8)
    outputs = jax.eval_shape(model.apply, shapes, X)
    assert outputs["attention"].shape == (2, 2, 4 * 4)  # stride 8: the ResNet's 8x8 map resized to 4x4
    assert outputs["logits"].shape == (2, 14)


def test_attention_agreement_is_the_total_variation_distance():
    uniform = jnp.full((4,), 0.25)
    attention = jnp.stack([
        jnp.stack([uniform, uniform]),  # same maps: 0
        jnp.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]),  # disjoint: 1
        jnp.array([[0.5, 0.5, 0, 0], [0.5, 0, 0.5, 0]]),  # half the mass moved: 0.5
    ])
    np.testing.assert_allclose(losses.attention_agreement(attention, None), [0.0, 1.0, 0.5])


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_parameter_groups_label_every_leaf_and_freeze_what_they_name(architecture):
    params = tiny_variables(architecture)["params"]
    labels = parameter_groups(params)
    assert jax.tree.structure(labels) == jax.tree.structure(params)
    assert set(jax.tree.leaves(labels)) == GROUPS[architecture]
    for group in GROUPS[architecture]:
        assert set(jax.tree.leaves(labels[group])) == {group}

    frozen = sorted(GROUPS[architecture])[:1]  # freeze one group, train the others
    tx = optax.multi_transform({group: optax.set_to_zero() if group in frozen else optax.sgd(1.0)
                                for group in GROUPS[architecture]}, labels)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(ones, tx.init(params), params)
    for group, tree in updates.items():
        expected = 0.0 if group in frozen else -1.0
        assert all(np.all(leaf == expected) for leaf in jax.tree.leaves(tree)), group


def objective(outputs, labels):
    """BCE on every [B, 14] head, plus the attention loss on CAN's attention maps."""
    total = 0.0
    for head, value in outputs.items():
        loss = losses.attention_agreement if head == "attention" else losses.bce
        total += jnp.mean(loss(value, labels))
    return total


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_jitted_gradients_are_finite_and_reach_every_parameter(architecture):
    model, variables = tiny(architecture), tiny_variables(architecture)
    labels = jnp.array([[1.0] * 3 + [0.0] * 11, [0.0] * 14])

    @jax.jit
    def value_and_grad(params):
        def loss(params):
            outputs, _ = model.apply({**variables, "params": params}, X, metadata=METADATA, train=True,
                                     mutable=["batch_stats"])
            assert set(outputs) == HEADS[architecture]
            return objective(outputs, labels)
        return jax.value_and_grad(loss)(params)

    value, grads = value_and_grad(variables["params"])
    assert np.isfinite(value)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(grad).all(), jax.tree_util.keystr(path)
        assert np.any(grad != 0), f"{jax.tree_util.keystr(path)} gets no gradient"


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_bfloat16_compute_gives_float32_outputs_close_to_float32_compute(architecture):
    """On the VGG backbone: XLA:CPU (jax 0.12.0) miscompiles a residual block followed by a mean in bf16 under jit
    (conv → ReLU → conv → + x → ReLU → mean gives inf/NaN), whatever the head; that is not what this test checks."""
    variables = tiny_variables(architecture, "tiny_vgg")  # parameters stay float32 whatever the compute dtype
    reference = jax.jit(tiny(architecture, backbone="tiny_vgg").apply)(variables, X, METADATA)
    outputs = jax.jit(tiny(architecture, jnp.bfloat16, "tiny_vgg").apply)(variables, X, METADATA)
    for head, value in outputs.items():
        assert value.dtype == jnp.float32, head
        scale = float(np.abs(reference[head]).max())
        np.testing.assert_allclose(value, reference[head], atol=0.05 * scale, err_msg=head)


def test_imported_backbone_weights_go_into_the_named_modules_strictly():
    imported = tiny_variables("classifier")  # stands for weights.from_torch(...): {'params': {'backbone', 'fc'}, ...}
    fresh = tiny_variables("fmsml")
    loaded = load_backbone(fresh, imported, into=("stream1", "stream2"))
    for collection in ("params", "batch_stats"):
        for stream in ("stream1", "stream2"):
            jax.tree.map(np.testing.assert_array_equal, loaded[collection][stream], imported[collection]["backbone"])
    jax.tree.map(np.testing.assert_array_equal, loaded["params"]["fce"], fresh["params"]["fce"])
    donate({stream: loaded["params"][stream] for stream in ("stream1", "stream2")})  # each stream its own copy

    fusion = load_backbone(tiny_variables("fusion"), imported, into=("backbone",))
    jax.tree.map(np.testing.assert_array_equal, fusion["params"]["backbone"], imported["params"]["backbone"])

    with pytest.raises(ValueError, match="no module 'backbone'"):
        load_backbone(fresh, imported, into=("backbone",))
    vgg_import = jax.eval_shape(lambda key: init_variables(create_model("tiny_vgg"), key, X), KEY)
    with pytest.raises(ValueError, match="collections"):  # VGG has no batch_stats
        load_backbone(fresh, vgg_import, into=("stream1",))
    vgg8_import = jax.eval_shape(lambda key: init_variables(create_model("tiny_vgg8"), key, X), KEY)
    with pytest.raises(ValueError, match="does not fit params/branch2"):  # a third VGG block the branch lacks
        load_backbone(tiny_variables("can"), vgg8_import, into=("branch2",))


def test_registry_options_and_the_plain_classifier():
    model = create_model("resnet18")
    assert isinstance(model, Classifier) and model.backbone.__class__.__name__ == "ResNet"  # weights.from_torch
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("resnet18", architecture="bilinera")
    with pytest.raises(ValueError, match="does not take second_backbone"):
        create_model("resnet18", architecture="fmsml", second_backbone="vgg16")
    with pytest.raises(ValueError, match="does not take reduce_channels"):
        create_model("resnet18", architecture="fusion", reduce_channels=64)
    with pytest.raises(ValueError, match="unknown model 'vgg17'"):
        create_model("resnet18", architecture="can", second_backbone="vgg17")


@pytest.mark.parametrize("name, architecture, reduce_channels, head, width", [
    ("densenet121", "fmsml", None, "fce", 1024 * 1024),  # D121-F-MSML: the 1M-wide bilinear vector
    ("densenet121", "bilinear", None, "fce", 1024 * 1024),  # D121-BL
    ("densenet121", "fmsml", 256, "fce", 256 * 256),
    ("vgg16", "fmsml", None, "fce", 512 * 512),  # VGG-F-MSML
    ("resnet50", "fusion", None, "fc", 2048 + 5),  # Baltruschat's ResNet-50 "meta"
])
def test_paper_sizes(name, architecture, reduce_channels, head, width):
    model = create_model(name, 14, architecture=architecture, reduce_channels=reduce_channels)
    images = jnp.zeros((2, 64, 64, 3))
    shapes = jax.eval_shape(lambda key: init_variables(model, key, images), KEY)
    fc = shapes["params"][head]
    assert (fc["fc"] if "fc" in fc else fc)["kernel"].shape == (width, 14)
    outputs = jax.eval_shape(functools.partial(model.apply, train=False), shapes, images, example_metadata(2))
    assert all(value.shape == (2, 14) and value.dtype == jnp.float32 for value in outputs.values())


def test_resnet18_fmsml_trains_with_finite_gradients():
    """The real R18-F-MSML on real ReLU maps (bilinear features with exact zeros), Ge's loss weights."""
    model = create_model("resnet18", 14, architecture="fmsml")
    images = jax.random.normal(jax.random.key(4), (2, 64, 64, 3))
    variables = jax.jit(lambda key: init_variables(model, key, images))(KEY)
    objective = losses.build_objective({"ce": ("bce", 0.2), "msml": ("msml", 0.2), "fce": ("bce", 0.6)})
    labels = jnp.array([[1.0] * 2 + [0.0] * 12, [0.0] * 13 + [1.0]])

    @jax.jit
    def value_and_grad(params):
        def loss(params):
            outputs, _ = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
            return objective(outputs, labels)[0]
        return jax.value_and_grad(loss)(params)

    value, grads = value_and_grad(variables["params"])
    assert np.isfinite(value)
    assert all(np.isfinite(grad).all() for grad in jax.tree.leaves(grads))
    assert np.any(grads["stream2"]["layer4_1"]["conv2"]["kernel"] != 0)
