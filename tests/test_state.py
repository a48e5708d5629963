"""Optimizer pieces: the step-decay schedule's exact values and frozen modules that really stay fixed."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cxrjax.configs import default
from cxrjax.state import create_optimizer, learning_rate_schedule


def test_step_decay_divides_by_ten_every_three_epochs():
    optimizer = default.get_config().optimizer  # Ge 2018: Adam 1e-4, ÷10 every 3 epochs
    schedule = learning_rate_schedule(optimizer, steps_per_epoch=100)
    assert [float(schedule(s)) for s in (0, 299, 300, 599, 600)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])
    constant = learning_rate_schedule(ml_collections.ConfigDict({"learning_rate": 0.1, "decay_every_epochs": 0}), 10)
    assert float(constant(10_000)) == pytest.approx(0.1)


def test_frozen_modules_get_no_update():
    params = {"backbone": {"w": jnp.ones((3, 3))}, "fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    optimizer = default.get_config().optimizer
    optimizer.weight_decay = 0.1  # decay must not move frozen weights either
    tx = create_optimizer(optimizer, learning_rate_schedule(optimizer, 10), frozen=("backbone",))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert not np.any(updates["backbone"]["w"])
    assert np.all(np.asarray(updates["fc"]["kernel"]) < 0)
    with pytest.raises(ValueError, match="cannot freeze"):
        bad = create_optimizer(optimizer, learning_rate_schedule(optimizer, 10), frozen=("stream1",))
        bad.init(params)
