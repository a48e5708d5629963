"""Orbax checkpoints of a run: train state + data-iterator state + config + metrics, keeping best and latest.

Why an explicit preservation policy: Orbax's `max_to_keep` combined with `best_fn` ranks by the metric only and can
delete the newest checkpoint, which breaks resumption. Here the latest checkpoint and the best one by validation
(`config.select_best_by`: the mean AUC, or the loss as CheXNet selects) are both always kept. A checkpoint written on
SIGTERM (mid-epoch, no validation metric) counts as latest only.

Why every step is checked before it is restored (`verify`): a damaged step (a file truncated by a full disk, an
empty JSON left by a crash of the file system) otherwise fails inside Orbax's asynchronous restore with hundreds of
lines of asyncio traceback, or with "Expecting value: line 1 column 1" that names neither file nor step. Checked
first, with synchronous reads, the damage is one line naming both, and `latest` can fall back to the newest step that
is intact. `best` and a step number are explicit requests: a damaged one is an error, never silently another step.
The check reads the step's arrays once more than the restore does (8M parameters and Adam's two moments, about
100 MB, for a DenseNet-121 run).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as policies

BEST_METRIC = "selection_score"  # what "best" maximises: the validation figure chosen, signed so higher is better
LEGACY_METRIC = "val_mean_auc"  # what checkpoints saved before `select_best_by` ranked by
CHECKPOINT_DIR = "checkpoints"
# `config.select_best_by` → (the key of `validate`'s result, the sign that makes higher better).
SELECTIONS = {"val_mean_auc": ("mean_auc", 1.0), "val_loss": ("loss", -1.0)}


def selection_metrics(select_by: str, validation: dict[str, Any]) -> dict[str, float] | None:
    """The metrics a checkpoint is saved with, from a validation result ({"mean_auc", "loss", ...}); None when the
    figure is undefined (an AUC on a split without both classes anywhere), so the checkpoint never ranks as best."""
    if select_by not in SELECTIONS:
        raise ValueError(f"unknown select_best_by {select_by!r}; choose one of {', '.join(SELECTIONS)}")
    key, sign = SELECTIONS[select_by]
    value = validation[key]
    return None if value is None else {BEST_METRIC: sign * float(value), select_by: float(value)}


DAMAGED_DIR = "checkpoints_damaged"  # where a resumed run moves the damaged steps it passes over, for inspection
ITEMS = ("state", "data_iter", "config", "extra")
_JSON_FILES = ("_CHECKPOINT_METADATA", "_METADATA", "metadata", "metrics")  # besides *.json


class DamagedCheckpoint(RuntimeError):
    """A saved step that cannot be restored completely: names the step and the file."""

    def __init__(self, step: int, path: str, reason: str):
        self.step, self.path, self.reason = step, path, reason
        super().__init__(f"checkpoint step {step} is damaged: {path}: {reason}")


def _best_metric(metrics: dict[str, Any]) -> float:
    return float(metrics[BEST_METRIC] if BEST_METRIC in metrics else metrics[LEGACY_METRIC])


def manager(workdir: str, *, read_only: bool = False) -> ocp.CheckpointManager:
    """The run's checkpoints. `read_only` (evaluation, prediction): refuses a workdir without checkpoints and
    creates nothing there, so that a mistyped path leaves no folder behind (not Orbax's own `read_only`, which
    warns twice on every open)."""
    directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    if read_only and not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {workdir}" if os.path.isdir(workdir) else
                                f"no run directory {workdir}")
    keep = policies.AnyPreservationPolicy([
        policies.LatestN(n=1),
        policies.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_best_metric, best_mode="max", preservation_policy=keep,
                                           create=not read_only)
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                "data_iter": grain.checkpoint.CheckpointHandler(),
                                                "config": ocp.JsonCheckpointHandler(),
                                                "extra": ocp.JsonCheckpointHandler()})


def save(mngr: ocp.CheckpointManager, step: int, state, data_iter, config: dict, metrics: dict | None = None,
         extra: dict | None = None) -> None:
    """Saves synchronously-complete state; `extra` holds JSON such as validation thresholds."""
    mngr.save(step, metrics=metrics, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_iter=grain.checkpoint.CheckpointSave(data_iter),
        config=ocp.args.JsonSave(config),
        extra=ocp.args.JsonSave(extra or {}),
    ))
    mngr.wait_until_finished()


def step_directory(mngr: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(mngr.directory), str(step))


def _verify_json(step: int, path: str) -> None:
    try:
        with open(path) as f:
            json.load(f)
    except (OSError, ValueError) as error:
        reason = "empty" if os.path.exists(path) and os.path.getsize(path) == 0 else f"not JSON ({error})"
        raise DamagedCheckpoint(step, path, reason) from None


def _verify_arrays(step: int, directory: str) -> None:
    """Reads every key of the OCDBT database the arrays are stored in, synchronously: a truncated or missing data
    file fails here with its own path, not inside asyncio."""
    try:
        store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{directory}/"}).result()
        for key in store.list().result():
            store.read(key).result()
    except ValueError as error:  # tensorstore's errors: 'OUT_OF_RANGE: Error reading ... of local file "PATH": ...'
        message = str(error)
        path = message.split('local file "')[-1].split('"')[0] if 'local file "' in message else directory
        raise DamagedCheckpoint(step, path, message.split('": ')[-1].split(" [tensorstore_spec")[0]) from None


def verify(mngr: ocp.CheckpointManager, step: int) -> None:
    """Raises DamagedCheckpoint unless every item of `step` is there and reads: its JSON files parse and every
    array's bytes are present."""
    directory = step_directory(mngr, step)
    for item in ITEMS:
        if not os.path.isdir(os.path.join(directory, item)):
            raise DamagedCheckpoint(step, os.path.join(directory, item), "missing")
    for folder, _, names in os.walk(directory):
        for name in sorted(names):
            if name in _JSON_FILES or name.endswith(".json"):
                _verify_json(step, os.path.join(folder, name))
    _verify_arrays(step, os.path.join(directory, "state"))


