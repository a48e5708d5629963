"""Ge et al. 2018, Table 1 — D121-BL.

Paper: AUC 0.8107 (W-AUC 0.5770, D-AUC 0.7523, N-AUC 0.8529). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ge2018_d121_bl.py --workdir runs/ge2018_d121_bl \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ge2018_d121_bl --split test

Table 1's D121 + D121-BL row (AUC 0.8364, W-AUC 0.5896, D-AUC 0.7926, N-AUC 0.8679), the ensemble with ge2018_d121:
`cxrjax eval --workdir runs/ge2018_d121_bl --ensemble runs/ge2018_d121`.

Memory: the full bilinear head is Ge's setting, 1024² = 1,048,576 features (a 14.7M-parameter `fce.fc`). The
documented low-rank option `model.reduce_channels` maps the features by a learned 1x1 conv to K channels first
(K² features; not the paper's setting, so say so when reporting a number):
`--config.model.reduce_channels=256` (65,536 features).
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name, config.model.architecture = "densenet121", "bilinear"  # Table 1: D121-BL, bilinear pooling
    config.losses = {"fce": {"loss": "bce", "weight": 1.0}}  # the bilinear head's BCE is the whole objective
    config.model.predict_head = "fce"
    return arguments.finish(config, arguments.parse_arguments(argument))
