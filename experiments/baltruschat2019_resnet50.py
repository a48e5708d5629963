"""Baltruschat et al. 2019 — ResNet-50: initialisation `:finetuned` (default), `:frozen` or `:scratch` (at most one),
combined with `:large` (448² crops of 512² shards) and/or `:meta` (age, sex, view fused): `:large,meta` is the paper's
higher-resolution model with metadata fusion.

Paper: best model ≈ 0.822 mean AUC (5-fold), ≈ 0.806 (official split) — secondary source, unverified. Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights resnet50-imagenet.pth --model resnet50 --out weights/resnet50.msgpack
    cxrjax train --config experiments/baltruschat2019_resnet50.py --workdir runs/baltruschat2019_resnet50 \
        --config.data.data_dir=DATA --config.model.pretrained=weights/resnet50.msgpack
    cxrjax eval --workdir runs/baltruschat2019_resnet50 --split test

`:finetuned` and `:frozen` refuse to start without `--config.model.pretrained` (`model.require_pretrained`);
`:scratch` trains from random weights without it. `:large` needs 512 shards (`cxrjax prepare --size 512`).

Evaluation protocol (at most one): the paper's "5-fold re-sampling" as five random patient-level 70/10/20 splits
(default, `protocol=resample`: run K = 0..4 with `--config.data.fold=K`, seeds 0-4), or `:kfold` (disjoint 5-fold
cross-validation by patient, 64/16/20: another reading of the same words, `--config.data.fold=K`), or `:official`
(the official split, the paper's second evaluation). Then `cxrjax folds runs/r0 ... runs/r4` (mean ± sd).
"""

from cxrjax.configs import arguments, default

INITIALISATIONS = ("finetuned", "frozen", "scratch")  # at most one; "finetuned" is the default
FLAGS = ("large", "meta")  # independent of the initialisation and of each other
PROTOCOLS = ("resample", "kfold", "official")  # at most one; "resample" is the default
VARIANTS = (*INITIALISATIONS, "large", "meta", "large,meta", "kfold", "official")


def get_config(argument: str | None = None):
    given = arguments.parse_arguments(argument, (*INITIALISATIONS, *FLAGS, *PROTOCOLS))
    init = arguments.choose(given, INITIALISATIONS, "finetuned")
    config = default.get_config()
    # The evaluation protocol (see above): READING of "5-fold re-sampling" as five random 70/10/20 patient splits.
    config.data.protocol = arguments.choose(given, PROTOCOLS, "resample")
    config.data.fractions = (0.7, 0.1, 0.2)  # resample: train / val / test by patient
    config.data.num_folds = 5  # five re-samplings or folds, K = data.fold = 0..4
    if "large" in given:  # the higher-resolution model: 448² crops (448 unverified) of the 512² shards
        config.data.size, config.data.crop = 512, 448
    config.model.name = "resnet50"
    config.model.require_pretrained = init != "scratch"  # finetuned, frozen: ImageNet weights; scratch: random init
    if init == "frozen":  # ImageNet features without fine-tuning: only the head trains
        config.model.frozen = ("backbone",)
    if "meta" in given:  # patient age, sex and view position fused with the image features
        config.model.architecture = "fusion"
    # a weighted BCE ("multi-label loss function", unverified); ASSUMED per batch, Wang 2017's β_P, β_N
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.learning_rate = 1e-4  # ASSUMED: Adam 1e-4 (the optimizer and rate are not given here)
    config.optimizer.decay_every_epochs = 5  # ASSUMED: ÷10 every 5 epochs (not given here)
    config.batch_size = 32  # ASSUMED (not given here)
    config.num_epochs = 15  # ASSUMED (not given here)
    return arguments.finish(config, given)
