"""cxrjax: multi-label chest X-ray classification on NIH ChestX-ray14 in JAX/Flax.

The public names, for a notebook or a script:

    import cxrjax
    run = cxrjax.load("runs/r18", checkpoint="best")        # a trained run, from its checkpoint alone
    for p in run.predict(["scan.png", pil_image, uint8_array]):
        print(p.path, dict(zip(cxrjax.FINDINGS, p.probabilities)), p.positive)
    heat = run.gradcam("scan.png", "Cardiomegaly")          # (H, W) in the file's own frame, 0..1

(`predict(..., metadata=cxrjax.Metadata(age, sex, view))` for a model that reads them), and the building blocks:
`create_model` (a registered backbone inside an architecture), `losses` (the registry `losses.LOSSES` and
`losses.build_objective`), `metrics` (`metrics.summarize`, `metrics.full_metrics`), `train_and_evaluate(config,
workdir)` and `evaluate(workdir, checkpoint, split)` (what `cxrjax train` and `cxrjax eval` run).

Why resolved on first use (PEP 562 `__getattr__`): `import cxrjax.data.findings` (the shard writer, grain's worker
processes) must not pay for importing JAX, Flax and the whole training stack.
"""

import importlib

from cxrjax.data.findings import FINDINGS, NUM_FINDINGS

_PUBLIC = {  # name → (module, attribute; None: the module itself)
    "load": ("cxrjax.inference.predictor", "load"),
    "Predictor": ("cxrjax.inference.predictor", "Predictor"),
    "Metadata": ("cxrjax.inference.predict", "Metadata"),
    "create_model": ("cxrjax.models", "create_model"),
    "losses": ("cxrjax.losses", None),
    "metrics": ("cxrjax.metrics", None),
    "train_and_evaluate": ("cxrjax.training.train", "train_and_evaluate"),
    "evaluate": ("cxrjax.evaluation.evaluate", "evaluate_workdir"),
}

__all__ = ["FINDINGS", "NUM_FINDINGS", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cxrjax' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)
