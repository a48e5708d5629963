"""Wang et al. 2017 (baseline) — ResNet-50, batch-weighted BCE.

Paper: mean AUC 0.7451 (per-finding table in PAPERS.md). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/wang2017_resnet50.py --workdir runs/wang2017_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/wang2017_resnet50 --split test
"""

from cxrjax.configs import default, papers

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    return default.finish(papers.wang2017(), default.parse_arguments(argument))
