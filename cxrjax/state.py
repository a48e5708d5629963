"""The train state and what builds it: optimizer, learning-rate schedule, replicated initialisation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from cxrjax import sharding

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    batch_stats: Any


def compute_dtype(name: str):
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {sorted(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]


def learning_rate_schedule(optimizer: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Step decay: the rate times `decay_factor` every `decay_every_epochs` epochs (Ge 2018: ÷10 every 3)."""
    if optimizer.decay_every_epochs <= 0:
        return optax.constant_schedule(optimizer.learning_rate)
    return optax.exponential_decay(optimizer.learning_rate, transition_steps=optimizer.decay_every_epochs *
                                   steps_per_epoch, decay_rate=optimizer.decay_factor, staircase=True)


def create_optimizer(optimizer: ml_collections.ConfigDict, schedule: optax.Schedule):
    """adam: torch.optim.Adam semantics (weight decay as L2 added to the gradient, as the papers' PyTorch code has)."""
    decay = [optax.add_decayed_weights(optimizer.weight_decay)] if optimizer.weight_decay else []
    if optimizer.name == "adam":
        return optax.chain(*decay, optax.adam(schedule, b1=optimizer.b1, b2=optimizer.b2))
    if optimizer.name == "adamw":
        return optax.adamw(schedule, b1=optimizer.b1, b2=optimizer.b2, weight_decay=optimizer.weight_decay)
    if optimizer.name == "sgd":
        return optax.chain(*decay, optax.sgd(schedule, momentum=optimizer.momentum))
    raise ValueError(f"unknown optimizer {optimizer.name!r}; choose adam, adamw or sgd")


def create_train_state(model, tx, image_shape: tuple[int, int, int], rng, mesh) -> TrainState:
    """Initialises parameters directly as replicated global arrays."""

    def init(rng):
        variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        return TrainState.create(apply_fn=model.apply, params=variables["params"],
                                 batch_stats=variables.get("batch_stats", {}), tx=tx)

    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    return jax.jit(init, out_shardings=shardings)(rng)


