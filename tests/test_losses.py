"""Every loss against an independent float64 NumPy reference of its formula, plus the properties the training code
relies on: jit / vmap / bf16 give the float32 answer, values and gradients finite at logits ±100, numerical gradients,
and the composition of heads in `build_objective`.

A new loss gets all of these by adding one row to CASES (a test fails until it has one).
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cxrjax import losses
from cxrjax.data.class_stats import positive_rate

C = 14
# Positive rates spanning ChestX-ray14's range (Hernia ~0.2%, Infiltration ~18%), made float32-exact so that the
# float32 loss and the float64 reference see the same numbers.
RATE = np.linspace(0.002, 0.45, C).astype(np.float32).astype(np.float64)
CLASS_WEIGHT = np.linspace(0.5, 2.0, C).astype(np.float32).astype(np.float64)
POS_WEIGHT = np.linspace(1.0, 8.0, C).astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------------
# Independent references: float64 NumPy, written from the formulas (not from cxrjax's code).


def _p_and_q(x):
    """p = sigmoid(x) and q = 1 - p, each computed directly so that neither loses precision to the subtraction."""
    return 1.0 / (1.0 + np.exp(-x)), 1.0 / (1.0 + np.exp(x))


def ref_bce(x, y):
    p, q = _p_and_q(x)
    return -np.sum(y * np.log(p) + (1 - y) * np.log(q), axis=-1)


def ref_weighted_bce(x, y, pos_weight=None, neg_weight=None, mode="fixed", mask=None):
    p, q = _p_and_q(x)
    if mode == "batch":
        real = np.ones(len(y)) if mask is None else np.asarray(mask, np.float64)
        n_pos, n_neg = np.sum(real[:, None] * y), np.sum(real[:, None] * (1 - y))
        pos_weight = (n_pos + n_neg) / n_pos if n_pos else 0.0  # no positive term exists to weigh
        neg_weight = (n_pos + n_neg) / n_neg if n_neg else 0.0
    pos_weight = 1.0 if pos_weight is None else np.asarray(pos_weight)
    neg_weight = 1.0 if neg_weight is None else np.asarray(neg_weight)
    return -np.sum(pos_weight * y * np.log(p) + neg_weight * (1 - y) * np.log(q), axis=-1)


def ref_focal(x, y, gamma=2.0, alpha=0.25):
    p, q = _p_and_q(x)
    ce = -(y * np.log(p) + (1 - y) * np.log(q))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.sum(-1)


def ref_asl(x, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, eps=1e-8, stop_focusing_gradient=True, weights_at=None):
    """Ridnik et al. 2021; `weights_at` evaluates the focusing weights at other logits (constants to a derivative)."""

    def p_m(logits):
        return np.maximum(_p_and_q(logits)[0] - clip, 0.0)

    p, q = _p_and_q(x)
    w_at = x if weights_at is None else weights_at
    w_pos = _p_and_q(w_at)[1] ** gamma_pos
    w_neg = p_m(w_at) ** gamma_neg
    return -np.sum(
        y * w_pos * np.log(np.maximum(p, eps)) + (1 - y) * w_neg * np.log(np.maximum(1 - p_m(x), eps)), axis=-1
    )


def ref_msml(x, y):
    out = np.zeros(len(x))
    for b, (row, positive) in enumerate(zip(x, y > 0.5)):
        negatives = np.exp(row[~positive]).sum()
        terms = [-np.log(np.exp(x_l) / (np.exp(x_l) + negatives)) for x_l in row[positive]]
        out[b] = np.mean(terms) if terms else 0.0
    return out


def ref_class_aware(
    x, y, positive_rate, margin=0.2, class_weight=None, decouple=True, stop_weight_gradient=True, weights_at=None
):
    """FPT capstone 2023; 1 - max(p - m, 0) = min(1 - p + m, 1) keeps log(1 - p_m) exact where p rounds to 1."""
    alpha = np.asarray(positive_rate)
    p, q = _p_and_q(x)
    p_w, q_w = _p_and_q(x if weights_at is None else weights_at)
    w_pos = 1 - alpha**q_w
    w_neg = 1 - (1 - alpha) ** p_w if decouple else 1 - alpha**p_w
    w_c = 1.0 if class_weight is None else np.asarray(class_weight)
    log_one_minus_p_m = np.log(np.minimum(q + margin, 1.0))
    return -np.sum(w_c * (y * w_pos * np.log(p) + (1 - y) * w_neg * log_one_minus_p_m), axis=-1)


def ref_can_balance(x, y, positive_rate, gamma=2.0):
    alpha = np.asarray(positive_rate)
    p, q = _p_and_q(x)
    return -np.sum(
        y * q**gamma * np.log(p) / (2 * alpha) + (1 - y) * p**gamma * np.log(q) / (2 * (1 - alpha)), axis=-1
    )


# (id, registered name, JSON-able kwargs, reference, whether the gradient flows through every factor)
CASES = [
    ("bce", "bce", {}, ref_bce, True),
    ("weighted_bce", "weighted_bce", {"pos_weight": POS_WEIGHT.tolist(), "neg_weight": 0.5}, ref_weighted_bce, True),
    ("weighted_bce-batch", "weighted_bce", {"mode": "batch"}, ref_weighted_bce, True),
    ("focal", "focal", {}, ref_focal, True),
    ("focal-gamma0-no-alpha", "focal", {"gamma": 0.0, "alpha": -1}, ref_focal, True),
    ("focal-gamma1.5", "focal", {"gamma": 1.5, "alpha": 0.6}, ref_focal, True),
    ("asl", "asl", {}, ref_asl, False),
    ("asl-no-clip", "asl", {"clip": 0.0, "gamma_pos": 2.0}, ref_asl, False),
    ("asl-gradient-through", "asl", {"gamma_pos": 0.0, "stop_focusing_gradient": False}, ref_asl, True),
    ("msml", "msml", {}, ref_msml, True),
    ("class_aware", "class_aware", {"positive_rate": RATE.tolist()}, ref_class_aware, False),
    (
        "class_aware-without-margin",
        "class_aware",
        {"positive_rate": RATE.tolist(), "margin": 0.0},
        ref_class_aware,
        False,
    ),
    (
        "class_aware-without-decoupling",
        "class_aware",
        {"positive_rate": RATE.tolist(), "decouple": False},
        ref_class_aware,
        False,
    ),
    (
        "class_aware-weighted-gradient-through",
        "class_aware",
        {"positive_rate": RATE.tolist(), "class_weight": CLASS_WEIGHT.tolist(), "stop_weight_gradient": False},
        ref_class_aware,
        True,
    ),
    ("can_balance", "can_balance", {"positive_rate": RATE.tolist()}, ref_can_balance, True),
    ("can_balance-gamma0", "can_balance", {"positive_rate": RATE.tolist(), "gamma": 0.0}, ref_can_balance, True),
]
CASE_IDS = [case[0] for case in CASES]
FULL_GRADIENT_CASES = [case for case in CASES if case[4]]
FROZEN_WEIGHT_CASES = [case for case in CASES if not case[4]]
FULL_GRADIENT_IDS = [case[0] for case in FULL_GRADIENT_CASES]
FROZEN_WEIGHT_IDS = [case[0] for case in FROZEN_WEIGHT_CASES]


def make_batch(seed=0, n_random=16):
    """float32 logits and {0, 1} labels: random rows, a row with no positive, one with all positives, and rows of
    logits ±100 (confidently right, confidently wrong, mixed; with no / all / some positives)."""
    rng = np.random.default_rng(seed)
    random_x = rng.normal(0.0, 3.0, (n_random + 2, C))
    random_y = (rng.random((n_random + 2, C)) < 0.25).astype(np.float64)
    random_y[-2], random_y[-1] = 0.0, 1.0
    signs = rng.choice([-1.0, 1.0], (5, C))
    extreme_y = np.stack([np.ones(C), np.zeros(C), (rng.random(C) < 0.5), np.ones(C), np.zeros(C)]).astype(np.float64)
    extreme_x = 100.0 * np.stack([np.ones(C), -np.ones(C), signs[2], signs[3], signs[4]])
    x = np.concatenate([random_x, extreme_x]).astype(np.float32)
    y = np.concatenate([random_y, extreme_y])
    return x, y


def bound(name, kwargs):
    return functools.partial(losses.LOSSES[name], **kwargs)


def assert_matches(actual, expected, rtol=1e-6):
    """Relative agreement; the absolute floor only admits float32 underflow of losses below 1e-30 (rows at ±100)."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=1e-30)


