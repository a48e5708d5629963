"""A training run's fixed parts, built from its config: mesh, shards, split, model, schedule and the initial state
(ImageNet weights or an earlier stage's checkpoint put in). Resuming builds the same `Run` from the same config, so a
checkpoint restores onto exactly the structure it was saved from; evaluation needs none of this
(`evaluation.load.load_run`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from cxrjax import models
from cxrjax.data import pipeline, shard_format, splits
from cxrjax.models import weights
from cxrjax.models.preprocess import input_scaling
from cxrjax.runtime import checkpoint, sharding
from cxrjax.training.state import TrainState, create_optimizer, create_train_state, learning_rate_schedule


def init_key(seed: int) -> jax.Array:
    """The parameter-initialisation key. RBG rather than threefry: the init graph of a large CNN compiles 3x faster
    on CPU with it (ResNet-18 7.1 s → 2.6 s here); its values are deterministic for a given seed and backend."""
    return jax.random.key(seed, impl="rbg")


def _replace_variables(state: TrainState, variables: dict, source: str) -> TrainState:
    """The state with new params/batch_stats placed like the old ones; strict about structure and shapes."""
    fresh = {"params": state.params, "batch_stats": state.batch_stats}
    variables = {name: variables.get(name, {}) for name in fresh}
    if jax.tree.map(np.shape, variables) != jax.tree.map(np.shape, fresh):
        raise ValueError(f"{source} does not hold this model's variables (structure or shapes differ)")
    placed = jax.tree.map(lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding), variables, fresh)
    return state.replace(params=placed["params"], batch_stats=placed["batch_stats"])


def read_pretrained(model_config: ml_collections.ConfigDict) -> dict[str, tuple[dict, dict | None]]:
    """Each weights file the config imports (`model.pretrained`, `model.pretrained_second`), read once: path →
    (variables, source) of `weights.load_weights_file`. A Swin-B file is 350 MB: checked and imported from one read."""
    paths = [model_config[field] for field in ("pretrained", "pretrained_second") if model_config[field]]
    return {path: weights.load_weights_file(path) for path in dict.fromkeys(paths)}


def check_pretrained_inputs(config: ml_collections.ConfigDict, imports: dict[str, tuple[dict, dict | None]]) -> None:
    """Refuses imports learned on other inputs than the config feeds: a torchxrayvision model's first convolution
    takes one channel in [−1024, 1024] (`models.xrv`), an ImageNet one three normalised channels. Fine-tuning keeps
    the source's input, so its first layer's weights keep their meaning (the one way cxrjax handles the channel
    count). Checked before anything is built; a different resolution is only a warning (CNNs take any size)."""
    for path, (_, source) in imports.items():
        expected = source["input"] if source else "imagenet"
        if expected != config.model.input:
            resolution = f" --config.data.crop={source['resolution']}" if source else ""
            raise ValueError(f"{path} was trained on {input_scaling(expected).description} inputs; this config "
                             f"feeds {input_scaling(config.model.input).description}: add "
                             f"--config.model.input={expected}{resolution}")
        if source and source["resolution"] != config.data.crop:
            logging.warning("%s was trained at %d², this run feeds %d² (config.data.crop)", path,
                            source["resolution"], config.data.crop)


def with_pretrained(state: TrainState, model_config: ml_collections.ConfigDict,
                    imports: dict[str, tuple[dict, dict | None]]) -> TrainState:
    """Puts `cxrjax import-weights` files (ImageNet backbones, or a whole chest X-ray model; `read_pretrained`) into
    the fresh state, where the architecture's record says (`models.Architecture.pretrained_into`)."""
    targets = models.ARCHITECTURES[model_config.architecture].pretrained_into
    if targets is None:  # the import is the whole model
        return _replace_variables(state, imports[model_config.pretrained][0],
                                  f"{model_config.pretrained} (convert it for this model with "
                                  "`cxrjax import-weights SRC --model NAME --out DST`)")
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    for module, field in targets.items():
        path = model_config[field] or model_config.pretrained
        variables = models.load_backbone(variables, imports[path][0], into=(module,))
    return _replace_variables(state, variables, model_config.pretrained)


def check_pretrained(model_config: ml_collections.ConfigDict) -> None:
    """Refuses to start a run from random weights where its config says it must not: a paper row meant to start from
    ImageNet weights (`model.require_pretrained`: `model.pretrained`, or `model.init_from` for a later stage) or the
    second stage of a staged training (`model.require_init_from`). Either would otherwise train silently from
    scratch."""
    if model_config.require_init_from and not model_config.init_from:
        raise ValueError("this config is stage 2 of a staged training: it needs "
                         "--config.model.init_from=STAGE1_WORKDIR (the run directory of its stage 1)")
    if model_config.require_pretrained and not (model_config.pretrained or model_config.init_from):
        raise ValueError("this config starts from ImageNet weights: it needs "
                         f"--config.model.pretrained=weights/{model_config.name}.msgpack (made by `cxrjax "
                         "import-weights`); use :scratch to train from random weights")


@dataclasses.dataclass
class Run:
    """Everything a config determines before training starts; shared by training and evaluation."""

    config: ml_collections.ConfigDict
    mesh: Any
    shards: shard_format.Shards
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
    imports = read_pretrained(config.model)
    check_pretrained_inputs(config, imports)
    mesh = sharding.data_mesh()
    for name in ("batch_size", "eval_batch_size"):
        if config[name] % mesh.size:
            raise ValueError(f"{name} {config[name]} is not divisible by the {mesh.size} devices of the mesh")
    data = config.data
    shards = shard_format.open_shards(shard_format.builder_dir(data.data_dir, data.size, data.labels))
    records = splits.split_records(data, shards.metadata)
    dtype = models.compute_dtype(config.model.dtype)
    model = models.model_from_config(config.model)
    steps = pipeline.steps_per_epoch(len(records["train"]), config.batch_size, config.steps_per_epoch)
    schedule = learning_rate_schedule(config.optimizer, steps)
    tx = create_optimizer(config.optimizer, schedule, tuple(config.model.frozen))
    channels = input_scaling(config.model.input).channels
    state = create_train_state(model, tx, (data.crop, data.crop, channels), init_key(config.seed), mesh)
    if config.model.pretrained:
        state = with_pretrained(state, config.model, imports)
    if config.model.init_from:  # a later training stage starts from an earlier stage's best checkpoint
        variables = checkpoint.load_variables(config.model.init_from, "best")[3]
        state = _replace_variables(state, variables, config.model.init_from)
    return Run(config, mesh, shards, records, model, dtype, steps, schedule, state)
