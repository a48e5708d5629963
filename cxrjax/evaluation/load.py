"""One way to load a trained run: `load_run(workdir, checkpoint)` reads the model, its variables, the config it was
trained with and the operating points chosen on validation from one checkpoint, and nothing else.

Why from the checkpoint alone: what training needed to *start* (ImageNet weights, a stage-1 run, the optimizer)
plays no part in a prediction, and may be gone or on another machine by the time a run is evaluated. `cxrjax eval`,
ensembles, TTA, `cxrjax predict` and `cxrjax localize` all load through here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from cxrjax import models
from cxrjax.configs import default
from cxrjax.evaluation.forward import make_predict_step
from cxrjax.models import weights
from cxrjax.runtime import sharding
from cxrjax.runtime.checkpoint import load_variables


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A trained run as prediction needs it: the model, its variables and the config it was trained with."""

    config: ml_collections.ConfigDict
    model: Any
    variables: dict
    dtype: Any
    step: int
    extra: dict  # JSON saved with the checkpoint (e.g. validation thresholds)

    @property
    def architecture(self) -> models.Architecture:
        return models.ARCHITECTURES[self.config.model.architecture]

    @property
    def thresholds(self) -> dict | None:
        """The operating points chosen on validation at the end of the checkpoint's epoch; None in a checkpoint
        written mid-epoch (SIGTERM)."""
        return (self.extra or {}).get("thresholds")

    @property
    def default_rule(self) -> str:
        """The threshold rule predictions use unless told: an imported model's own operating points, else the
        Youden-optimal ones chosen on validation."""
        source = (self.extra or {}).get("source")
        return source["source"] if source else "youden"

    def predict_step(self, tta: str | None = None):
        """The jitted forward of this run's prediction head (`forward.make_predict_step`), optionally with TTA; for
        ten-crop the images given are the uncropped ones."""
        return make_predict_step(self.model, self.dtype, self.config.model.predict_head, tta=tta,
                                 crop=self.config.data.crop, input_scaling=self.config.model.input)


def load_run(workdir: str, checkpoint: str | int = "best", *, mesh=None) -> TrainedRun:
    """The run of `workdir` at `checkpoint` (best, latest or a step). With `mesh`, its variables are replicated over
    that mesh (for predicting batches sharded over it); without, they stay host arrays."""
    step, config, extra, variables = load_variables(workdir, checkpoint)
    config = ml_collections.ConfigDict(config)
    if "input" not in config.model:  # saved before models took other inputs than ImageNet's
        config.model.input = "imagenet"
    if mesh is not None:
        variables = sharding.replicate(variables, mesh)
    return TrainedRun(config, models.model_from_config(config.model), variables,
                      models.compute_dtype(config.model.dtype), step, extra)


def load_weights(path: str, *, mesh=None) -> TrainedRun:
    """An imported chest X-ray model (`cxrjax import-weights --from torchxrayvision`) as a run at step 0, for
    zero-shot prediction and evaluation: the base config with the model, input scaling and resolution the file
    describes (`data.size` = `data.crop` = its resolution: the whole image, as it was trained), and the file's
    operating points as the thresholds of its source's rule."""
    variables, source = weights.load_weights_file(path)
    if not source:
        raise ValueError(f"{path} describes no trained chest X-ray model (an ImageNet import has no findings' "
                         f"outputs to predict with): train from it with --config.model.pretrained={path}, or import "
                         "one with `cxrjax import-weights --from torchxrayvision`")
    config = default.get_config()
    config.model.name, config.model.input = source["backbone"], source["input"]
    config.data.size = config.data.crop = source["resolution"]
    if mesh is not None:
        variables = sharding.replicate(variables, mesh)
    return TrainedRun(config, models.model_from_config(config.model), variables, models.compute_dtype("float32"), 0,
                      {"thresholds": {source["source"]: source["thresholds"]}, "source": source})
