"""The train state and what builds it: optimizer, learning-rate schedule, replicated initialisation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from cxrjax.models import init_variables
from cxrjax.runtime import sharding
from cxrjax.training import plateau

SCHEDULES = ("step", "plateau")


class TrainState(train_state.TrainState):
    batch_stats: Any


def learning_rate_schedule(optimizer: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Step decay: the rate times `decay_factor` every `decay_every_epochs` epochs (Ge 2018: ÷10 every 3).

    With `schedule="plateau"` the schedule is constant and the decay is decided per epoch by `plateau.PlateauDecay`.
    """
    if optimizer.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {optimizer.schedule!r}; choose one of {SCHEDULES}")
    if optimizer.schedule == "plateau" or optimizer.decay_every_epochs <= 0:
        return optax.constant_schedule(optimizer.learning_rate)
    return optax.exponential_decay(optimizer.learning_rate, transition_steps=optimizer.decay_every_epochs *
                                   steps_per_epoch, decay_rate=optimizer.decay_factor, staircase=True)


def create_optimizer(optimizer: ml_collections.ConfigDict, schedule: optax.Schedule, frozen=()):
    """adam: torch.optim.Adam semantics (weight decay as L2 added to the gradient, as the papers' PyTorch code has).

    `frozen` names top-level modules of the model (e.g. "backbone", or "stream1" and "stream2") whose parameters get
    no update at all (Baltruschat's fixed ImageNet features, Ge's Local-Fixed stage). Their BatchNorm running
    statistics still follow the data in training mode, as with `requires_grad=False` in PyTorch.
    """
    decay = [optax.add_decayed_weights(optimizer.weight_decay)] if optimizer.weight_decay else []
    if optimizer.name == "adam":
        tx = optax.chain(*decay, optax.adam(schedule, b1=optimizer.b1, b2=optimizer.b2))
    elif optimizer.name == "adamw":
        tx = optax.adamw(schedule, b1=optimizer.b1, b2=optimizer.b2, weight_decay=optimizer.weight_decay)
    elif optimizer.name == "sgd":
        tx = optax.chain(*decay, optax.sgd(schedule, momentum=optimizer.momentum))
    else:
        raise ValueError(f"unknown optimizer {optimizer.name!r}; choose adam, adamw or sgd")
    if optimizer.schedule == "plateau":  # the host-set learning-rate scale, last so that it scales every update
        tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(**{plateau.SCALE_HYPERPARAMETER: 1.0}))
    if not frozen:
        return tx

    def labels(params):
        unknown = set(frozen) - set(params)
        if unknown:
            raise ValueError(f"cannot freeze {sorted(unknown)}: the model's modules are {sorted(params)}")
        return {name: jax.tree.map(lambda _: "frozen" if name in frozen else "trained", tree)
                for name, tree in params.items()}

    return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def create_train_state(model, tx, image_shape: tuple[int, int, int], rng, mesh) -> TrainState:
    """Initialises parameters directly as replicated global arrays."""

    def init(rng):
        variables = init_variables(model, rng, jnp.zeros((1, *image_shape), jnp.float32))
        return TrainState.create(apply_fn=model.apply, params=variables["params"],
                                 batch_stats=variables.get("batch_stats", {}), tx=tx)

    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    return jax.jit(init, out_shardings=shardings)(rng)


