"""Rajpurkar et al. 2017 (baseline) — CheXNet DenseNet-121.

Paper: mean AUC 0.8413 on its own random split (Ge Table 3); independent reproduction 0.838. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/chexnet.py --workdir runs/chexnet \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/chexnet --split test
"""

from cxrjax.configs import default, papers

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    return default.finish(papers.chexnet(), default.parse_arguments(argument))
