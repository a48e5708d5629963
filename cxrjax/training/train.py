"""Training: `create_train_state`, `train_step`, `train_and_evaluate` (the shape of flax's examples/imagenet).

One jitted step `(state, batch) -> (state, metrics)` with donated state, over a 1-D data mesh: batch sharded, state
replicated. The state is created with `jax.eval_shape` + `jit(out_shardings=...)`, so parameters are born replicated
on every device instead of being copied there. Losses are float32 whatever the compute dtype.

Runs are resumable: the checkpoint holds the train state and the data iterator's position, so re-running on the same
workdir continues exactly where it stopped (same batches, same augmentation, same result), from the newest checkpoint
that is intact (a damaged newer one is named and set aside). SIGTERM or Ctrl-C saves and stops. A diverged run (a
non-finite loss, a loss far above its running level, non-finite parameters) stops with its step number and leaves
the last good checkpoint the latest: parameters are checked before every save, since the loss seen at step N was
computed with step N-1's parameters and says nothing of those that update N produced.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import signal
import sys
from typing import Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils
from sklearn import metrics as sklearn_metrics

from cxrjax import losses
from cxrjax import metrics as metrics_lib
from cxrjax.configs import checks, default
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
    """The loss or the parameters became non-finite, or the loss exploded."""


def _loss(params, state: TrainState, batch: dict, *, objective, dtype, dropout_key, input_scaling: str = "imagenet"):
    """The training objective of `params` on a global batch of uint8 images: (total, (per head, BatchNorm updates));
    `input_scaling`: how the model takes its pixels (`config.model.input`)."""
    images = normalize(batch["image"], dtype, input_scaling)
    mask = jnp.ones(batch["labels"].shape[:1], jnp.float32)
    metadata = {name: batch[name] for name in shard_format.METADATA_FIELDS}
    outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                      metadata=metadata, train=True,
                                      mutable=["batch_stats"],
                                      rngs={"dropout": jax.random.fold_in(dropout_key, state.step)})
    total, per_head = objective(outputs, batch["labels"], mask)
    return total, (per_head, updates)


def train_step(state: TrainState, batch: dict, *, objective, dtype, dropout_key, input_scaling: str = "imagenet"):
    """One optimisation step on a global batch of uint8 images; returns the new state and float32 metrics."""
    loss_fn = functools.partial(_loss, state=state, batch=batch, objective=objective, dtype=dtype,
                                dropout_key=dropout_key, input_scaling=input_scaling)
    (total, (per_head, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats))
    return state, {"loss": total, **{f"loss/{head}": value for head, value in per_head.items()}}


def saved_state_checks(state: TrainState, batch: dict, *, objective, dtype, dropout_key,
                       input_scaling: str = "imagenet"):
    """(the loss of the parameters about to be saved on the batch of the step that made them, whether they and the
    batch statistics are all finite). That loss is the one that shows what the step's update did: the step's own
    loss was computed before it."""
    variables = jax.tree.leaves({"params": state.params, "batch_stats": state.batch_stats})
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in variables]))
    return _loss(state.params, state, batch, objective=objective, dtype=dtype, dropout_key=dropout_key,
                 input_scaling=input_scaling)[0], finite


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


ABORTED = 130  # 128 + SIGINT


class StopOnSignal:
    """Turns SIGTERM (preemption, `kill`, `scancel`) and a first Ctrl-C (SIGINT) into a stop the training loop polls
    after every step, so it can save and exit cleanly; a second Ctrl-C aborts the process at once (exit status
    `ABORTED`, as a shell reports a process killed by SIGINT).

    One process: a Python handler sets a flag. Several processes: each sees the signal at its own step (or only some
    of them see it), but a checkpoint needs every process at the same step. JAX's preemption service, started by
    `jax.distributed.initialize`, listens for SIGTERM itself, tells every process and agrees on the first step all of
    them can still reach; `reached_preemption_sync_point(step)` is true at that step on every process. So no Python
    SIGTERM handler is installed then (it would take the signal from JAX's), and Ctrl-C is passed on to the service
    as a SIGTERM to this process."""

    def __init__(self):
        self.requested, self.several_processes, self._previous = False, False, {}

    def __enter__(self):
        self.several_processes = jax.process_count() > 1
        signals = (signal.SIGINT,) if self.several_processes else (signal.SIGINT, signal.SIGTERM)
        self._previous = {signum: signal.signal(signum, self._handle) for signum in signals}
        return self

    def _handle(self, signum, _frame):
        if signum == signal.SIGINT:
            if self.requested:  # at once: no clean-up, whose exit handlers (TensorBoard's writer) may hang or fail
                print("interrupted by a second Ctrl-C; nothing saved since the last checkpoint", file=sys.stderr,
                      flush=True)
                os._exit(ABORTED)
            print("Ctrl-C: saving after this step and stopping (Ctrl-C again aborts without saving)", file=sys.stderr)
            if self.several_processes:
                self.requested = True
                os.kill(os.getpid(), signal.SIGTERM)
                return
        self.requested = True

    def __exit__(self, *_):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def __call__(self, step: int) -> bool:
        """Whether to save and stop after `step`; every process must ask after every step (the service's rule)."""
        if self.several_processes:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested


def _last_good(last_good: int | None) -> str:
    return f"The last good checkpoint is {'step ' + str(last_good) if last_good else 'none'}."


class LossGuard:
    """Stops a diverging run at the step its loss shows it: non-finite, or above `factor` times its running level.

    Why a running level: a learning rate far too high can drive the loss to 1e30 without ever making it NaN, and the
    run would "succeed" at chance. The level is an exponential mean of the losses seen (over ~1/(1-decay) steps),
    started by the first one, so the second step is checked already; a loss that only goes down never trips it."""

    def __init__(self, factor: float, decay: float = 0.99):
        self.factor, self.decay, self.level = factor, decay, None

    def check(self, step: int, loss: float, last_good: int | None, after_update: bool = False) -> None:
        """`after_update`: the loss of step `step`'s new parameters (before a save), checked but not averaged in."""
        which = f"after step {step}" if after_update else f"at step {step}"
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss} {which}; stopped. {_last_good(last_good)}")
        if self.factor and self.level and loss > self.factor * self.level:
            raise TrainingDiverged(f"loss is {loss:.4g} {which}, over {self.factor:g}x its running mean "
                                   f"{self.level:.4g} (divergence_factor); stopped. {_last_good(last_good)}")
        if not after_update:
            self.level = loss if self.level is None else self.decay * self.level + (1 - self.decay) * loss


def _check_finite(pending: list[tuple[int, dict]], guard: LossGuard, last_good: int | None) -> list[tuple[int, dict]]:
    """Fetches pending step metrics; raises TrainingDiverged at the first diverged loss (`LossGuard`)."""
    fetched = jax.device_get(pending)
    for step, values in fetched:
        guard.check(step, float(values["loss"]), last_good)
    return fetched


def _check_before_save(checks: tuple[jax.Array, jax.Array], guard: LossGuard, step: int,
                       last_good: int | None) -> None:
    """Raises TrainingDiverged unless the parameters and batch statistics after `step` are finite and their loss
    on the step's batch (`saved_state_checks`) passes the guard: checked before each validation and save, so that
    nothing non-finite or diverged is ever saved as the last good checkpoint."""
    loss_after, finite = checks
    if not bool(finite):
        raise TrainingDiverged(f"parameters are not finite after step {step}; stopped without saving them. "
                               f"{_last_good(last_good)}")
    guard.check(step, float(loss_after), last_good, after_update=True)


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
    (compared as JSON, the form the checkpoint keeps, so a tuple equals its list). A field the saved config lacks
    (added to cxrjax since) counts as the base config's default, which is what that run did."""
    defaults = _flat(json.loads(json.dumps(default.get_config().to_dict())))
    old, new = defaults | _flat(saved), _flat(json.loads(json.dumps(config.to_dict())))
    return sorted(name for name in old.keys() | new.keys()
                  if name not in RESUMABLE_CHANGES and old.get(name) != new.get(name))


def _model_name(model: dict) -> str:
    return f"{model['name']} {model['architecture']}"


def _models_clause(saved: dict, config: ml_collections.ConfigDict, changed: list[str]) -> str:
    """"; it holds a resnet18 classifier, the config asks for a densenet121 classifier" when the model changed."""
    if not {"model.name", "model.architecture"} & set(changed):
        return ""
    return f"; it holds a {_model_name(saved['model'])}, the config asks for a {_model_name(config.model.to_dict())}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_requested: Callable[[int], bool] = lambda step: False, *,
                       accept_config_change: bool = False) -> dict:
    """Trains (resuming from `workdir` if it has checkpoints), validating and checkpointing every epoch.

    Resuming with a config that differs in a field that changes the run (model, losses, data, batch size,
    optimizer and schedule, seed) raises ValueError naming the fields, unless `accept_config_change`: two settings
    mixed in one run would be reported as one. Returns {"step", "val_mean_auc", "stopped_early"}.
    """
    checks.check_config(config)
    mngr = checkpoint.manager(workdir)
    resume_step, saved = None, None
    if mngr.all_steps():
        resume_step, damaged = checkpoint.newest_intact_step(mngr)
        checkpoint.set_aside(mngr, damaged)
        saved = checkpoint.restore_json(mngr, resume_step, "config")
    if saved is not None and not accept_config_change:
        changed = changed_fields(saved, config)
        if changed:
            mngr.close()
            raise ValueError(f"{workdir} was trained with other values of {', '.join(changed)}; resuming would mix "
                             "two runs: use a new --workdir, or pass --accept_config_change to continue this one with "
                             f"the new values on purpose{_models_clause(saved, config, changed)}")
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
    if resume_step is not None:
        checkpoint.check_fits(mngr, resume_step, state.params, _model_name(saved["model"]),
                              _model_name(config.model.to_dict()))
        state = checkpoint.restore(mngr, resume_step, state, train_iter)
        if decay is not None:
            decay.load_state_dict(checkpoint.restore_json(mngr, resume_step, "extra")["plateau"])

    objective = losses.build_objective(config.losses.to_dict(),
                                       class_stats.positive_rate(run.shards.metadata.labels[run.records["train"]]))
    loss_options = dict(objective=objective, dtype=run.dtype, dropout_key=jax.random.key(config.seed + 1),
                        input_scaling=config.model.input)
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    jitted_step = jax.jit(functools.partial(train_step, **loss_options),
                          in_shardings=(state_sharding, sharding.batch_sharded(run.mesh)),
                          out_shardings=(state_sharding, sharding.replicated(run.mesh)), donate_argnums=0)
    jitted_checks = jax.jit(functools.partial(saved_state_checks, **loss_options),
                            in_shardings=(state_sharding, sharding.batch_sharded(run.mesh)),
                            out_shardings=sharding.replicated(run.mesh))
    predict_step = make_predict_step(run.model, run.dtype, config.model.predict_head,
                                     input_scaling=config.model.input)

    start = int(state.step)
    log = RunLog(workdir, start)
    result = {"step": start, "val_mean_auc": None, "stopped_early": False}
    pending: list[tuple[int, dict]] = []
    guard = LossGuard(config.divergence_factor)
    in_flight: collections.deque = collections.deque()
    main_process = jax.process_index() == 0
    bar = progress(total=run.total_steps, initial=start, unit="step", disable=not main_process, desc="training")
    try:
        for step in range(start + 1, run.total_steps + 1):
            batch = next(train_iter)
            state, step_metrics = jitted_step(state, batch)
            pending.append((step, step_metrics))
            in_flight.append(step_metrics["loss"])
            _count_completed(bar, in_flight, STEPS_IN_FLIGHT)
            end_of_epoch = step % run.steps_per_epoch == 0
            stop = stop_requested(step)
            if step % config.log_every_steps == 0 or end_of_epoch or stop:
                fetched = _check_finite(pending, guard, mngr.latest_step())
                pending = []
                _count_completed(bar, in_flight, 0)  # all done: their metrics were fetched
                last = {name: float(value) for name, value in fetched[-1][1].items()}
                learning_rate = float(run.schedule(step - 1)) * (decay.scale if decay else 1.0)
                log.write(step, last | {"learning_rate": learning_rate})
                bar.set_postfix(loss=f"{last['loss']:.4f}", refresh=False)
            if end_of_epoch or stop:  # the parameters about to be validated and saved
                _check_before_save(jitted_checks(state, batch), guard, step, mngr.latest_step())
            if end_of_epoch:
                bar.refresh()  # in a log: where training stands when validation starts
                val, operating_points = validate(run, predict_step, state)
                result["val_mean_auc"] = val["mean_auc"]
                log.write(step, {"val_mean_auc": val["mean_auc"], "val_loss": val["loss"],
                                 "epoch": step // run.steps_per_epoch})
                if decay is not None:
                    state = state.replace(opt_state=plateau.set_scale(
                        state.opt_state, decay.observe(val["loss"]), sharding.replicated(run.mesh)))
                best = checkpoint.selection_metrics(config.select_best_by, val)
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
