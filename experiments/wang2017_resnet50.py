"""Wang et al. 2017 (baseline) — ResNet-50, batch-weighted BCE.

Paper: mean AUC 0.7451 (per-finding table: `cxrjax/metrics/published.py`). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/wang2017_resnet50.py --workdir runs/wang2017_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/wang2017_resnet50 --split test
"""

from cxrjax.configs import arguments, default

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    config = default.get_config()
    config.data.protocol = "random"  # Wang's random patient-level 70/10/20 split
    config.model.name = "resnet50"
    config.model.require_pretrained = True  # ImageNet start
    # the batch-weighted BCE: β_P = (|P|+|N|)/|P|, β_N = (|P|+|N|)/|N|, counted in each batch's labels
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.learning_rate = 1e-4  # ASSUMED: Adam 1e-4 (the optimizer and rate are not given here)
    config.optimizer.decay_every_epochs = 3  # ASSUMED: ÷10 every 3 epochs (not given here)
    config.batch_size = 32  # ASSUMED (not given here)
    config.num_epochs = 12  # ASSUMED (not given here)
    return arguments.finish(config, arguments.parse_arguments(argument))
