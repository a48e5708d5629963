"""A run's fixed parts, built from its config: mesh, shards, split, model, schedule and the initial state.

Training and evaluation build the same `Run` from the same config (the one saved in the checkpoint), so a checkpoint
restores onto exactly the structure it was saved from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from cxrjax import checkpoint, sharding, weights
from cxrjax import input as input_lib
from cxrjax.findings import NUM_FINDINGS
from cxrjax.models import create_model, load_backbone
from cxrjax.state import TrainState, compute_dtype, create_optimizer, create_train_state, learning_rate_schedule
from data_pipelines.prepare import builder_dir


def init_key(seed: int) -> jax.Array:
    """The parameter-initialisation key. RBG rather than threefry: the init graph of a large CNN compiles 3x faster
    on CPU with it (ResNet-18 7.1 s → 2.6 s here); its values are deterministic for a given seed and backend."""
    return jax.random.key(seed, impl="rbg")


# Where a backbone's ImageNet weights go in each architecture (`models.load_backbone`); the plain classifier takes
# the imported file whole (its fc too, when the number of classes matches).
PRETRAINED_TARGETS = {"fusion": ("backbone",), "bilinear": ("backbone",), "fmsml": ("stream1", "stream2"),
                      "can": ("branch1",)}


def split_records(config: ml_collections.ConfigDict, metadata: input_lib.Metadata) -> dict[str, np.ndarray]:
    """Record numbers of train / val / test under the config's split protocol."""
    data = config.data
    return input_lib.split_records(metadata, data.protocol, seed=data.split_seed, val_fraction=data.val_fraction,
                                   fractions=tuple(data.fractions), num_folds=data.num_folds, fold=data.fold)


def model_from_config(config: ml_collections.ConfigDict):
    """The model a config describes (`config.model`: name, architecture, second_backbone, reduce_channels, ...)."""
    model = config.model
    return create_model(model.name, NUM_FINDINGS, compute_dtype(model.dtype), architecture=model.architecture,
                        second_backbone=model.second_backbone or None, reduce_channels=model.reduce_channels or None,
                        **model.backbone_kwargs.to_dict())


def _replace_variables(state: TrainState, variables: dict, source: str) -> TrainState:
    """The state with new params/batch_stats placed like the old ones; strict about structure and shapes."""
    fresh = {"params": state.params, "batch_stats": state.batch_stats}
    variables = {name: variables.get(name, {}) for name in fresh}
    if jax.tree.map(np.shape, variables) != jax.tree.map(np.shape, fresh):
        raise ValueError(f"{source} does not hold this model's variables (structure or shapes differ)")
    placed = jax.tree.map(lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding), variables, fresh)
    return state.replace(params=placed["params"], batch_stats=placed["batch_stats"])


def with_pretrained(state: TrainState, model_config: ml_collections.ConfigDict) -> TrainState:
    """Puts `cxrjax import-weights` files (ImageNet backbones) into the fresh state."""
    imported = weights.load_variables(model_config.pretrained)
    if model_config.architecture == "classifier":
        return _replace_variables(state, imported, f"{model_config.pretrained} (convert it for this model with "
                                                   "`cxrjax import-weights SRC --model NAME --out DST`)")
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    variables = load_backbone(variables, imported, into=PRETRAINED_TARGETS[model_config.architecture])
    if model_config.architecture == "can":
        second = weights.load_variables(model_config.pretrained_second or model_config.pretrained)
        variables = load_backbone(variables, second, into=("branch2",))
    return _replace_variables(state, variables, model_config.pretrained)


def check_pretrained(model_config: ml_collections.ConfigDict) -> None:
    """Refuses to start a run from random weights where its config says it must not: a paper row meant to start from
    ImageNet weights (`model.require_pretrained`: `model.pretrained`, or `model.init_from` for a later stage) or the
    second stage of a staged training (`model.require_init_from`). Either would otherwise train silently from
    scratch."""
    if model_config.get("require_init_from", False) and not model_config.init_from:
        raise ValueError("this config is stage 2 of a staged training: it needs "
                         "--config.model.init_from=STAGE1_WORKDIR (the run directory of its stage 1)")
    if model_config.get("require_pretrained", False) and not (model_config.pretrained or model_config.init_from):
        raise ValueError("this config starts from ImageNet weights: it needs "
                         f"--config.model.pretrained=weights/{model_config.name}.msgpack (made by `cxrjax "
                         "import-weights`); use :scratch to train from random weights")


@dataclasses.dataclass
class Run:
    """Everything a config determines before training starts; shared by training and evaluation."""

    config: ml_collections.ConfigDict
    mesh: Any
    shards: input_lib.Shards
    records: dict[str, np.ndarray]
    model: Any
    dtype: Any
    steps_per_epoch: int
    schedule: optax.Schedule
    state: TrainState

    @property
    def total_steps(self) -> int:
        return self.config.num_epochs * self.steps_per_epoch

    def variables(self, state=None) -> dict:
        state = state or self.state
        return {"params": state.params, "batch_stats": state.batch_stats}


def build_run(config: ml_collections.ConfigDict) -> Run:
    check_pretrained(config.model)
    mesh = sharding.data_mesh()
    for name in ("batch_size", "eval_batch_size"):
        if config[name] % mesh.size:
            raise ValueError(f"{name} {config[name]} is not divisible by the {mesh.size} devices of the mesh")
    data = config.data
    shards = input_lib.open_shards(builder_dir(data.data_dir, data.size, data.labels))
    records = split_records(config, shards.metadata)
    dtype = compute_dtype(config.model.dtype)
    model = model_from_config(config)
    steps = input_lib.steps_per_epoch(len(records["train"]), config.batch_size, config.steps_per_epoch)
    schedule = learning_rate_schedule(config.optimizer, steps)
    tx = create_optimizer(config.optimizer, schedule, tuple(config.model.get("frozen", ())))
    state = create_train_state(model, tx, (data.crop, data.crop, 3), init_key(config.seed), mesh)
    if config.model.pretrained:
        state = with_pretrained(state, config.model)
    if config.model.init_from:  # a later training stage starts from an earlier stage's best checkpoint
        variables = checkpoint.load_variables(config.model.init_from, "best")[3]
        state = _replace_variables(state, variables, config.model.init_from)
    return Run(config, mesh, shards, records, model, dtype, steps, schedule, state)
