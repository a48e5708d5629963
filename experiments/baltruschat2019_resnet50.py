"""Baltruschat et al. 2019 — ResNet-50: initialisation `:finetuned` (default), `:frozen` or `:scratch` (at most one),
combined with `:large` (448² crops of 512² shards) and/or `:meta` (age, sex, view fused): `:large,meta` is the paper's
higher-resolution model with metadata fusion.

Paper: best model ≈ 0.822 mean AUC (5-fold), ≈ 0.806 (official split) — secondary source, unverified. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/baltruschat2019_resnet50.py --workdir runs/baltruschat2019_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/baltruschat2019_resnet50 --split test

`:finetuned` and `:frozen` refuse to start without `--config.model.pretrained` (`model.require_pretrained`);
`:scratch` trains from random weights without it. `:large` needs 512 shards (`cxrjax prepare --size 512`);
folds: `--config.data.protocol=kfold --config.data.fold=K` for K = 0..4, then `cxrjax folds runs/fold0 ... runs/fold4`.
"""

from cxrjax.configs import default, papers

INITIALISATIONS = papers.BALTRUSCHAT_INITIALISATIONS  # at most one; "finetuned" is the default
FLAGS = ("large", "meta")  # independent of the initialisation and of each other
VARIANTS = (*INITIALISATIONS, "large", "meta", "large,meta")


def get_config(argument: str | None = None):
    arguments = default.parse_arguments(argument, (*INITIALISATIONS, *FLAGS))
    init = default.choose(arguments, INITIALISATIONS, "finetuned")
    config = papers.baltruschat2019(init, large="large" in arguments, meta="meta" in arguments)
    return default.finish(config, arguments)
