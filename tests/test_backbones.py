"""Backbones against their torchvision / timm references: numerical parity of imported models (eval and train-mode
BatchNorm), shapes of every registered variant, admissible input sizes, remat, bf16 compute, Swin's constants."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import torchvision_model
from cxrjax.models import BACKBONES, create_model, densenet, swin

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
torch.set_num_threads(1)

from cxrjax.models.weights import from_torch  # noqa: E402  (after the torch skip: these tests need the references)

FEATURES = {
    "resnet18": 512, "resnet34": 512, "resnet38": 2048, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
    "densenet121": 1024, "densenet161": 2208, "densenet169": 1664, "densenet201": 1920,
    "vgg16": 512, "vgg16_bn": 512, "vgg19": 512, "vgg19_bn": 512,
    "swin_tiny": 768, "swin_small": 768, "swin_base": 1024, "swin_base_384": 1024,
}
TIMM_NAMES = {"swin_tiny": "swin_tiny_patch4_window7_224"}


def torch_reference(name: str, img_size: tuple[int, int] | None = None):
    """The torchvision / timm model of `name` with seeded random weights, in eval mode, its logits of unit scale.

    BatchNorm running statistics are measured on a calibration batch in train mode (so activations stay normalised
    through 50+ layers) and then perturbed, and the affine parameters randomised: a wrong mapping of any BN tensor
    shows. Swin's LayerNorms and relative-position tables are randomised for the same reason. Finally the classifier
    (VGG: `gap_fc`, a GAP + linear head standing in for torchvision's MLP, which is not our head) is rescaled so the
    eval-mode logits of the calibration batch have standard deviation 1, like a trained model's rather than random
    residual streams' (ResNet-50's reach ~300): then an absolute tolerance on the logits means something. All of it
    changes the torch model's own tensors, before its state dict is exported, so both sides get the same weights.
    """
    torch.manual_seed(0)
    if name.startswith("swin"):
        timm = pytest.importorskip("timm")
        model = timm.create_model(TIMM_NAMES[name], **({"img_size": img_size} if img_size else {}))
    else:
        model = torchvision_model(name)
    if name.startswith("vgg"):
        model.gap_fc = torch.nn.Linear(512, 1000)  # every VGG ends with 512 channels
    generator = torch.Generator().manual_seed(1)
    calibration = torch.randn(2, 3, *(img_size or (224, 224)), generator=generator)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: the running stats become the statistics of the calibration batch
    with torch.no_grad():
        if batch_norms:
            model.train()(calibration)
        for bn in batch_norms:
            bn.running_mean.add_(0.1 * torch.randn(bn.running_mean.shape, generator=generator))
            bn.running_var.mul_(torch.empty(bn.running_var.shape).uniform_(0.8, 1.25, generator=generator))
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
            if hasattr(module, "relative_position_bias_table"):
                module.relative_position_bias_table.normal_(0.0, 1.0, generator=generator)
        head = classifier(model, name)
        scale = float(reference_logits(model.eval(), name, calibration).std())
        head.weight.div_(scale)
        head.bias.div_(scale)
    for bn in batch_norms:
        bn.momentum = 0.1
    return model.eval()


def classifier(model, name: str):
    """The torch linear layer that is our head `fc`."""
    if name.startswith("vgg"):
        return model.gap_fc
    if name.startswith("swin"):
        return model.head.fc
    return model.classifier if name.startswith("densenet") else model.fc


def reference_logits(reference, name: str, x):
    """torch logits for our architecture: the reference end to end, except VGG, whose classifier we replace by GAP
    + fc: there the torch side is `features` → mean → `gap_fc`."""
    with torch.no_grad():
        if name.startswith("vgg"):
            return reference.gap_fc(reference.features(x).mean(dim=(2, 3)))
        return reference(x)


def numpy_state(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def nhwc(x) -> jnp.ndarray:
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=None)
def imported(name: str):
    """(torch reference, our classifier, imported variables) with 1000 classes, built once per test session. VGG's
    head `fc` (fresh on import: torchvision's classifier is not a GAP + fc head) is set to the reference's `gap_fc`."""
    reference = torch_reference(name)
    state = numpy_state(reference)
    if name.startswith("vgg"):
        gap_fc = {"kernel": state.pop("gap_fc.weight").T.copy(), "bias": state.pop("gap_fc.bias")}
    variables = from_torch(name, state, num_classes=1000)
    if name.startswith("vgg"):
        variables["params"]["fc"] = gap_fc
    return reference, create_model(name, 1000), variables


PARITY = [("resnet18", (224, 224)), ("resnet18", (256, 256)), ("resnet38", (224, 224)), ("resnet50", (224, 224)),
          ("resnet50", (256, 256)),
          ("densenet121", (224, 224)), ("densenet121", (256, 256)), ("vgg16_bn", (224, 224)), ("vgg16_bn", (256, 256)),
          ("swin_tiny", (224, 224)), ("swin_tiny", (448, 224))]


@pytest.mark.parametrize("name,size", PARITY)
def test_imported_model_matches_reference_in_eval_mode(name, size):
    reference, model, variables = imported(name)
    if name.startswith("swin") and size != (224, 224):
        # timm fixes the input size at construction; same weights, windows still 7 at every stage. At 448x224 the
        # last stage (14x7) shifts its windows along the height only.
        resized = torch_reference(name, img_size=size)
        resized.load_state_dict(reference.state_dict())
        reference = resized
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))

    expected = reference_logits(reference, name, x).numpy()
    logits = jax.jit(model.apply)(variables, nhwc(x))["logits"]

    error = float(np.max(np.abs(np.asarray(logits) - expected)))
    print(f"parity {name} {size[0]}x{size[1]}: max |logit error| {error:.2e} (logit std {expected.std():.2f}, "
          f"max |logit| {np.max(np.abs(expected)):.2f})")
    assert logits.dtype == jnp.float32 and logits.shape == (2, 1000)
    assert 0.5 < expected.std() < 2  # unit-scale logits (see torch_reference): the bound is absolute
    assert error < 1e-4


def test_resnet38_has_38_weighted_layers_as_resnet50_has_50():
    """ResNet-38's depth counts as He et al. count ResNet-50's: the stem, every block's convolutions and the
    classifier, not the projection shortcuts."""
    def weighted_layers(name):
        params = jax.eval_shape(create_model(name, 14).init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        return sum(1 for path, _ in paths
                   if path[-1].key == "kernel" and "downsample" not in jax.tree_util.keystr(path))

    assert (weighted_layers("resnet38"), weighted_layers("resnet50"), weighted_layers("resnet101")) == (38, 50, 101)


def test_vgg_backbone_is_torchvision_features():
    reference, model, variables = imported("vgg16_bn")
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference.features(x).numpy().transpose(0, 2, 3, 1)
    features = model.apply(variables, nhwc(x), method=lambda classifier, x: classifier.backbone(x))
    error = np.max(np.abs(np.asarray(features) - expected))
    print(f"vgg16_bn features: max error {error:.2e} (max |feature| {np.max(expected):.1f})")
    assert error < 2e-5 * np.max(expected)  # float32 rounding over 13 convs with large activations


def test_train_mode_batch_norm_matches_torch_outputs_and_running_stats():
    name = "resnet18"
    reference = torch_reference(name)
    model = create_model(name, 1000)
    variables = from_torch(name, numpy_state(reference), num_classes=1000)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))

    with torch.no_grad():
        expected = reference.train()(x).numpy()  # updates the running statistics in place
    expected_stats = from_torch(name, numpy_state(reference), num_classes=1000)["batch_stats"]
    outputs, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, nhwc(x))

    np.testing.assert_allclose(np.asarray(outputs["logits"]), expected, atol=1e-4)
    errors = jax.tree.map(lambda ours, theirs: float(np.max(np.abs(np.asarray(ours) - theirs) / (1 + np.abs(theirs)))),
                          updates["batch_stats"], expected_stats)
    worst = max(jax.tree.leaves(errors))
    print(f"train-mode BN {name}: max relative running-stat error {worst:.2e}")
    assert worst < 1e-5


def feature_shape(name: str, height: int, width: int, **kwargs) -> tuple[int, ...]:
    backbone = BACKBONES[name](**kwargs)
    features, _ = jax.eval_shape(backbone.init_with_output, jax.random.key(0), jnp.zeros((2, height, width, 3)))
    return features.shape


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_its_final_feature_map(name):
    size = 384 if name == "swin_base_384" else 224
    assert feature_shape(name, size, size) == (2, size // 32, size // 32, FEATURES[name])


@pytest.mark.parametrize("name,odd_size_features", [("resnet50", (3, 4)), ("densenet121", (2, 3)), ("vgg16", (2, 3))])
def test_cnn_backbones_take_any_size_from_32(name, odd_size_features):
    """Output sizes as torchvision's: padded strided convs round up, pools and VGG round down."""
    assert feature_shape(name, 32, 32)[1:3] == (1, 1)
    assert feature_shape(name, 512, 384)[1:3] == (16, 12)
    assert feature_shape(name, 72, 100)[1:3] == odd_size_features


def test_swin_takes_multiples_of_32_windows_and_refuses_other_sizes():
    for height, width in ((224, 224), (448, 224), (672, 448)):
        assert feature_shape("swin_tiny", height, width)[1:3] == (height // 32, width // 32)
    with pytest.raises(ValueError, match="multiples of 224"):
        feature_shape("swin_tiny", 256, 256)
    with pytest.raises(ValueError, match="multiples of 384"):
        feature_shape("swin_base_384", 224, 224)


def test_swin_constants_match_timm():
    timm_swin = pytest.importorskip("timm.models.swin_transformer")
    for window in (7, 12):
        np.testing.assert_array_equal(swin.relative_position_index(window),
                                      timm_swin.get_relative_position_index(window, window).numpy())
    model = timm_swin.swin_tiny_patch4_window7_224(img_size=448)
    for stage, size in ((0, 112), (3, 14)):
        shifted_block = model.layers[stage].blocks[1]
        np.testing.assert_array_equal(swin.shifted_window_mask(size, size, 7, (3, 3)),
                                      shifted_block.attn_mask.numpy())
    variables = jax.eval_shape(create_model("swin_base_384", 14).init, jax.random.key(0), jnp.zeros((1, 384, 384, 3)))
    params = variables["params"]["backbone"]
    assert set(variables) == {"params"}  # index and mask are constants, not variables
    assert params["layers_3"]["blocks_0"]["attn"]["relative_position_bias_table"].shape == (23 * 23, 32)


def random_variables(module, x, seed: int = 0):
    """Random variables of `module`'s shapes without `module.init`: XLA on CPU compiles one RNG per parameter slowly
    (seconds for a small net). Scales and running variances positive, the rest N(0, 0.1²)."""
    rng = np.random.default_rng(seed)

    def fill(path, shape):
        positive = path[-1].key in ("scale", "var")
        values = rng.uniform(0.5, 1.5, shape.shape) if positive else rng.normal(0.0, 0.1, shape.shape)
        return jnp.asarray(values, shape.dtype)

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(module.init, jax.random.key(0), x))


def test_swin_drop_path_is_stochastic_only_in_training():
    small = dict(embed_dim=16, depths=(2,), num_heads=(2,), window=7)
    dropping, plain = swin.SwinTransformer(**small, drop_path_rate=0.5), swin.SwinTransformer(**small)
    x = jax.random.normal(jax.random.key(0), (4, 56, 56, 3))
    variables = random_variables(plain, x)
    dropped_a, dropped_b = (dropping.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)})
                            for seed in (2, 3))
    assert not np.allclose(dropped_a, dropped_b)
    reference = plain.apply(variables, x)
    np.testing.assert_array_equal(dropping.apply(variables, x), reference)
    np.testing.assert_array_equal(plain.apply(variables, x, train=True), reference)


