"""Where a run's numbers go: `metrics.jsonl` (one JSON object per line, easy to load anywhere) and TensorBoard events
(tensorboardX: no TensorFlow needed). Only process 0 writes, so multi-host runs produce one log."""

from __future__ import annotations

import json
import os

import jax
from tensorboardX import SummaryWriter


class RunLog:
    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

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
