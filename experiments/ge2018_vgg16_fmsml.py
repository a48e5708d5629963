"""Ge et al. 2018, Tables 1 and 3 — R18 + VGG-F-MSML / D121 + VGG-F-MSML (ensembles with ge2018_r18 / ge2018_d121).

Paper: AUC 0.8438 / 0.8537. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights vgg16-imagenet.pth --model vgg16 --out weights/vgg16.msgpack
    cxrjax train --config experiments/ge2018_vgg16_fmsml.py --workdir runs/ge2018_vgg16_fmsml \
        --config.data.data_dir=DATA --config.model.pretrained=weights/vgg16.msgpack
    cxrjax eval --workdir runs/ge2018_vgg16_fmsml --split test

The ensemble rows: `cxrjax eval --workdir runs/ge2018_vgg16_fmsml --ensemble runs/ge2018_r18` (R18 + VGG-F-MSML:
AUC 0.8438, W-AUC 0.5932, D-AUC 0.8011, N-AUC 0.8743) and `--ensemble runs/ge2018_d121` (D121 + VGG-F-MSML: AUC
0.8537, W-AUC 0.5952, D-AUC 0.8060, N-AUC 0.8827).

Each VGG-16 stream ends at conv5_3 (14×14 at 224²), the last convolutional layer that Ge pool bilinearly, not at
pool5 (`cxrjax.models.LAST_CONV_LAYER`); the streams' own GAP heads read the same map.
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name, config.model.architecture = "vgg16", "fmsml"  # Tables 1 and 3: two VGG-16 streams, F-MSML
    config = ge2018.fmsml_objective(config)  # α(MSML + CE) + β FCE, predicting from FCE; Table 2's Global
    return arguments.finish(config, arguments.parse_arguments(argument))