# ---------------------------------------------------------------------------------------------------------------------
# Values


def test_every_registered_loss_has_a_reference_case():
    # can_attention works on attention maps [B, 2, H*W], not logits; tests/test_multistream.py checks it.
    assert {case[1] for case in CASES} == set(losses.LOSSES) - {"can_attention"}


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", CASES, ids=CASE_IDS)
def test_float32_matches_float64_reference(case_id, name, kwargs, reference, _):
    x, y = make_batch()
    actual = bound(name, kwargs)(jnp.asarray(x), jnp.asarray(y, jnp.float32))
    assert actual.shape == (len(x),) and actual.dtype == jnp.float32
    assert_matches(actual, reference(x.astype(np.float64), y, **kwargs))


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", CASES, ids=CASE_IDS)
def test_float64_matches_reference_to_float64_precision(case_id, name, kwargs, reference, _):
    """In float64 the loss must be the formula itself, not just close to it at float32 precision."""
    x, y = make_batch(seed=1)
    with jax.enable_x64(True):
        actual = bound(name, kwargs)(jnp.asarray(x, jnp.float64), jnp.asarray(y))
        assert actual.dtype == jnp.float64
    assert_matches(actual, reference(x.astype(np.float64), y, **kwargs), rtol=1e-11)


def test_bce_matches_optax():
    optax = pytest.importorskip("optax")
    x, y = make_batch(seed=2)
    expected = optax.sigmoid_binary_cross_entropy(jnp.asarray(x), jnp.asarray(y, jnp.float32)).sum(-1)
    np.testing.assert_allclose(losses.bce(x, y), expected, rtol=1e-6)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.0, -1.0), (1.5, 0.6)])
