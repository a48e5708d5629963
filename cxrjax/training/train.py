"""Training: `create_train_state`, `train_step`, `train_and_evaluate` (the shape of flax's examples/imagenet).

One jitted step `(state, batch) -> (state, metrics)` with donated state, over a 1-D data mesh: batch sharded, state
replicated. The state is created with `jax.eval_shape` + `jit(out_shardings=...)`, so parameters are born replicated
on every device instead of being copied there. Losses are float32 whatever the compute dtype.

Runs are resumable: the checkpoint holds the train state and the data iterator's position, so re-running on the same
workdir continues exactly where it stopped (same batches, same augmentation, same result). SIGTERM saves and stops;
a NaN loss stops with its step number and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import signal
from typing import Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils
from sklearn import metrics as sklearn_metrics

from cxrjax import losses
from cxrjax import metrics as metrics_lib
from cxrjax.data import class_stats, pipeline, shard_format
from cxrjax.data.prefetch import DevicePrefetch
from cxrjax.data.progress import note, progress
from cxrjax.evaluation.forward import make_predict_step, predict_split
from cxrjax.metrics import thresholds
from cxrjax.models.preprocess import normalize
from cxrjax.runtime import checkpoint, sharding
from cxrjax.training import plateau
from cxrjax.training.run import Run, build_run
from cxrjax.training.run_log import RunLog
from cxrjax.training.state import TrainState


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def train_step(state: TrainState, batch: dict, *, objective, dtype, dropout_key):
    """One optimisation step on a global batch of uint8 images; returns the new state and float32 metrics."""
    images = normalize(batch["image"], dtype)
    mask = jnp.ones(batch["labels"].shape[:1], jnp.float32)

    metadata = {name: batch[name] for name in shard_format.METADATA_FIELDS}

    def loss_fn(params):
        outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                          metadata=metadata, train=True,
                                          mutable=["batch_stats"],
                                          rngs={"dropout": jax.random.fold_in(dropout_key, state.step)})
        total, per_head = objective(outputs, batch["labels"], mask)
        return total, (per_head, updates)

    (total, (per_head, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats))
    return state, {"loss": total, **{f"loss/{head}": value for head, value in per_head.items()}}


def validate(run: Run, predict_step, state, split: str = "val") -> tuple[dict, dict]:
    """Validation AUCs and BCE (`loss`, what a plateau schedule watches) and the per-finding operating points
    chosen on them (saved with the checkpoint)."""
    records = run.records[split]
    probabilities = predict_split(predict_step, run.variables(state), run.shards, records, run.config, run.mesh,
                                  desc="validating")
    labels = run.shards.metadata.labels[records]
    summary = metrics_lib.summarize(labels, probabilities)
    summary["loss"] = float(sklearn_metrics.log_loss(labels.ravel(), probabilities.ravel(), labels=[0, 1]))
    return summary, thresholds.choose_thresholds(labels, probabilities)


class StopOnSignal:
    """Turns SIGTERM (preemption, `kill`, `scancel`) into a stop the training loop polls after every step, so it can
    save and exit cleanly.

    One process: a Python handler sets a flag. Several processes: each sees the signal at its own step (or only some
    of them see it), but a checkpoint needs every process at the same step. JAX's preemption service, started by
    `jax.distributed.initialize`, listens for SIGTERM itself, tells every process and agrees on the first step all of
    them can still reach; `reached_preemption_sync_point(step)` is true at that step on every process. So no Python
    handler is installed then: it would take the signal from JAX's."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum, self.requested, self._previous = signum, False, None
        self.several_processes = False

    def __enter__(self):
        self.several_processes = jax.process_count() > 1
        if not self.several_processes:
            self._previous = signal.signal(self.signum, self._handle)
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *_):
        if not self.several_processes:
            signal.signal(self.signum, self._previous)

    def __call__(self, step: int) -> bool:
        """Whether to save and stop after `step`; every process must ask after every step (the service's rule)."""
        if self.several_processes:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested


