"""Where a run's numbers go: `metrics.jsonl` (one JSON object per line, easy to load anywhere) and TensorBoard events
(tensorboardX: no TensorFlow needed). Only process 0 writes, so multi-host runs produce one log.

A run resumes from its last checkpoint, and the steps it logged after that checkpoint are run again: their lines are
dropped when the log is opened (`keep_steps_to`), so that metrics.jsonl holds each step once, the values of the run
that continued. The file is rewritten to a temporary file and renamed over the old one, so a crash meanwhile leaves
the old log or the new one, never half of one; a line cut short by a kill is dropped with them. TensorBoard's events
are purged past the same step by the writer itself (`purge_step`)."""

from __future__ import annotations

import json
import os

import jax
from tensorboardX import SummaryWriter

from cxrjax.data import atomic


def _step_of(line: str) -> int | None:
    """The step of a metrics.jsonl line; None for a line that is not a whole record (cut short by a kill)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def keep_steps_to(path: str, last_step: int) -> None:
    """Rewrites the log at `path`, if any, with only its whole lines of step ≤ `last_step` (atomically)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = [line for line in lines if line.endswith("\n") and (step := _step_of(line)) is not None
            and step <= last_step]
    if kept == lines:
        return
    with atomic.written_whole(path) as f:
        f.writelines(kept)


class RunLog:
    def __init__(self, workdir: str, start_step: int = 0):
        """The log of a run at `start_step` (its resumed checkpoint's step; 0 for a new run): lines past it go."""
        self.enabled = jax.process_index() == 0
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, "metrics.jsonl")
            keep_steps_to(path, start_step)
            self._jsonl = open(path, "a")
            # purge_step: TensorBoard hides the earlier events of the steps this run logs again
            self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                              purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self._tensorboard.add_scalar(name, value, step)
        self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()
