"""torchxrayvision's pretrained chest X-ray models as cxrjax models, exactly.

Source: J. P. Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and models", MIDL 2022
(arXiv:2111.00595), Apache-2.0, on PyPI as `torchxrayvision`. Its DenseNet-121 models (224², trained on NIH, CheXpert,
MIMIC-CXR, PadChest, RSNA, or all of them) ship as pickled torchxrayvision modules; its ResNet-50 (512², `all`) as a
torchvision state dict whose `conv1` takes one channel. Every model has the same 18 outputs, in the order of
`torchxrayvision.datasets.default_pathologies`; its table entry (`torchxrayvision.models.model_urls[name]`) names in
`labels` the outputs it was trained on ('' where not) and gives per-output operating points (`op_threshs`, NaN for
an output the model was not trained on).

What the import keeps, and why:
- The variables, through the strict torchvision mapping of `weights.from_torch` with a one-channel first
  convolution: nothing is dropped or left at random but the four outputs below.
- The 14 ChestX-ray14 findings' rows of the classifier, by name, in cxrjax's order (`FINDINGS`); the other four
  outputs (Lung Lesion, Fracture, Lung Opacity, Enlarged Cardiomediastinum: `extra_outputs`) are not among the
  findings any cxrjax split is labelled with, so they are dropped, and the file's description lists them.
- The preprocessing the weights were learned on, saved in the same file (`weights.save_variables(..., source=)`):
  one channel scaled to [−1024, 1024] (`config.model.input = "xrv"`) at the model's resolution. Training, evaluation
  and prediction read it from there, so the model is never fed ImageNet-normalised RGB.
- The operating points, as the thresholds of the rule "torchxrayvision" (None where the table has NaN: the model
  was not trained on that finding, and its output there means nothing; `untrained` lists them).

torchxrayvision is needed to import (its DenseNet files unpickle into its classes, and its table holds the labels and
operating points); nothing of it is needed afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from cxrjax.data.findings import FINDINGS, NUM_FINDINGS
from cxrjax.models import weights

RULE = "torchxrayvision"  # the name of the imported operating points among a run's threshold rules
INPUT = "xrv"  # `config.model.input` of every torchxrayvision model (`models.preprocess.INPUTS`)
CITATION = ("Cohen et al., TorchXRayVision: A library of chest X-ray datasets and models, MIDL 2022 "
            "(arXiv:2111.00595)")
# A model name's prefix → the cxrjax backbone and the torch module that is the classifier.
FAMILIES = {"densenet121-res224-": ("densenet121", "classifier"), "resnet50-res512-": ("resnet50", "fc")}


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """One entry of torchxrayvision's model table, as cxrjax needs it."""

    name: str  # e.g. "densenet121-res224-all"
    backbone: str  # the cxrjax backbone, a key of `models.BACKBONES`
    classifier: str  # the torch module whose rows are the outputs
    outputs: tuple[str, ...]  # the classifier's rows, in order (torchxrayvision's default_pathologies)
    trained: tuple[bool, ...]  # per output: whether the model was trained on it (a label in its table entry)
    op_threshs: tuple[float, ...]  # per output; NaN: no operating point
    resolution: int  # the side of the images it was trained on

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        return tuple(output for output in self.outputs if output not in FINDINGS)

    def thresholds(self) -> dict[str, float | None]:
        """Our findings' operating points; None where the model was not trained on the finding."""
        points = {output: value if trained and not math.isnan(value) else None
                  for output, trained, value in zip(self.outputs, self.trained, self.op_threshs)}
        return {finding: points[finding] for finding in FINDINGS}

    def describe(self) -> dict[str, Any]:
        """What the weights file says of itself (`weights.load_source`), JSON-like."""
        thresholds = self.thresholds()
        return {"source": RULE, "model": self.name, "backbone": self.backbone, "input": INPUT,
                "resolution": self.resolution, "thresholds": thresholds,
                "untrained": [finding for finding, value in thresholds.items() if value is None],
                "dropped_outputs": list(self.extra_outputs), "citation": CITATION}


