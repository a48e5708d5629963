"""Ge et al. 2018, Table 1 — D121 + D121-F-MSML (ensemble with ge2018_d121).

Paper: AUC 0.8462 (W-AUC 0.5950, D-AUC 0.8011, N-AUC 0.8785). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ge2018_d121_fmsml.py --workdir runs/ge2018_d121_fmsml \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ge2018_d121_fmsml --split test

The ensemble row: `cxrjax eval --workdir runs/ge2018_d121_fmsml --ensemble runs/ge2018_d121`.

Memory: the full bilinear head is Ge's setting, 1024² = 1,048,576 features (a 14.7M-parameter `fce.fc`). The
documented low-rank option `model.reduce_channels` maps each stream's features by a learned 1x1 conv to K channels first
(K² features; not the paper's setting, so say so when reporting a number):
`--config.model.reduce_channels=256` (65,536 features).
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name, config.model.architecture = "densenet121", "fmsml"  # Table 1: two D121 streams, F-MSML
    config = ge2018.fmsml_objective(config)  # α(MSML + CE) + β FCE, predicting from FCE; Table 2's Global
    return arguments.finish(config, arguments.parse_arguments(argument))
