"""Baltruschat et al. 2019 — ResNet-50 variants: `:finetuned` (default), `:frozen`, `:scratch`, `:large` (448²), `:meta` (age, sex, view fused).

Paper: best model ≈ 0.822 mean AUC (5-fold), ≈ 0.806 (official split) — secondary source, unverified. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/baltruschat2019_resnet50.py --workdir runs/baltruschat2019_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/baltruschat2019_resnet50 --split test

`:scratch` trains without `--config.model.pretrained`; `:large` needs 512 shards (`cxrjax prepare --size 512`);
folds: `--config.data.protocol=kfold --config.data.fold=K` for K = 0..4, then `cxrjax folds runs/fold0 ... runs/fold4`.
"""

from cxrjax.configs import default, papers


def get_config(argument: str | None = None):
    arguments = default.parse_arguments(argument, ('finetuned', 'frozen', 'scratch', 'large', 'meta'))
    variant = next(iter(arguments - {"smoke"}), "finetuned")
    return default.finish(papers.baltruschat2019(variant), arguments)
