"""Ge et al. 2018, Table 1 — R18.

Paper: AUC 0.8239 (W-AUC 0.5800, D-AUC 0.7801, N-AUC 0.8552). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet18-imagenet.pth --model resnet18 --out weights/resnet18.msgpack
    cxrjax train --config experiments/ge2018_r18.py --workdir runs/ge2018_r18 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet18.msgpack
    cxrjax eval --workdir runs/ge2018_r18 --split test
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name = "resnet18"  # Table 1: R18, the plain GAP + fc classifier
    return arguments.finish(config, arguments.parse_arguments(argument))