def _torchxrayvision():
    try:
        import torchxrayvision
    except ImportError as error:
        raise ImportError("importing torchxrayvision weights needs the torchxrayvision package (pip install "
                          "torchxrayvision): its DenseNet files are pickled torchxrayvision modules, and its model "
                          "table holds the labels and operating points") from error
    return torchxrayvision


def model_names() -> list[str]:
    """The importable torchxrayvision model names."""
    table = _torchxrayvision().models.model_urls
    return sorted(name for name in table if any(name.startswith(prefix) for prefix in FAMILIES))


def source_model(name: str) -> SourceModel:
    """The table entry of `name` (e.g. "densenet121-res224-all", "resnet50-res512-all")."""
    table = _torchxrayvision().models.model_urls
    family = next((prefix for prefix in FAMILIES if name.startswith(prefix)), None)
    if family is None or name not in table:
        raise ValueError(f"unknown torchxrayvision model {name!r}; importable: {', '.join(model_names())}")
    entry = table[name]
    outputs = tuple(_torchxrayvision().datasets.default_pathologies)
    labels = tuple(entry["labels"])
    if len(labels) != len(outputs) or any(label not in ("", output) for label, output in zip(labels, outputs)):
        raise ValueError(f"torchxrayvision model {name}: its labels are not in the order of default_pathologies")
    backbone, classifier = FAMILIES[family]
    return SourceModel(name, backbone, classifier, outputs, tuple(bool(label) for label in labels),
                       tuple(float(t) for t in entry["op_threshs"]), int(entry["input_resolution"]))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a torchxrayvision weights file: a pickled module (DenseNet) or a state dict (ResNet)."""
    import torch

    _torchxrayvision()  # the DenseNet pickles name its classes
    # weights_only=False: a pickled module is code, not only tensors — which is why this reads only the files
    # torchxrayvision itself downloads (its cache folder), exactly as torchxrayvision reads them.
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    state = loaded.state_dict() if isinstance(loaded, torch.nn.Module) else loaded
    if not isinstance(state, dict):
        raise ValueError(f"{path}: neither a torch module nor a state dict ({type(loaded).__name__})")
    # Some saved modules carry their operating points as a buffer; the table's are the published ones.
    return {key: weights.tensor_to_numpy(value) for key, value in state.items()
            if key != "op_threshs" and value is not None}


def from_torchxrayvision(path: str | Path, name: str) -> tuple[dict[str, dict], dict[str, Any]]:
    """(variables of the cxrjax classifier `model.backbone` with one input channel and the 14 findings' outputs,
    the description to save with them) from torchxrayvision weights file `path` of model `name`."""
    model = source_model(name)
    state = read_state_dict(path)
    weight, bias = f"{model.classifier}.weight", f"{model.classifier}.bias"
    if weight not in state or np.shape(state[weight])[0] != len(model.outputs):
        raise ValueError(f"{path} is not {name}: it has no classifier {weight!r} with {len(model.outputs)} outputs "
                         f"(found {np.shape(state.get(weight, ()))})")
    rows = [model.outputs.index(finding) for finding in FINDINGS]
    state[weight], state[bias] = state[weight][rows], state[bias][rows]
    variables = weights.from_torch(model.backbone, state, NUM_FINDINGS, in_channels=1)
    return variables, model.describe()


def op_norm(probabilities: np.ndarray, thresholds) -> np.ndarray:
    """torchxrayvision's `op_norm`: probabilities rescaled piecewise-linearly so that each operating point maps to
    0.5 (below it: p / 2t; above: 1 − (1 − p) / 2(1 − t)); 0.5 where there is no operating point (None or NaN).
    These are the scores torchxrayvision's models return; cxrjax reports the probabilities and the thresholds
    instead, which give the same decisions."""
    p = np.asarray(probabilities, np.float32)
    t = np.array([np.nan if value is None else value for value in thresholds], np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(p < t, p / (t * 2), 1.0 - (1.0 - p) / ((1 - t) * 2))
    return np.where(np.isnan(t), np.float32(0.5), scaled).astype(np.float32)
