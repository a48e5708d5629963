"""Wang et al. 2017 (baseline) — ResNet-50 + transition layer + LSE pooling, weighted cross-entropy, SGD.

Paper: mean AUC 0.7451 over the 14 findings, on the official patient-level split released with ChestX-ray14 (its
per-finding table: `cxrjax/metrics/published.py`; the CVPR version's 8-finding numbers used a random 70/10/20 split).
Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/wang2017_resnet50.py --workdir runs/wang2017_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/wang2017_resnet50 --split test

The paper fed 1024² images (a 32×32 map before the transition layer); this row keeps the base config's 224² crops of
256² shards: prepare at 1024 and add `--config.data.size=1024 --config.data.crop=1024` for the paper's input.
"""

from cxrjax.configs import arguments, default

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = default.get_config()
    config.data.protocol = "official"  # the 14-finding results: the official split (see above)
    config.model.name = "resnet50"
    config.model.architecture = "lse"  # transition layer + LSE pooling (r = 10, the paper's best) + prediction layer
    config.model.require_pretrained = True  # ImageNet start
    # the batch-weighted BCE: β_P = (|P|+|N|)/|P|, β_N = (|P|+|N|)/|N|, counted in each batch's labels
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.name = "sgd"  # stochastic gradient descent
    config.optimizer.momentum = 0.9  # ASSUMED (not given)
    config.optimizer.learning_rate = 1e-3  # ASSUMED (not given)
    config.optimizer.decay_every_epochs = 3  # ASSUMED: ÷10 every 3 epochs (not given)
    config.batch_size = 32  # ASSUMED (not given; the paper's 1024² inputs forced small batches)
    config.num_epochs = 12  # ASSUMED (not given)
    return arguments.finish(config, arguments.parse_arguments(argument))
