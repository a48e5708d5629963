"""Heads: bilinear pooling against NumPy loops, the signed square root's gradient, channel reduction and spatial
alignment, the self-bilinear "BL" network, metadata encoding and fusion, and the plain classifier's contract
(metadata ignored, `train` as a keyword, the parameter names of imported weights)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cxrjax.models import create_model, resnet
from cxrjax.models.heads import (
    BilinearHead,
    MetadataClassifier,
    SelfBilinear,
    bilinear_pool,
    encode_metadata,
    example_metadata,
    match_spatial,
    signed_sqrt,
)

# A one-block ResNet: the codebase's module, stride 4, 64 channels, BatchNorm (so batch_stats exist); compiles fast.
TinyResNet = functools.partial(resnet.ResNet, stage_sizes=(1,), block_cls=resnet.BasicBlock)
KEY = jax.random.key(0, impl="rbg")


def numpy_bilinear(a, b):
    """The bilinear feature computed the slow way, in float64: per sample, the sum of outer products over every
    location, divided by the number of locations, signed square root, divided by its Euclidean norm."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    batch, height, width, _ = a.shape
    out = []
    for n in range(batch):
        total = np.zeros((a.shape[-1], b.shape[-1]))
        for h in range(height):
            for w in range(width):
                total += np.outer(a[n, h, w], b[n, h, w])
        vector = (np.sign(total) * np.sqrt(np.abs(total / (height * width)))).ravel()
        out.append(vector / np.linalg.norm(vector))
    return np.stack(out)


def test_bilinear_pool_matches_numpy_loops():
    a = jax.random.normal(jax.random.key(1), (2, 3, 4, 5))  # signed: exercises the signed square root
    b = jax.nn.relu(jax.random.normal(jax.random.key(2), (2, 3, 4, 6)))  # ReLU map: zeros, as backbones give
    pooled = bilinear_pool(a, b)
    assert pooled.shape == (2, 30) and pooled.dtype == jnp.float32
    np.testing.assert_allclose(pooled, numpy_bilinear(a, b), rtol=1e-5, atol=1e-6)


def test_bilinear_pool_of_bfloat16_maps_is_float32():
    a = jax.random.normal(jax.random.key(1), (2, 3, 3, 4))
    pooled = bilinear_pool(a.astype(jnp.bfloat16), a.astype(jnp.bfloat16))
    assert pooled.dtype == jnp.float32
    np.testing.assert_allclose(pooled, numpy_bilinear(a, a), atol=2e-2)


def test_signed_sqrt_is_exact_and_its_gradient_finite_at_zero():
    x = jnp.array([-4.0, 0.0, 9.0])
    np.testing.assert_array_equal(signed_sqrt(x), [-2.0, 0.0, 3.0])
    grad = jax.vmap(jax.grad(signed_sqrt))(x)
    np.testing.assert_allclose(grad, [0.25, 5000.0, 1 / 6], rtol=1e-4)


def test_bilinear_pool_has_finite_gradients_for_silent_channels_and_all_zero_maps():
    a = jax.random.normal(jax.random.key(1), (2, 2, 2, 3)).at[..., 0].set(0.0).at[1].set(0.0)  # sample 1: all zero
    grad = jax.grad(lambda a: jnp.sum(bilinear_pool(a, a) * jnp.arange(9.0)))(a)
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(bilinear_pool(a, a)[1], np.zeros(9))


def test_bilinear_head_reduces_channels_with_learned_1x1_convs():
    a = jax.random.normal(jax.random.key(1), (2, 2, 3, 5))
    b = jax.random.normal(jax.random.key(2), (2, 2, 3, 6))
    head = BilinearHead(14, reduce_channels=3)
    params = head.init(KEY, a, b)["params"]
    assert jax.tree.map(np.shape, params) == {
        "reduce1": {"kernel": (1, 1, 5, 3), "bias": (3,)}, "reduce2": {"kernel": (1, 1, 6, 3), "bias": (3,)},
        "fc": {"kernel": (9, 14), "bias": (14,)}}

    self_params = head.init(KEY, a)["params"]  # self-bilinear: one shared reduction keeps the feature symmetric
    assert set(self_params) == {"reduce", "fc"}
    reduce = jax.tree.map(lambda p: np.asarray(p, np.float64), self_params["reduce"])
    reduced = np.asarray(a, np.float64) @ reduce["kernel"][0, 0] + reduce["bias"]
    expected = numpy_bilinear(reduced, reduced) @ self_params["fc"]["kernel"] + self_params["fc"]["bias"]
    np.testing.assert_allclose(head.apply({"params": self_params}, a), expected, rtol=1e-5, atol=1e-6)


def test_maps_of_different_sizes_meet_at_the_smaller_size():
    fine = jax.random.normal(jax.random.key(1), (1, 4, 6, 2))
    coarse = jax.random.normal(jax.random.key(2), (1, 2, 3, 2))
    for first, second in ((fine, coarse), (coarse, fine)):
        resized_first, resized_second = match_spatial(first, second)
        assert resized_first.shape == resized_second.shape == (1, 2, 3, 2)
    np.testing.assert_array_equal(match_spatial(fine, coarse)[1], coarse)  # the smaller map is untouched
    np.testing.assert_allclose(match_spatial(jnp.full((1, 4, 6, 2), 3.0), coarse)[0], 3.0, rtol=1e-6)

    head = BilinearHead(4)
    params = head.init(KEY, fine, coarse)
    aligned = match_spatial(fine, coarse)[0]
    np.testing.assert_allclose(head.apply(params, fine, coarse), head.apply(params, aligned, coarse), rtol=1e-6)


