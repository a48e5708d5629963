"""Learning-rate decay on a validation plateau (CheXNet: "decay the learning rate by a factor of 10 each time the
validation loss plateaus after an epoch").

The decision uses optax's own `contrib.reduce_on_plateau` logic, but runs on the host once per epoch on the
validation loss, which the jitted training step never sees. Its output, a scale, is written into the optimizer state
(the `step_size` of an injected `optax.scale` at the end of the chain, see `state.create_optimizer`), so the step
stays compiled once and the scale is checkpointed with the state. The decision's own state (best loss, epochs since)
is small JSON saved beside each checkpoint, so that a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

SCALE_HYPERPARAMETER = "step_size"  # the injected optax.scale's hyperparameter in the optimizer state


class PlateauDecay:
    """Multiplies the learning rate by `factor` after `patience` epochs without a relative improvement of the
    validation loss by more than `rtol` (optax semantics: patience=1 decays after the first epoch that does not
    improve; torch's ReduceLROnPlateau would call that patience=0)."""

    def __init__(self, factor: float, patience: int, rtol: float = 1e-4):
        self._transform = optax.contrib.reduce_on_plateau(factor=factor, patience=patience, rtol=rtol)
        self._state = self._transform.init(None)

    @property
    def scale(self) -> float:
        return float(self._state.scale)

    def observe(self, validation_loss: float) -> float:
        """Records one epoch's validation loss; returns the learning-rate scale to use from now on."""
        _, self._state = self._transform.update(updates={}, state=self._state, value=validation_loss)
        return self.scale

    def state_dict(self) -> dict:
        return {name: np.asarray(value).item() for name, value in self._state._asdict().items()}

    def load_state_dict(self, saved: dict) -> None:
        self._state = self._state._replace(**{name: np.asarray(value, np.asarray(getattr(self._state, name)).dtype)
                                              for name, value in saved.items()})


def set_scale(opt_state, scale: float, sharding: jax.sharding.Sharding):
    """The optimizer state with the injected learning-rate scale replaced (placed with `sharding`, replicated)."""
    value = jax.device_put(np.float32(scale), sharding)
    return optax.tree_utils.tree_set(opt_state, **{SCALE_HYPERPARAMETER: value})
