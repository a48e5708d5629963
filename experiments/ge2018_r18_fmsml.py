"""Ge et al. 2018, Tables 1 and 2 — R18-F-MSML (Global; `:local1`, `:local2`, `:local_fixed2` for Table 2's Local and Local-Fixed stages).

Paper: Table 1 gives no number for the single R18-F-MSML; its R18 + R18-F-MSML ensemble has AUC 0.8388 (W-AUC 0.5892,
D-AUC 0.7907, N-AUC 0.8733). Table 2 (AUC): Global 0.8388 · Local 0.8310 · Local-Fixed 0.8356, read as the same
ensemble under each strategy (Global equals Table 1's ensemble). Ours: not yet run on the real release (see
experiments/README.md).

    cxrjax import-weights resnet18-imagenet.pth --model resnet18 --out weights/resnet18.msgpack
    cxrjax train --config experiments/ge2018_r18_fmsml.py --workdir runs/ge2018_r18_fmsml \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet18.msgpack
    cxrjax eval --workdir runs/ge2018_r18_fmsml --split test

Local / Local-Fixed: train `:local1` (CE + MSML on the streams) into runs/s1, then `:local2` (fine-tune with FCE
alone) or `:local_fixed2` (FCE alone, the streams frozen) with `--config.model.init_from=runs/s1`. The R18 + R18-F-MSML
row (and Table 2's, per strategy): `cxrjax eval --workdir runs/ge2018_r18_fmsml --ensemble runs/ge2018_r18`.
"""

from cxrjax.configs import arguments, default, ge2018

VARIANTS = ge2018.STRATEGIES  # at most one; "global" is the default


def get_config(argument: str | None = None):
    given = arguments.parse_arguments(argument, ge2018.STRATEGIES)
    strategy = arguments.choose(given, ge2018.STRATEGIES, "global")
    config = ge2018.training(default.get_config())  # Ge's split, ImageNet start, optimizer, batch and epochs
    config.model.name, config.model.architecture = "resnet18", "fmsml"  # Tables 1 and 2: two R18 streams, F-MSML
    config = ge2018.fmsml_objective(config, strategy)  # α(MSML + CE) + β FCE, as Table 2's strategy trains them
    return arguments.finish(config, given)
