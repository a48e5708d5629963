"""Ma, Wang, Hoi 2019 — CAN (cross-attention network; documented interpretation).

Paper: unverified (the paper's tables are not available here). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ma2019_can.py --workdir runs/ma2019_can \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ma2019_can --split test

The second branch (resnet50) takes `--config.model.pretrained_second=weights/resnet50.msgpack`.
"""

from cxrjax.configs import default, papers

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    return default.finish(papers.ma2019_can(), default.parse_arguments(argument))
