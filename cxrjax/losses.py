"""Losses and their composition over a model's named heads.

Contract: `loss(logits [B, C], labels [B, C] in {0, 1}, **hyperparameters) -> [B]`, the per-example loss summed over
classes, computed in float32 whatever the model's compute dtype. The training objective is the mask-weighted mean over
the batch (the mask drops padding), combined over heads as `{head: (loss name, weight, kwargs)}`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp


def _f32(logits, labels):
    return jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.float32)


def bce(logits, labels):
    """Binary cross-entropy summed over classes, via log-sigmoid (never log(sigmoid), which is -inf for x < -88)."""
    x, y = _f32(logits, labels)
    return -jnp.sum(y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x), axis=-1)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "bce": bce,
}


def masked_mean(per_example, mask):
    """Mean over the real (mask = 1) examples of a padded batch."""
    mask = jnp.asarray(mask, jnp.float32)
    return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _term(spec) -> tuple[str, float, dict[str, Any]]:
    """Accepts (name, weight), (name, weight, kwargs) or a mapping with keys loss / weight / kwargs."""
    if isinstance(spec, Mapping):
        return spec["loss"], float(spec.get("weight", 1.0)), dict(spec.get("kwargs", None) or {})
    name, weight, *rest = spec
    return name, float(weight), dict(rest[0]) if rest else {}


def build_objective(spec: Mapping[str, Any], positive_rate=None):
    """Returns `objective(outputs, labels, mask) -> (total, {head: loss})` for a `{head: term}` spec.

    A loss that takes a `positive_rate` argument (class-aware losses) gets the per-finding positive rate of the
    training split unless its kwargs set one.
    """
    terms = []
    for head, term in spec.items():
        name, weight, kwargs = _term(term)
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} for head {head!r}; known: {', '.join(sorted(LOSSES))}")
        fn = LOSSES[name]
        if "positive_rate" in inspect.signature(fn).parameters and "positive_rate" not in kwargs:
            if positive_rate is None:
                raise ValueError(f"loss {name!r} needs the training split's positive rate")
            kwargs["positive_rate"] = jnp.asarray(positive_rate, jnp.float32)
        terms.append((head, fn, weight, kwargs))

    def objective(outputs, labels, mask):
        per_head = {head: masked_mean(fn(outputs[head], labels, **kwargs), mask) for head, fn, _, kwargs in terms}
        total = sum(weight * per_head[head] for head, _, weight, _ in terms)
        return total, per_head

    return objective