def _check_finite(pending: list[tuple[int, dict]], last_good: int | None) -> list[tuple[int, dict]]:
    """Fetches pending step metrics; raises TrainingDiverged at the first non-finite loss."""
    fetched = jax.device_get(pending)
    for step, values in fetched:
        if not math.isfinite(float(values["loss"])):
            raise TrainingDiverged(f"loss is {float(values['loss'])} at step {step}; stopped. The last good "
                                   f"checkpoint is {'step ' + str(last_good) if last_good else 'none'}.")
    return fetched


# Steps dispatched and not yet seen complete. JAX dispatches a jitted step at once and computes it later, so an
# unbounded loop runs far ahead of the device and a bar counting dispatched steps leaps ahead, then stalls where the
# loop waits (every log step). The bar counts a step when its loss is ready; waiting only for the step before last
# keeps the next one queued behind the running one, so the device never idles for it.
STEPS_IN_FLIGHT = 2


def _count_completed(bar, in_flight: collections.deque, keep: int) -> None:
    """Advances `bar` past the steps of `in_flight` (their losses, oldest first) that have finished, waiting for the
    oldest ones while more than `keep` remain."""
    while in_flight and (len(in_flight) > keep or in_flight[0].is_ready()):
        in_flight.popleft().block_until_ready()
        bar.update()


def _plateau_extra(decay: plateau.PlateauDecay | None) -> dict:
    return {} if decay is None else {"plateau": decay.state_dict()}