def newest_intact_step(mngr: ocp.CheckpointManager) -> tuple[int, list[int]]:
    """(the newest step that verifies, the newer damaged ones); each damaged step is named in one warning line and
    left where it is. Raises FileNotFoundError without checkpoints or when none is intact."""
    steps = sorted(mngr.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {mngr.directory}")
    damaged = []
    for step in steps:
        try:
            verify(mngr, step)
            return step, damaged
        except DamagedCheckpoint as damage:
            logging.warning("%s; left in place, trying an earlier checkpoint", damage)
            damaged.append(step)
    raise FileNotFoundError(f"no intact checkpoint in {mngr.directory}: steps {sorted(damaged)} are all damaged")


def resolve_step(mngr: ocp.CheckpointManager, which: str | int) -> int:
    """`best`, `latest` or a step number → a saved step that verifies, with a clear error if there is none.

    `latest` is the newest intact step (an earlier one when the newest is damaged, with a warning); `best` and a
    number are what was asked for or an error."""
    steps = mngr.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {mngr.directory}")
    if which == "latest":
        return newest_intact_step(mngr)[0]
    if which == "best":
        step = mngr.best_step()
        if step is None:  # Orbax's restore(None) would silently give the latest step instead
            raise FileNotFoundError(f"no checkpoint in {mngr.directory} has a validation score (saved steps: "
                                    f"{sorted(steps)}); choose --checkpoint latest or a step")
    else:
        try:
            step = int(which)
        except ValueError:
            raise ValueError(f"checkpoint {which!r}: expected best, latest or a step number") from None
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint at step {step} in {mngr.directory}; saved steps: {sorted(steps)}")
    try:
        verify(mngr, step)
    except DamagedCheckpoint as damage:
        raise DamagedCheckpoint(damage.step, damage.path, f"{damage.reason} (--checkpoint latest "
                                "takes the newest intact step)") from None
    return step


def set_aside(mngr: ocp.CheckpointManager, steps: list[int]) -> None:
    """Moves damaged steps out of the way of a run that resumes before them (it saves those steps again, and
    Orbax would keep a newer damaged step as the latest and delete the new saves), to `checkpoints_damaged/` beside
    the checkpoints, for inspection."""
    if not steps:
        return
    damaged_dir = os.path.join(os.path.dirname(str(mngr.directory)), DAMAGED_DIR)
    if jax.process_index() == 0:  # every process found the same damage in the shared folder; one moves it
        os.makedirs(damaged_dir, exist_ok=True)
        for step in steps:
            target = os.path.join(damaged_dir, str(step))
            shutil.rmtree(target, ignore_errors=True)  # an older damaged copy of the same step
            shutil.move(step_directory(mngr, step), target)
            logging.warning("damaged checkpoint step %d moved to %s; this run saves that step again", step, target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("cxrjax: damaged checkpoints set aside")
    mngr.reload()


def check_fits(mngr: ocp.CheckpointManager, step: int, params, saved_model: str, model: str) -> None:
    """A ValueError naming both models when the parameters saved at `step` are not those of `params` (a workdir
    resumed with another model): Orbax would otherwise print every array of both trees."""
    def shapes(tree):
        return {jax.tree_util.keystr(path): tuple(leaf.shape)
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    saved, wanted = shapes(mngr.item_metadata(step)["state"].tree["params"]), shapes(params)
    if saved != wanted:
        differing = sorted(saved.keys() ^ wanted.keys()) or sorted(k for k in saved if saved[k] != wanted[k])
        raise ValueError(f"the checkpoint at step {step} holds a {saved_model} and the config asks for a {model}: "
                         f"their parameters differ (first: {differing[0]}); use a new --workdir for this model")


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter=None):
    """Restores the train state (onto the shardings of `abstract_state`) and, if given, the data iterator in place.

    With `abstract_state=None` the state comes back as saved, a plain tree of arrays (for inference).
    """
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return mngr.restore(step, args=ocp.args.Composite(**items)).state


def restore_json(mngr: ocp.CheckpointManager, step: int, item: str) -> dict:
    """Reads the `config` or `extra` JSON saved with a step."""
    return mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]


def load_variables(workdir: str, which: str | int = "best") -> tuple[int, dict, dict, dict]:
    """(step, config, extra, {"params", "batch_stats"}) of a saved step of `workdir`, without rebuilding the train
    state (for inference and for initialising a later training stage)."""
    mngr = manager(workdir, read_only=True)
    try:
        step = resolve_step(mngr, which)
        config, extra = restore_json(mngr, step, "config"), restore_json(mngr, step, "extra")
        state = restore(mngr, step, None)
    finally:
        mngr.close()
    return step, config, extra, {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
