"""Rajpurkar et al. 2017 (baseline) — CheXNet DenseNet-121.

Paper: mean AUC 0.8413 on its own random split (Ge Table 3); independent reproduction 0.838. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/chexnet.py --workdir runs/chexnet \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/chexnet --split test
"""

from cxrjax.configs import arguments, default

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = default.get_config()  # BCE, Adam, 224² crops: the base config's; the official split (CheXNet's: random)
    config.model.name = "densenet121"
    config.model.require_pretrained = True  # ImageNet start
    config.optimizer.learning_rate = 1e-3  # Adam 1e-3
    config.optimizer.schedule = "plateau"  # the rate ÷10 each time the validation loss does not improve after an epoch
    config.optimizer.plateau_patience = 1
    config.batch_size = 16
    config.num_epochs = 12  # ASSUMED (not given)
    return arguments.finish(config, arguments.parse_arguments(argument))