def test_focal_matches_torchvision(gamma, alpha):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    x, y = make_batch(seed=3)
    expected = ops.sigmoid_focal_loss(
        torch.tensor(x, dtype=torch.float64), torch.tensor(y), alpha=alpha, gamma=gamma, reduction="none"
    ).sum(-1)
    assert_matches(losses.focal(x, y, gamma=gamma, alpha=alpha), expected.numpy())


def alibaba_asymmetric_loss(
    torch, x, y, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8, disable_torch_grad_focal_loss=True
):
    """Alibaba-MIIL/ASL src/loss_functions/losses.py `AsymmetricLoss.forward`, re-typed from its formula; the only
    change is the last line's reduction, kept per example (`sum(-1)`) instead of over the whole batch."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        if disable_torch_grad_focal_loss:
            torch.set_grad_enabled(False)
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        one_sided_w = torch.pow(1 - pt, one_sided_gamma)
        if disable_torch_grad_focal_loss:
            torch.set_grad_enabled(True)
        loss *= one_sided_w
    return -loss.sum(-1)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"stop_focusing_gradient": False}, {"clip": 0.0, "gamma_pos": 2.0}, {"gamma_neg": 2.0, "clip": 0.1}],
    ids=["default", "gradient-through", "no-clip", "gamma_neg2-clip0.1"],
)
def test_asl_matches_alibaba_reference_values_and_gradients(kwargs):
    torch = pytest.importorskip("torch")
    x, y = make_batch(seed=4)
    torch_kwargs = {key: value for key, value in kwargs.items() if key != "stop_focusing_gradient"}
    torch_kwargs["disable_torch_grad_focal_loss"] = kwargs.get("stop_focusing_gradient", True)
    x_torch = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    expected = alibaba_asymmetric_loss(torch, x_torch, torch.tensor(y), **torch_kwargs)
    expected.sum().backward()

    assert_matches(losses.asl(x, y, **kwargs), expected.detach().numpy())
    with jax.enable_x64(True):
        gradient = jax.grad(lambda logits: losses.asl(logits, y, **kwargs).sum())(jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(gradient, x_torch.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_weighted_bce_batch_mode_without_positives_is_bce():
    x, _ = make_batch(seed=5)
    y = np.zeros_like(x)
    assert_matches(losses.weighted_bce(x, y, mode="batch"), ref_bce(x.astype(np.float64), y))


def test_weighted_bce_rejects_weights_in_batch_mode_and_unknown_modes():
    x, y = make_batch()
    with pytest.raises(ValueError, match="batch"):
        losses.weighted_bce(x, y, pos_weight=2.0, mode="batch")
    with pytest.raises(ValueError, match="mode"):
        losses.weighted_bce(x, y, mode="dataset")


def test_msml_gives_zero_without_positives_or_without_negatives():
    x, _ = make_batch(seed=6)
    x = x[:2]
    y = np.stack([np.zeros(C), np.ones(C)])
    np.testing.assert_array_equal(losses.msml(x, y), [0.0, 0.0])
    np.testing.assert_array_equal(jax.grad(lambda logits: losses.msml(logits, y).sum())(x), np.zeros_like(x))


# ---------------------------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", CASES, ids=CASE_IDS)
def test_values_and_gradients_finite_at_extreme_logits(case_id, name, kwargs, reference, _):
    x, y = make_batch(seed=7)
    loss = bound(name, kwargs)
    for scale in (1.0, 100.0):  # the random rows scaled up put every finding at ±hundreds
        logits = jnp.asarray(x * scale)
        value, gradient = loss(logits, y), jax.grad(lambda z: loss(z, y).sum())(logits)
        assert np.isfinite(value).all() and np.isfinite(gradient).all()


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", FULL_GRADIENT_CASES, ids=FULL_GRADIENT_IDS)
def test_gradients_match_finite_differences(case_id, name, kwargs, reference, _):
    x, y = make_batch(seed=8)
    with jax.enable_x64(True):
        labels = jnp.asarray(y)
        logits = jnp.asarray(x, jnp.float64)
        check_grads(lambda z: bound(name, kwargs)(z, labels), (logits,), order=1, modes=["rev"])


def _central_differences(per_example, x, step=1e-6):
    """d per_example(x)[b] / d x[b, c]: each example's own loss, so the batch's largest losses add no rounding."""
    gradient = np.zeros_like(x)
    for b, c in np.ndindex(x.shape):
        shift = np.zeros_like(x)
        shift[b, c] = step
        gradient[b, c] = (per_example(x + shift)[b] - per_example(x - shift)[b]) / (2 * step)
    return gradient


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", FROZEN_WEIGHT_CASES, ids=FROZEN_WEIGHT_IDS)
def test_stopped_weights_are_constants_to_the_gradient(case_id, name, kwargs, reference, _):
    """The gradient is that of the reference with its weights frozen at the evaluation point."""
    x, y = make_batch(seed=9)
    x = x.astype(np.float64)
    expected = _central_differences(lambda z: reference(z, y, weights_at=x, **kwargs), x)
    with jax.enable_x64(True):
        gradient = jax.grad(lambda logits: bound(name, kwargs)(logits, y).sum())(jnp.asarray(x))
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------------
# Transformations and dtypes


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", CASES, ids=CASE_IDS)
def test_jit_and_vmap_give_the_eager_answer(case_id, name, kwargs, reference, _):
    loss = bound(name, kwargs)
    batches = [make_batch(seed=seed) for seed in (10, 11, 12)]
    xs = jnp.stack([jnp.asarray(x) for x, _ in batches])
    ys = jnp.stack([jnp.asarray(y, jnp.float32) for _, y in batches])
    eager = np.stack([loss(x, y) for x, y in zip(xs, ys)])
    np.testing.assert_allclose(jax.jit(loss)(xs[0], ys[0]), eager[0], rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(loss)(xs, ys), eager, rtol=1e-6)


@pytest.mark.parametrize("case_id, name, kwargs, reference, _", CASES, ids=CASE_IDS)
def test_bf16_logits_and_uint8_labels_give_the_float32_result(case_id, name, kwargs, reference, _):
    x, y = make_batch(seed=13)
    x_bf16 = jnp.asarray(x, jnp.bfloat16)  # every bf16 value is exactly representable in float32
    loss = bound(name, kwargs)
    actual = loss(x_bf16, jnp.asarray(y, jnp.uint8))
    assert actual.dtype == jnp.float32
    np.testing.assert_array_equal(actual, loss(x_bf16.astype(jnp.float32), jnp.asarray(y, jnp.float32)))


# ---------------------------------------------------------------------------------------------------------------------
# Composition


def test_build_objective_weights_heads_and_ignores_padding():
    x_global, y = make_batch(seed=14)
    x_local, _ = make_batch(seed=15)
    real = len(y) - 3
    mask = np.r_[np.ones(real), np.zeros(3)]
    spec = {"global": ("bce", 1.0), "local": {"loss": "focal", "weight": 0.5, "kwargs": {"gamma": 1.0}}}
    objective = jax.jit(losses.build_objective(spec))

    total, per_head = objective({"global": x_global, "local": x_local}, y, mask)

    expected_global = ref_bce(x_global[:real].astype(np.float64), y[:real]).mean()
    expected_local = ref_focal(x_local[:real].astype(np.float64), y[:real], gamma=1.0).mean()
    assert_matches(per_head["global"], expected_global)
    assert_matches(per_head["local"], expected_local)
    assert_matches(total, expected_global + 0.5 * expected_local)

    rng = np.random.default_rng(16)
    garbage_x = x_global.copy()
    garbage_x[real:] = rng.normal(0.0, 50.0, (3, C))
    garbage_y = y.copy()
    garbage_y[real:] = 1.0 - garbage_y[real:]
    padded_total, _ = objective({"global": garbage_x, "local": x_local}, garbage_y, mask)
    assert float(padded_total) == float(total)


def test_build_objective_without_mask_averages_every_example():
    x, y = make_batch(seed=17)
    total, _ = losses.build_objective({"logits": ("msml", 1.0)})({"logits": x}, y)
    assert_matches(total, ref_msml(x.astype(np.float64), y).mean())


def test_build_objective_fills_positive_rate_unless_kwargs_set_it():
    x, y = make_batch(seed=18)
    x64 = x.astype(np.float64)
    spec = {
        "a": ("class_aware", 1.0),
        "b": ("can_balance", 1.0),
        "c": ("class_aware", 1.0, {"positive_rate": [0.3] * C}),
    }
    total, per_head = losses.build_objective(spec, positive_rate=RATE)({"a": x, "b": x, "c": x}, y)
    assert_matches(per_head["a"], ref_class_aware(x64, y, RATE).mean())
    assert_matches(per_head["b"], ref_can_balance(x64, y, RATE).mean())
    assert_matches(per_head["c"], ref_class_aware(x64, y, np.full(C, 0.3)).mean())
    with pytest.raises(ValueError, match="positive rate"):
        losses.build_objective({"a": ("class_aware", 1.0)})


def test_build_objective_keeps_padding_out_of_batch_statistics():
    x, y = make_batch(seed=19)
    real = len(y) - 4
    padded_y = y.copy()
    padded_y[real:] = 1.0  # would raise |P| if padding were counted
    mask = np.r_[np.ones(real), np.zeros(4)]
    objective = losses.build_objective({"logits": ("weighted_bce", 1.0, {"mode": "batch"})})
    total, _ = objective({"logits": x}, padded_y, mask)
    assert_matches(total, ref_weighted_bce(x[:real].astype(np.float64), y[:real], mode="batch").mean())


def test_build_objective_accepts_a_json_config():
    config = json.loads(
        json.dumps({"logits": {"loss": "weighted_bce", "weight": 2.0, "kwargs": {"pos_weight": POS_WEIGHT.tolist()}}})
    )
    x, y = make_batch(seed=20)
    total, _ = jax.jit(losses.build_objective(config))({"logits": x}, y, np.ones(len(y)))
    assert_matches(total, 2.0 * ref_weighted_bce(x.astype(np.float64), y, pos_weight=POS_WEIGHT).mean())


def test_build_objective_rejects_unknown_losses_and_hyperparameters():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.build_objective({"logits": ("hinge", 1.0)})
    with pytest.raises(ValueError, match="gama"):
        losses.build_objective({"logits": ("focal", 1.0, {"gama": 2.0})})


def test_objective_gradient_is_finite_under_jit():
    x, y = make_batch(seed=21)
    spec = {name: (name, 1.0) for name in losses.LOSSES if name != "can_attention"}  # that one takes no logits
    objective = losses.build_objective(spec, positive_rate=RATE)
    mask = np.r_[np.ones(len(y) - 2), np.zeros(2)]
    gradient = jax.jit(jax.grad(lambda z: objective({name: z for name in spec}, y, mask)[0]))(jnp.asarray(x))
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0
    np.testing.assert_array_equal(gradient[-2:], 0.0)  # padding examples get no gradient


# ---------------------------------------------------------------------------------------------------------------------
# Command-line loss specs and class statistics


def test_parse_loss_reads_names_and_hyperparameters():
    assert losses.parse_loss("bce") == {"loss": "bce", "weight": 1.0, "kwargs": {}}
    assert losses.parse_loss("class_aware:margin=0,decouple=false") == {
        "loss": "class_aware",
        "weight": 1.0,
        "kwargs": {"margin": 0, "decouple": False},
    }
    assert losses.parse_loss("weighted_bce:pos_weight=[1, 2.5],mode=fixed")["kwargs"] == {
        "pos_weight": [1, 2.5],
        "mode": "fixed",
    }
    for bad in ("hinge", "focal:gama=2", "focal:gamma"):
        with pytest.raises(ValueError):
            losses.parse_loss(bad)


def test_parsed_loss_builds_the_same_objective_as_a_direct_call():
    x, y = make_batch(seed=22)
    spec = {"logits": losses.parse_loss("asl:gamma_pos=0,clip=0.1")}
    total, _ = losses.build_objective(spec)({"logits": x}, y)
    assert_matches(total, ref_asl(x.astype(np.float64), y, gamma_pos=0.0, clip=0.1).mean())


def test_positive_rate_counts_each_finding():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], np.uint8)
    np.testing.assert_array_equal(positive_rate(labels), [0.75, 0.25, 0.0])


@pytest.mark.parametrize("labels", [np.zeros((0, C)), np.zeros(C), np.full((2, C), 0.5)], ids=["empty", "1-d", "soft"])
def test_positive_rate_rejects_what_is_not_a_multi_hot_matrix(labels):
    with pytest.raises(ValueError):
        positive_rate(labels)


def test_two_terms_can_share_a_head():
    """CAN: cross-entropy and the balance loss both on "logits", each term under its own name."""
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(4, 14)), rng.integers(0, 2, (4, 14))
    rate = np.full(14, 0.2)
    spec = {"logits": ("bce", 1.0), "balance": {"loss": "can_balance", "head": "logits", "weight": 0.5}}
    total, per_term = losses.build_objective(spec, rate)({"logits": logits}, labels)
    balance = losses.can_balance(logits, labels, positive_rate=rate).mean()
    assert set(per_term) == {"logits", "balance"}
    np.testing.assert_allclose(per_term["balance"], balance, rtol=1e-6)
    np.testing.assert_allclose(total, losses.bce(logits, labels).mean() + 0.5 * balance, rtol=1e-6)


def test_class_weights_from_positive_rates():
    """"inverse_positive_rate": w_c = (1/α_c) / mean(1/α), and the class-aware loss with it equals the loss with
    those weights given as a list."""
    rates = np.array([0.1, 0.02, 0.3, 0.002] + [0.05] * 10, np.float32)
    expected = (1 / rates) / np.mean(1 / rates)
    np.testing.assert_allclose(losses.class_weights_from_rates("inverse_positive_rate", jnp.asarray(rates)), expected,
                               rtol=1e-6)
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 14)), jnp.float32)
    labels = jnp.asarray(rng.random((6, 14)) < 0.3, jnp.float32)
    by_name = losses.class_aware(logits, labels, rates, class_weight="inverse_positive_rate")
    by_list = losses.class_aware(logits, labels, rates, class_weight=list(expected))
    np.testing.assert_allclose(by_name, by_list, rtol=1e-6)
    assert not np.allclose(by_name, losses.class_aware(logits, labels, rates))
    with pytest.raises(ValueError, match="unknown class weighting"):
        losses.class_aware(logits, labels, rates, class_weight="uniform")
