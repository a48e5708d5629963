"""Rajpurkar et al. 2017 (baseline) — CheXNet DenseNet-121, on its own protocol; `:official` on the official split.

Paper: mean AUC 0.8413 on its own random patient-level 70/10/20 split (Ge Table 3); an independent reproduction 0.838.
Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax prepare --source RELEASE --data-dir DATA --size 224
    cxrjax train --config experiments/chexnet.py --workdir runs/chexnet \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/chexnet --split test

As the paper: images downscaled to 224² (shards prepared at 224, no crop), random horizontal flips only, Adam 1e-3
with the rate ÷10 when the validation loss stops improving, and the model with the lowest validation loss kept.
"""

from cxrjax.configs import arguments, default

VARIANTS = ("", "official")  # the paper's own protocol; the official split


def get_config(argument: str | None = None):
    given = arguments.parse_arguments(argument, ("official",))
    config = default.get_config()  # BCE, Adam: the base config's
    # CheXNet's own random patient-level 70/10/20 split (the base config's fractions); `:official`: the official one.
    config.data.protocol = "official" if "official" in given else "random"
    config.data.size, config.data.crop = 224, 224  # downscaled to 224², no crop
    config.data.random_crop = False  # augmentation: random horizontal flips only (data.flip)
    config.model.name = "densenet121"
    config.model.require_pretrained = True  # ImageNet start
    config.optimizer.learning_rate = 1e-3  # Adam 1e-3
    config.optimizer.schedule = "plateau"  # the rate ÷10 each time the validation loss does not improve after an epoch
    config.optimizer.plateau_patience = 1
    config.select_best_by = "val_loss"  # the model with the lowest validation loss
    config.batch_size = 16
    config.num_epochs = 12  # ASSUMED (not given)
    return arguments.finish(config, given)
