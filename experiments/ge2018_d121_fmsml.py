"""Ge et al. 2018, Table 1 — D121 + D121-F-MSML (ensemble with ge2018_d121).

Paper: AUC 0.8462 (W-AUC 0.5950, D-AUC 0.8011, N-AUC 0.8785). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ge2018_d121_fmsml.py --workdir runs/ge2018_d121_fmsml \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ge2018_d121_fmsml --split test

The ensemble row: `cxrjax eval --workdir runs/ge2018_d121_fmsml --ensemble runs/ge2018_d121`.
"""

from cxrjax.configs import default, papers


def get_config(argument: str | None = None):
    return default.finish(papers.ge2018("densenet121", "fmsml"), default.parse_arguments(argument))
