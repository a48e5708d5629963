"""Ge et al. 2018, Table 1 — D121.

Paper: AUC 0.8354 (W-AUC 0.5888, D-AUC 0.7937, N-AUC 0.8651). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ge2018_d121.py --workdir runs/ge2018_d121 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ge2018_d121 --split test

Table 1's R18 + D121 row (AUC 0.8355, W-AUC 0.5883, D-AUC 0.7930, N-AUC 0.8653), the ensemble with ge2018_r18:
`cxrjax eval --workdir runs/ge2018_d121 --ensemble runs/ge2018_r18`.

The plain GAP + fc classifier: the bilinear channel reduction (`--config.model.reduce_channels=K`) belongs to the
`ge2018_d121_bl.py` / `ge2018_d121_fmsml.py` rows, not to this one (the classifier refuses it).
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name = "densenet121"  # Table 1: D121, the plain GAP + fc classifier
    return arguments.finish(config, arguments.parse_arguments(argument))
