"""Losses and their composition over a model's named heads.

Contract: `loss(logits [B, C], labels [B, C] in {0, 1}, **hyperparameters) -> [B]`, the per-example loss summed over
classes. Every loss is a pure function that `jit`, `grad` and `vmap` accept, computes in at least float32 whatever the
model's compute dtype (bf16 logits are upcast first; float64 stays float64, which the tests use for gradient checks)
and is finite, with finite gradients, for logits as large as ±100: log p and log(1 − p) come from log-sigmoid, never
log(sigmoid). Hyperparameters are JSON-able (numbers, booleans, strings, lists for per-class arrays) so that a config
can name a loss as `{"loss": name, "weight": w, "kwargs": {...}}`.

The training objective is the mask-weighted mean over the batch (the mask drops padding), combined over heads as
`{head: (loss name, weight, kwargs)}` by `build_objective`.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

RATE_FLOOR = 1e-6  # a finding's positive rate is kept in [RATE_FLOOR, 1 - RATE_FLOOR]; see `_clipped_rate`


def _as_float(logits, labels):
    """Logits and labels in the loss's compute dtype: the logits' dtype promoted to at least float32."""
    dtype = jnp.promote_types(jnp.result_type(logits), jnp.float32)
    return jnp.asarray(logits, dtype), jnp.asarray(labels, dtype)


def _per_class(value, dtype, default):
    """A scalar or per-class hyperparameter (a list in a JSON config) as an array; `None` means `default`."""
    return jnp.asarray(default if value is None else value, dtype)


def _clipped_rate(positive_rate, dtype):
    """The training split's per-finding positive rate, kept off 0 and 1.

    A finding absent from (or present in every image of) the training split would make log α or log(1 − α) infinite
    and the class-aware weights' gradients NaN; the floor changes nothing for ChestX-ray14 (its rarest
    finding, Hernia, is about 2e-3).
    """
    return jnp.clip(jnp.asarray(positive_rate, dtype), RATE_FLOOR, 1.0 - RATE_FLOOR)


def _focusing_weight(base, gamma):
    """base ** gamma for base in [0, 1], with a finite gradient at base = 0 for every gamma ≥ 0.

    `jnp.power`'s gradient at 0 is NaN for gamma = 0 and infinite for gamma < 1, and a saturated sigmoid makes the
    base exactly 0 (sigmoid(-100) underflows in float32), so the base is kept off 0 inside the power (the double-where
    trick) and 0 ** gamma (1 for gamma = 0, else 0) is put back outside it; the gradient there is taken as 0.
    """
    at_zero = base <= 0
    safe_base = jnp.where(at_zero, 1.0, base)
    return jnp.where(at_zero, jnp.where(gamma == 0, 1.0, 0.0), safe_base**gamma)


def _log_one_minus_shifted(x, margin):
    """log(1 − p_m), p_m = max(p − m, 0), p = sigmoid(x): finite and accurate for every logit.

    1 − p_m = min(1 − p + m, 1) = min(sigmoid(−x) + m, 1), so its log is min(logaddexp(log_sigmoid(−x), log m), 0);
    with m = 0 this is log_sigmoid(−x) exactly (log 0 = −inf drops out of the logaddexp).
    """
    return jnp.minimum(jnp.logaddexp(jax.nn.log_sigmoid(-x), jnp.log(jnp.asarray(margin, x.dtype))), 0.0)


def bce(logits, labels):
    """Binary cross-entropy summed over classes, via log-sigmoid (never log(sigmoid), which is -inf for x < -88)."""
    x, y = _as_float(logits, labels)
    return -jnp.sum(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x), axis=-1)


def weighted_bce(logits, labels, pos_weight=None, neg_weight=None, mode="fixed", mask=None):
    """BCE with separate weights for positive and negative terms: −Σ_c [β_P y log p + β_N (1 − y) log(1 − p)].

    mode="fixed": β_P = `pos_weight`, β_N = `neg_weight`, each a scalar or a per-class list (default 1: plain BCE).
    mode="batch": Wang et al. 2017 (ChestX-ray8's weighted cross-entropy), β_P = (|P| + |N|) / |P| and
    β_N = (|P| + |N|) / |N|, |P| and |N| the numbers of ones and zeros in the batch's whole label matrix (all classes
    together). `mask` [B] (which `build_objective` passes in) keeps padding examples out of the counts. A batch with
    no positive (or no negative) has no term for β_P (β_N) to weigh, so the count is floored at 1 and the other
    weight is 1 — never inf or NaN. Under data-parallel `jit` on global arrays the counts are over the global batch;
    under `vmap` they are per mapped slice.
    """
    x, y = _as_float(logits, labels)
    if mode == "batch":
        if pos_weight is not None or neg_weight is not None:
            raise ValueError("weighted_bce: mode='batch' computes its weights; do not pass pos_weight / neg_weight")
        real = jnp.ones(y.shape[:-1], y.dtype) if mask is None else jnp.asarray(mask, y.dtype)
        positives = jnp.sum(real[..., None] * y)
        negatives = jnp.sum(real[..., None] * (1.0 - y))
        pos_weight = (positives + negatives) / jnp.maximum(positives, 1.0)
        neg_weight = (positives + negatives) / jnp.maximum(negatives, 1.0)
    elif mode != "fixed":
        raise ValueError(f"weighted_bce: mode must be 'fixed' or 'batch', not {mode!r}")
    pos_weight = _per_class(pos_weight, x.dtype, 1.0)
    neg_weight = _per_class(neg_weight, x.dtype, 1.0)
    return -jnp.sum(pos_weight * y * jax.nn.log_sigmoid(x) + neg_weight * (1.0 - y) * jax.nn.log_sigmoid(-x), axis=-1)


def focal(logits, labels, gamma=2.0, alpha=0.25):
    """Focal loss (Lin et al. 2017) summed over classes: Σ_c α_t (1 − p_t)^γ BCE_c; alpha < 0 disables α_t.

    Matches `torchvision.ops.sigmoid_focal_loss(reduction="none").sum(-1)`, including its blend in the labels
    (p_t = p y + (1 − p)(1 − y)); 1 − p_t is formed from sigmoid(±x) rather than by subtraction, so it stays accurate
    where p is within float32 rounding of 0 or 1. The focusing weight carries gradient, as in the reference.
    """
    x, y = _as_float(logits, labels)
    ce = -(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
    one_minus_p_t = jax.nn.sigmoid(x) * (1.0 - y) + jax.nn.sigmoid(-x) * y
    loss = ce * _focusing_weight(one_minus_p_t, gamma)
    if alpha >= 0:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return jnp.sum(loss, axis=-1)


def asl(logits, labels, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, eps=1e-8, stop_focusing_gradient=True):
    """Asymmetric loss (Ridnik et al. 2021), as Alibaba-MIIL/ASL `AsymmetricLoss.forward`, summed over classes:

        −Σ_c [y (1 − p)^γ+ log(max(p, eps)) + (1 − y) p_m^γ− log(max(1 − p_m, eps))],  p_m = max(p − clip, 0).

    The reference's xs_neg = (1 − p + clip).clamp(max=1) is 1 − p_m; clip = 0 disables the shift, as there.
    `stop_focusing_gradient` is the reference's `disable_torch_grad_focal_loss` (default True in its
    `AsymmetricLoss` and its training script): the focusing weights are constants to the gradient. log(max(p, eps))
    is computed as max(log_sigmoid(x), log eps), the same value without log(sigmoid); for p below eps (logits below
    about −18) its gradient is 0, as in the reference.
    """
    x, y = _as_float(logits, labels)
    log_floor = jnp.log(jnp.asarray(eps, x.dtype))
    log_p = jnp.maximum(jax.nn.log_sigmoid(x), log_floor)
    log_one_minus_p_m = jnp.maximum(_log_one_minus_shifted(x, clip), log_floor)
    w_pos = _focusing_weight(jax.nn.sigmoid(-x), gamma_pos)
    w_neg = _focusing_weight(jnp.maximum(jax.nn.sigmoid(x) - clip, 0.0), gamma_neg)
    if stop_focusing_gradient:
        w_pos, w_neg = jax.lax.stop_gradient(w_pos), jax.lax.stop_gradient(w_neg)
    return -jnp.sum(y * w_pos * log_p + (1.0 - y) * w_neg * log_one_minus_p_m, axis=-1)


def msml(logits, labels):
    """Multi-label softmax loss (Ge et al. 2018, eq. 2 taken as a negative log, which its stated gradient implies):

        (1/|Y|) Σ_{l∈Y} −log(e^{x_l} / (e^{x_l} + Σ_{k∉Y} e^{x_k}))
            = (1/|Y|) Σ_{l∈Y} softplus(logsumexp_{k∉Y} x_k − x_l),

    each positive competing against all negatives in a softmax. An example with no positive ("No Finding") gives 0.
    With no negative the logsumexp is over an empty set and each term is softplus(−inf) = 0. Positives are masked
    out of the logsumexp with the dtype's most negative finite value rather than −inf, so no infinity enters the
    computation at all: an all-positive row gives lse ≈ −3.4e38, terms and gradients exactly 0, never NaN.
    """
    x, y = _as_float(logits, labels)
    positive = y > 0.5
    negatives_only = jnp.where(positive, jnp.finfo(x.dtype).min, x)
    log_sum_exp_negatives = jax.nn.logsumexp(negatives_only, axis=-1, keepdims=True)
    per_positive = jnp.where(positive, jax.nn.softplus(log_sum_exp_negatives - x), 0.0)
    return jnp.sum(per_positive, axis=-1) / jnp.maximum(jnp.sum(positive, axis=-1), 1).astype(x.dtype)


CLASS_WEIGHTINGS = ("inverse_positive_rate",)


def class_weights_from_rates(weighting: str, positive_rate):
    """Per-class weights w_c from the training split's positive rates α_c.

    "inverse_positive_rate" (a reading of the capstone's "based on the ratio of positive samples between classes"):
    w_c = (1 / α_c) / mean_j (1 / α_j), i.e. the ratio of a typical class's positives to class c's, normalised to a
    mean of 1 so that the loss keeps the scale of w_c = 1. On ChestX-ray14 it weights Hernia (α ≈ 0.002) about 100x
    more than Infiltration (α ≈ 0.18)."""
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class weighting {weighting!r}; choose one of {CLASS_WEIGHTINGS} or give a list")
    inverse = 1.0 / positive_rate
    return inverse / jnp.mean(inverse)


def class_aware(
    logits, labels, positive_rate, margin=0.2, class_weight=None, decouple=True, stop_weight_gradient=True
):
    """Class-aware loss for long-tailed multi-label data (FPT capstone 2023):

        −Σ_c w_c [y w+ log p + (1 − y) w− log(1 − p_m)],
        w+ = 1 − α_c^(1−p),  w− = 1 − (1 − α_c)^p,  p_m = max(p − m, 0)

    α_c = `positive_rate`, the finding's positive rate in the training split (`build_objective` fills it in);
    `class_weight` w_c is a per-class list, default 1, or "inverse_positive_rate" (`class_weights_from_rates`: the
    capstone bases it on "the ratio of positive samples between classes" without a formula). Easy positives (p → 1)
    and easy negatives (p → 0) are down-weighted, the negatives of a rare finding most. w+ and w− are constants to
    the gradient unless `stop_weight_gradient=False`.

    The ablation's rows, as read here (the capstone does not spell them out):
      * "without margin": `margin=0` (p_m = p, so the negative term is plain log(1 − p)).
      * "without decoupling": `decouple=False`, one weight function for both label values,
        w = 1 − α_c^(1 − p_t) with p_t the probability given to the true label (p for a positive, 1 − p for a
        negative): positives keep w+, negatives get 1 − α_c^p instead of 1 − (1 − α_c)^p. Decoupling thus means that
        negatives are weighted by their own rate 1 − α_c rather than by the positives' α_c.
    w− takes p, not p_m, as the capstone's formula reads. log(1 − p_m) is `_log_one_minus_shifted` (finite without an
    eps clamp); α_c is kept in [1e-6, 1 − 1e-6] (`_clipped_rate`).
    """
    x, y = _as_float(logits, labels)
    alpha = _clipped_rate(positive_rate, x.dtype)
    if isinstance(class_weight, str):
        class_weight = class_weights_from_rates(class_weight, alpha)
    p, one_minus_p = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
    w_pos = -jnp.expm1(one_minus_p * jnp.log(alpha))
    w_neg = -jnp.expm1(p * (jnp.log1p(-alpha) if decouple else jnp.log(alpha)))
    if stop_weight_gradient:
        w_pos, w_neg = jax.lax.stop_gradient(w_pos), jax.lax.stop_gradient(w_neg)
    per_class = y * w_pos * jax.nn.log_sigmoid(x) + (1.0 - y) * w_neg * _log_one_minus_shifted(x, margin)
    return -jnp.sum(_per_class(class_weight, x.dtype, 1.0) * per_class, axis=-1)


def can_balance(logits, labels, positive_rate, gamma=2.0):
    """Multi-label balance loss in the spirit of Ma, Wang & Hoi 2019 (CAN) — an interpretation, not their formula.

    Known from the paper's summary: it "re-balances positives and negatives within each disease and down-weights easy
    samples"; its equation is not available. Assumed here:
      * re-balancing: within finding c, positives weigh 1 / (2 α_c) and negatives 1 / (2 (1 − α_c)), α_c the
        training split's positive rate (`positive_rate`, filled in by `build_objective`), so that over the training
        distribution positives and negatives of each finding carry equal total weight and the mean weight is 1 (the
        scale of BCE). The training split's rate, not the batch's: a batch of 32 rarely holds a Hernia (0.2%).
      * easy-sample down-weighting: the focal factor (1 − p_t)^γ (Lin et al. 2017), with gradient, γ = 2.

        −Σ_c [y (1 − p)^γ log p / (2 α_c) + (1 − y) p^γ log(1 − p) / (2 (1 − α_c))]

    The paper adds this term to cross-entropy and an attention loss; compose them with `build_objective`.
    """
    x, y = _as_float(logits, labels)
    alpha = _clipped_rate(positive_rate, x.dtype)
    positive_term = _focusing_weight(jax.nn.sigmoid(-x), gamma) * jax.nn.log_sigmoid(x) / (2.0 * alpha)
    negative_term = _focusing_weight(jax.nn.sigmoid(x), gamma) * jax.nn.log_sigmoid(-x) / (2.0 * (1.0 - alpha))
    return -jnp.sum(y * positive_term + (1.0 - y) * negative_term, axis=-1)


def attention_agreement(attention, labels=None):
    """The attention loss of the Cross-Attention Network (Ma, Wang & Hoi 2019), as interpreted in
    `cxrjax.models.multistream.CrossAttentionNetwork` (the paper's formula is not available): the total variation
    distance between the two branches' spatial attention maps, ½ Σ_n |a1(n) − a2(n)| ∈ [0, 1].

    `attention`: [B, 2, N], two distributions over the N = H·W locations (the CAN's 'attention' output). 0 when the
    branches attend to the same places, 1 when to disjoint ones. `labels` is not used (the attention loss needs no
    annotation); it is accepted for the loss contract, so that `build_objective` composes it on the 'attention' head.
    """
    maps = jnp.asarray(attention, jnp.promote_types(jnp.result_type(attention), jnp.float32))
    return 0.5 * jnp.sum(jnp.abs(maps[:, 0] - maps[:, 1]), axis=-1)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "bce": bce,
    "weighted_bce": weighted_bce,
    "focal": focal,
    "asl": asl,
    "msml": msml,
    "class_aware": class_aware,
    "can_balance": can_balance,
    "can_attention": attention_agreement,  # on the CAN's 'attention' output [B, 2, H*W], not on logits
}


def masked_mean(per_example, mask):
    """Mean over the real (mask = 1) examples of a padded batch."""
    mask = jnp.asarray(mask, jnp.float32)
    return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_loss(name: str, kwargs: Mapping[str, Any]) -> Callable[..., jax.Array]:
    """The registered loss `name`, after checking that it accepts `kwargs` (a misspelt hyperparameter fails here)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[name]
    try:
        inspect.signature(fn).bind_partial(None, None, **kwargs)
    except TypeError as error:
        raise ValueError(f"loss {name!r}: {error}") from None
    return fn


def _term(key: str, spec) -> tuple[str, str, float, dict[str, Any]]:
    """(head, loss name, weight, kwargs) of a term given as (name, weight), (name, weight, kwargs) or a mapping with
    keys loss / weight / kwargs / head. The head defaults to the term's key; naming it lets two terms share a head
    (CAN: cross-entropy and the balance loss on "logits")."""
    if isinstance(spec, Mapping):
        return (spec.get("head") or key, spec["loss"], float(spec.get("weight", 1.0)),
                dict(spec.get("kwargs", None) or {}))
    name, weight, *rest = spec
    return key, name, float(weight), dict(rest[0]) if rest else {}


def build_objective(spec: Mapping[str, Any], positive_rate=None):
    """Returns `objective(outputs, labels, mask=None) -> (total, {term: loss})` for a `{term: spec}` spec, where a
    term applies its loss to the model output named by its key (or by its "head" field).

    A loss that takes a `positive_rate` argument (class-aware losses) gets the per-finding positive rate of the
    training split (`cxrjax.data.class_stats.positive_rate`) unless its kwargs set one. A loss that takes a `mask`
    argument (batch statistics: weighted_bce mode="batch") gets the batch's padding mask, so padding stays out of
    its counts.
    `mask=None` means every example is real.
    """
    terms = []
    for key, term in spec.items():
        head, name, weight, kwargs = _term(key, term)
        fn = _check_loss(name, kwargs)
        parameters = inspect.signature(fn).parameters
        if "positive_rate" in parameters and "positive_rate" not in kwargs:
            if positive_rate is None:
                raise ValueError(f"loss {name!r} for head {head!r} needs the training split's positive rate")
            kwargs["positive_rate"] = jnp.asarray(positive_rate, jnp.float32)
        terms.append((key, head, fn, weight, kwargs, "mask" in parameters))

    def objective(outputs, labels, mask=None):
        if mask is None:
            mask = jnp.ones(jnp.shape(labels)[:1], jnp.float32)
        per_term = {}
        for key, head, fn, _, kwargs, takes_mask in terms:
            per_example = fn(outputs[head], labels, **kwargs, **({"mask": mask} if takes_mask else {}))
            per_term[key] = masked_mean(per_example, mask)
        total = sum(weight * per_term[key] for key, _, _, weight, _, _ in terms)
        return total, per_term

    return objective


_LITERALS = {"true": True, "false": False, "none": None, "null": None}


def _parse_value(text: str):
    """A hyperparameter value from the command line: true/false/none, a JSON number or list, else the text itself."""
    if text.lower() in _LITERALS:
        return _LITERALS[text.lower()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_loss(text: str) -> dict[str, Any]:
    """One loss term from a command-line string, e.g. for an ablation over losses.

    `"class_aware:margin=0,decouple=false"` -> `{"loss": "class_aware", "weight": 1.0, "kwargs": {"margin": 0,
    "decouple": False}}`; lists may hold commas (`"weighted_bce:pos_weight=[1,2]"`). Name and hyperparameters are
    checked against the registry.
    """
    name, _, arguments = text.strip().partition(":")
    kwargs = {}
    for assignment in filter(None, re.split(r",(?![^\[]*\])", arguments)):
        key, equals, value = assignment.partition("=")
        if not equals:
            raise ValueError(f"{text!r}: expected key=value, got {assignment!r}")
        kwargs[key.strip()] = _parse_value(value.strip())
    _check_loss(name, kwargs)
    return {"loss": name, "weight": 1.0, "kwargs": kwargs}