# Fields a resumed run may change without becoming another run: where and how fast it reads, how often it logs,
# how long it trains on, and what only its first start read (the weights a fresh state was initialised from).
RESUMABLE_CHANGES = ("data.data_dir", "data.num_threads", "data.num_workers", "eval_batch_size", "log_every_steps",
                     "prefetch_batches", "num_epochs", "model.pretrained", "model.pretrained_second",
                     "model.require_pretrained", "model.init_from", "model.require_init_from")


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "losses" and value:
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_fields(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """The fields in which `config` differs from the config a workdir was trained with, except RESUMABLE_CHANGES
    (compared as JSON, the form the checkpoint keeps, so a tuple equals its list)."""
    old, new = _flat(saved), _flat(json.loads(json.dumps(config.to_dict())))
    return sorted(name for name in old.keys() | new.keys()
                  if name not in RESUMABLE_CHANGES and old.get(name) != new.get(name))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_requested: Callable[[int], bool] = lambda step: False, *,
                       accept_config_change: bool = False) -> dict:
    """Trains (resuming from `workdir` if it has checkpoints), validating and checkpointing every epoch.

    Resuming with a config that differs in a field that changes the run (model, losses, data, batch size,
    optimizer and schedule, seed) raises ValueError naming the fields, unless `accept_config_change`: two settings
    mixed in one run would be reported as one. Returns {"step", "val_mean_auc", "stopped_early"}.
    """
    mngr = checkpoint.manager(workdir)
    if mngr.latest_step() is not None and not accept_config_change:
        changed = changed_fields(checkpoint.restore_json(mngr, mngr.latest_step(), "config"), config)
        if changed:
            mngr.close()
            raise ValueError(f"{workdir} was trained with other values of {', '.join(changed)}; resuming would mix "
                             "two runs: use a new --workdir, or pass --accept_config_change to continue this one with "
                             "the new values on purpose")
    run = build_run(config)
    block, num_blocks = sharding.process_block(run.mesh, config.batch_size)
    grain_iter = iter(pipeline.train_dataset(
        run.shards, run.records["train"], global_batch=config.batch_size, crop=config.data.crop,
        num_steps=run.total_steps, seed=config.seed, steps_limit=config.steps_per_epoch,
        augment=pipeline.TrainAugment(config.data.crop, config.data.flip, config.data.random_crop,
                                      config.data.rotation),
        process_index=block, process_count=num_blocks,
        read_options=grain.ReadOptions(num_threads=config.data.num_threads, prefetch_buffer_size=4),
        workers=config.data.num_workers))
    batch_fields = ("image", "labels", *shard_format.METADATA_FIELDS)
    train_iter = DevicePrefetch(grain_iter, lambda local: sharding.to_global(
        {name: local[name] for name in batch_fields}, run.mesh), depth=config.prefetch_batches)
    state = run.state
    decay = (plateau.PlateauDecay(config.optimizer.decay_factor, config.optimizer.plateau_patience)
             if config.optimizer.schedule == "plateau" else None)
    if mngr.latest_step() is not None:
        state = checkpoint.restore(mngr, mngr.latest_step(), state, train_iter)
        if decay is not None:
            decay.load_state_dict(checkpoint.restore_json(mngr, mngr.latest_step(), "extra")["plateau"])

    objective = losses.build_objective(config.losses.to_dict(),
                                       class_stats.positive_rate(run.shards.metadata.labels[run.records["train"]]))
    step_fn = functools.partial(train_step, objective=objective, dtype=run.dtype,
                                dropout_key=jax.random.key(config.seed + 1))
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    jitted_step = jax.jit(step_fn, in_shardings=(state_sharding, sharding.batch_sharded(run.mesh)),
                          out_shardings=(state_sharding, sharding.replicated(run.mesh)), donate_argnums=0)
    predict_step = make_predict_step(run.model, run.dtype, config.model.predict_head)

    log = RunLog(workdir)
    start = int(state.step)
    result = {"step": start, "val_mean_auc": None, "stopped_early": False}
    pending: list[tuple[int, dict]] = []
    in_flight: collections.deque = collections.deque()
    main_process = jax.process_index() == 0
    bar = progress(total=run.total_steps, initial=start, unit="step", disable=not main_process, desc="training")
    try:
        for step in range(start + 1, run.total_steps + 1):
            state, step_metrics = jitted_step(state, next(train_iter))
            pending.append((step, step_metrics))
            in_flight.append(step_metrics["loss"])
            _count_completed(bar, in_flight, STEPS_IN_FLIGHT)
            end_of_epoch = step % run.steps_per_epoch == 0
            stop = stop_requested(step)
            if step % config.log_every_steps == 0 or end_of_epoch or stop:
                fetched = _check_finite(pending, mngr.latest_step())
                pending = []
                _count_completed(bar, in_flight, 0)  # all done: their metrics were fetched
                last = {name: float(value) for name, value in fetched[-1][1].items()}
                learning_rate = float(run.schedule(step - 1)) * (decay.scale if decay else 1.0)
                log.write(step, last | {"learning_rate": learning_rate})
                bar.set_postfix(loss=f"{last['loss']:.4f}", refresh=False)
            if end_of_epoch:
                bar.refresh()  # in a log: where training stands when validation starts
                val, operating_points = validate(run, predict_step, state)
                result["val_mean_auc"] = val["mean_auc"]
                log.write(step, {"val_mean_auc": val["mean_auc"], "val_loss": val["loss"],
                                 "epoch": step // run.steps_per_epoch})
                if decay is not None:
                    state = state.replace(opt_state=plateau.set_scale(
                        state.opt_state, decay.observe(val["loss"]), sharding.replicated(run.mesh)))
                best = None if val["mean_auc"] is None else {checkpoint.BEST_METRIC: val["mean_auc"]}
                checkpoint.save(mngr, step, state, train_iter, config.to_dict(), metrics=best,
                                extra={"thresholds": operating_points, **_plateau_extra(decay)})
                if main_process:
                    mean_auc = "undefined" if val["mean_auc"] is None else f"{val['mean_auc']:.4f}"
                    note(f"epoch {step // run.steps_per_epoch}: validation mean AUC {mean_auc}, loss "
                         f"{val['loss']:.4f}; checkpoint of step {step} saved in {workdir}")
            elif stop:
                checkpoint.save(mngr, step, state, train_iter, config.to_dict(), extra=_plateau_extra(decay))
                if main_process:
                    note(f"checkpoint of step {step} saved in {workdir}")
            result["step"] = step
            if stop:
                result["stopped_early"] = True
                break
    finally:
        bar.close()
        log.close()
        mngr.close()
    return result
