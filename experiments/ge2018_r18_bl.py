"""Ge et al. 2018, Table 1 — R18-BL.

Paper: AUC 0.7680 (W-AUC 0.5543, D-AUC 0.6825, N-AUC 0.8307). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet18-imagenet.pth --model resnet18 --out weights/resnet18.msgpack
    cxrjax train --config experiments/ge2018_r18_bl.py --workdir runs/ge2018_r18_bl \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet18.msgpack
    cxrjax eval --workdir runs/ge2018_r18_bl --split test

Table 1's R18 + R18-BL row (AUC 0.8254, W-AUC 0.5811, D-AUC 0.7756, N-AUC 0.8613), the ensemble with ge2018_r18:
`cxrjax eval --workdir runs/ge2018_r18_bl --ensemble runs/ge2018_r18`.
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name, config.model.architecture = "resnet18", "bilinear"  # Table 1: R18-BL, bilinear pooling
    config.losses = {"fce": {"loss": "bce", "weight": 1.0}}  # the bilinear head's BCE is the whole objective
    config.model.predict_head = "fce"
    return arguments.finish(config, arguments.parse_arguments(argument))