def test_self_bilinear_network_has_one_backbone_and_pools_its_map_with_itself():
    model = SelfBilinear(TinyResNet(), num_classes=14)
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    variables = jax.jit(model.init)(KEY, x)
    assert set(variables["params"]) == {"backbone", "fce"}
    features = model.apply(variables, x, method=lambda m, x: m.backbone(x))  # (2, 8, 8, 64)
    fc = variables["params"]["fce"]["fc"]
    assert fc["kernel"].shape == (64 * 64, 14)
    outputs = jax.jit(model.apply)(variables, x)
    assert set(outputs) == {"fce"}
    np.testing.assert_allclose(outputs["fce"], numpy_bilinear(features, features) @ fc["kernel"] + fc["bias"],
                               rtol=1e-4, atol=1e-5)


def test_encode_metadata():
    metadata = {"age": jnp.array([50.0, 414.0, 7.0]), "sex": jnp.array([0, 1, 1]), "view": jnp.array([1, 0, -1])}
    np.testing.assert_allclose(encode_metadata(metadata), [[0.50, 1, 0, 0, 1],
                                                           [1.00, 0, 1, 1, 0],  # 414 years: clipped at 100
                                                           [0.07, 0, 1, 0, 0]])  # unknown view: no one-hot bit


def test_fusion_logits_move_with_each_metadata_field_exactly_through_fc():
    model = MetadataClassifier(TinyResNet(), num_classes=14)
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    variables = jax.jit(model.init)(KEY, x, example_metadata(2))
    kernel = variables["params"]["fc"]["kernel"]
    assert kernel.shape == (64 + 5, 14)
    apply = jax.jit(lambda metadata: model.apply(variables, x, metadata)["logits"])
    base = {"age": jnp.array([40.0, 60.0]), "sex": jnp.array([0, 1]), "view": jnp.array([0, 1])}
    base_logits = apply(base)
    for field, value in (("age", 85.0), ("sex", 1), ("view", 1)):
        changed = {**base, field: base[field].at[0].set(value)}
        logits = apply(changed)
        np.testing.assert_array_equal(logits[1], base_logits[1])  # the other example is untouched
        expected = (encode_metadata(changed) - encode_metadata(base))[0] @ kernel[-5:]
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(logits[0] - base_logits[0], expected, atol=1e-5)


def test_fusion_refuses_to_run_without_metadata():
    model = MetadataClassifier(TinyResNet(), num_classes=14)
    with pytest.raises(ValueError, match="needs metadata"):
        jax.eval_shape(model.init, KEY, jnp.zeros((1, 32, 32, 3)))


def test_plain_classifier_keeps_its_names_takes_train_as_keyword_and_ignores_metadata():
    model = create_model("resnet18", 14)
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    variables = jax.jit(lambda key: model.init(key, x, train=False))(KEY)
    assert set(variables["params"]) == {"backbone", "fc"} and set(variables["batch_stats"]) == {"backbone"}

    @jax.jit
    def logits(variables, metadata):
        eval_logits = model.apply(variables, x, metadata=metadata)["logits"]
        train_logits = model.apply(variables, x, train=True, metadata=metadata, mutable=["batch_stats"])[0]["logits"]
        return eval_logits, train_logits

    without = logits(variables, None)
    with_metadata = logits(variables, {"age": jnp.array([20.0, 90.0]), "sex": jnp.array([1, 0]),
                                       "view": jnp.array([1, 1])})
    jax.tree.map(np.testing.assert_array_equal, without, with_metadata)
    assert not np.allclose(*without)  # train=True took effect (batch statistics, not the running ones)


def test_lse_pooling_is_wangs_formula():
    """x_p = (1/r) log[(1/S) Σ exp(r x_ij)], computed stably; it lies between the mean and the max, and tends to the
    max as r → ∞ (within log(S) / r)."""
    from cxrjax.models.heads import lse_pool

    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32) * 3
    expected = np.log(np.mean(np.exp(10.0 * x.astype(np.float64)), axis=(1, 2))) / 10.0
    np.testing.assert_allclose(lse_pool(jnp.asarray(x), 10.0), expected, rtol=1e-6, atol=1e-6)
    pooled = np.asarray(lse_pool(jnp.asarray(x), 1.0))
    assert (x.mean(axis=(1, 2)) < pooled).all() and (pooled < x.max(axis=(1, 2))).all()
    np.testing.assert_allclose(lse_pool(jnp.asarray(x), 1e4), x.max(axis=(1, 2)), atol=np.log(35) / 1e4)
    assert np.isfinite(lse_pool(jnp.asarray(x * 1e3), 10.0)).all()  # exp(10 · 3000) would overflow unshifted