def test_rematerialised_densenet_equals_plain_outputs_and_gradients():
    small = dict(growth_rate=8, block_config=(2, 3), num_init_features=16)
    plain, remat = densenet.DenseNet(**small), densenet.DenseNet(**small, remat=True)
    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    variables = random_variables(plain, x)
    assert jax.tree.structure(jax.eval_shape(remat.init, jax.random.key(1), x)) == jax.tree.structure(variables)

    def loss_and_grads(module):
        def loss(params):
            features, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                             train=True, mutable=["batch_stats"])
            return jnp.sum(features**2), (features, updates)
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    (_, plain_aux), plain_grads = loss_and_grads(plain)
    (_, remat_aux), remat_grads = loss_and_grads(remat)
    for ours, theirs in zip(jax.tree.leaves(remat_aux), jax.tree.leaves(plain_aux)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    # Float32 rounding relative to the gradients' scale: some (norm0's scale, which the next BN nearly cancels) are
    # tiny differences of large terms, so a per-element relative tolerance would be meaningless there.
    scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(plain_grads))
    for ours, theirs in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(plain_grads)):
        assert np.max(np.abs(ours - theirs)) <= 1e-6 * scale


@pytest.mark.parametrize("name", ["resnet50", "swin_tiny"])
def test_bfloat16_compute_keeps_float32_parameters_and_logits_close(name):
    _, model32, variables = imported(name)
    model16 = create_model(name, 1000, dtype=jnp.bfloat16)
    shapes = jax.eval_shape(model16.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}

    x = jax.random.normal(jax.random.key(5), (2, 224, 224, 3))
    logits32 = jax.jit(model32.apply)(variables, x)["logits"]
    logits16 = jax.jit(model16.apply)(variables, x)["logits"]
    error = float(jnp.max(jnp.abs(logits16 - logits32)))
    scale = float(jnp.max(jnp.abs(logits32)))
    print(f"bf16 {name}: max |logit error| {error:.3f} (max |logit| {scale:.2f})")
    assert logits16.dtype == jnp.float32
    assert error < 0.05 * scale
