"""Orbax checkpoints of a run: train state + data-iterator state + config + metrics, keeping best and latest.

Why an explicit preservation policy: Orbax's `max_to_keep` combined with `best_fn` ranks by the metric only and can
delete the newest checkpoint, which breaks resumption. Here the latest checkpoint and the best one by validation
(`config.select_best_by`: the mean AUC, or the loss as CheXNet selects) are both always kept. A checkpoint written on
SIGTERM (mid-epoch, no validation metric) counts as latest only.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp
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


def _best_metric(metrics: dict[str, Any]) -> float:
    return float(metrics[BEST_METRIC] if BEST_METRIC in metrics else metrics[LEGACY_METRIC])


def manager(workdir: str) -> ocp.CheckpointManager:
    keep = policies.AnyPreservationPolicy([
        policies.LatestN(n=1),
        policies.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_best_metric, best_mode="max", preservation_policy=keep,
                                           create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options,
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


def resolve_step(mngr: ocp.CheckpointManager, which: str | int) -> int:
    """`best`, `latest` or a step number → a saved step, with a clear error if there is none."""
    steps = mngr.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {mngr.directory}")
    if which == "latest":
        return mngr.latest_step()
    if which == "best":
        best = mngr.best_step()
        if best is None:  # Orbax's restore(None) would silently give the latest step instead
            raise FileNotFoundError(f"no checkpoint in {mngr.directory} has a validation score (saved steps: "
                                    f"{sorted(steps)}); choose --checkpoint latest or a step")
        return best
    try:
        step = int(which)
    except ValueError:
        raise ValueError(f"checkpoint {which!r}: expected best, latest or a step number") from None
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint at step {step} in {mngr.directory}; saved steps: {sorted(steps)}")
    return step


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
    mngr = manager(workdir)
    try:
        step = resolve_step(mngr, which)
        config, extra = restore_json(mngr, step, "config"), restore_json(mngr, step, "extra")
        state = restore(mngr, step, None)
    finally:
        mngr.close()
    return step, config, extra, {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
