"""Optimizer pieces: the step-decay schedule's exact values, frozen modules that really stay fixed, and the
validation-plateau decay."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cxrjax.configs import default
from cxrjax.training.plateau import PlateauDecay, set_scale
from cxrjax.training.state import create_optimizer, learning_rate_schedule


def test_step_decay_divides_by_ten_every_three_epochs():
    optimizer = default.get_config().optimizer  # Ge 2018: Adam 1e-4, ÷10 every 3 epochs
    schedule = learning_rate_schedule(optimizer, steps_per_epoch=100)
    assert [float(schedule(s)) for s in (0, 299, 300, 599, 600)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])
    constant = learning_rate_schedule(ml_collections.ConfigDict({"learning_rate": 0.1, "decay_every_epochs": 0,
                                                                    "schedule": "step"}), 10)
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


def test_plateau_decay_follows_the_validation_loss_and_resumes_exactly():
    decay = PlateauDecay(factor=0.1, patience=1)
    scales = [decay.observe(loss) for loss in (1.0, 0.9, 0.95)]
    assert scales == pytest.approx([1.0, 1.0, 0.1])  # the first epoch without improvement divides by ten
    resumed = PlateauDecay(factor=0.1, patience=1)
    resumed.load_state_dict(json.loads(json.dumps(decay.state_dict())))  # as saved beside a checkpoint
    for loss in (0.96, 0.5, 0.6):
        assert resumed.observe(loss) == pytest.approx(decay.observe(loss))
    assert decay.scale == pytest.approx(1e-3)


def test_plateau_scale_multiplies_every_update_including_adams():
    params = {"backbone": {"w": jnp.arange(3.0)}, "fc": {"b": jnp.ones(2)}}
    optimizer = default.get_config().optimizer
    optimizer.schedule, optimizer.weight_decay = "plateau", 1e-2
    tx = create_optimizer(optimizer, learning_rate_schedule(optimizer, 10), frozen=("fc",))
    grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
    state = tx.init(params)
    full, _ = tx.update(grads, state, params)
    scaled, _ = tx.update(grads, set_scale(state, 0.1, jax.sharding.SingleDeviceSharding(jax.devices()[0])), params)
    np.testing.assert_allclose(scaled["backbone"]["w"], 0.1 * np.asarray(full["backbone"]["w"]), rtol=1e-6)
    assert np.all(np.asarray(full["backbone"]["w"]) != 0) and not np.any(scaled["fc"]["b"])
    with pytest.raises(ValueError, match="unknown schedule"):
        optimizer.schedule = "cosine"
        learning_rate_schedule(optimizer, 10)
