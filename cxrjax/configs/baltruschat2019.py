"""What Baltruschat et al. 2019's rows (`experiments/baltruschat2019_resnet{38,50,101}.py`) share, each value once
with where it comes from: the evaluation protocol, the loss, the initialisation and the two extensions of the
ResNet-50 study (higher resolution, non-image data). Each experiment file sets its own backbone and which of these
its row uses.

Sources: the preprint (arXiv 1803.02315: ResNet-50 only; best, the X-ray-specific ResNet-50 with non-image data)
and the journal version (Sci Rep 9:6381, 2019: adds ResNet-38 and ResNet-101; best, the X-ray-specific ResNet-38
with non-image data). Only their abstracts and a secondary summary are available here; what they leave open is
marked READING (a choice between stated alternatives) or ASSUMED (a value they do not give), and listed in
experiments/README.md under Readings.
"""

import ml_collections

from cxrjax.configs import arguments

INITIALISATIONS = ("finetuned", "frozen", "scratch")  # ImageNet fine-tuned, ImageNet features frozen, X-ray-specific
FLAGS = ("large", "meta")  # the higher-resolution model and the non-image data, independent of each other
PROTOCOLS = ("resample", "kfold", "official")  # at most one; "resample" is the default


def training(config: ml_collections.ConfigDict, *, backbone: str, init: str, large: bool, meta: bool,
             protocol: str) -> ml_collections.ConfigDict:
    """One Baltruschat row on `config` (the base one): `backbone` from `init`, at 448² when `large`, fused with age,
    sex and view when `meta`, evaluated under `protocol`."""
    if init not in INITIALISATIONS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {list(INITIALISATIONS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    # READING of "5-fold re-sampling": five random patient-level 70/10/20 splits, re-sampling K = data.fold with seed
    # split_seed + K (`resample`); `kfold` reads the same words as disjoint 5-fold cross-validation (64/16/20);
    # `official` is the papers' second evaluation, the official split.
    config.data.protocol = protocol
    config.data.fractions = (0.7, 0.1, 0.2)  # resample: train / val / test by patient
    config.data.num_folds = 5  # five re-samplings or folds, K = data.fold = 0..4
    if large:
        # READING of the "extended ResNet-50 architecture" that "leverages the high spatial resolution": the same
        # network on 448² crops (448 unverified) of the 512² shards, whose last feature map is 14² instead of 7²; how
        # the papers extend the architecture beyond its input is not in the available text.
        config.data.size, config.data.crop = 512, 448
    config.model.name = backbone
    config.model.require_pretrained = init != "scratch"  # finetuned, frozen: ImageNet weights; scratch: random init
    if init == "frozen":  # ImageNet features without fine-tuning: only the head trains
        config.model.frozen = ("backbone",)
    if meta:  # patient age, sex and view position fused with the image features
        config.model.architecture = "fusion"
    # a weighted BCE ("multi-label loss function", unverified); ASSUMED per batch, Wang 2017's β_P, β_N
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.learning_rate = 1e-4  # ASSUMED: Adam 1e-4 (the optimizer and rate are not given here)
    config.optimizer.decay_every_epochs = 5  # ASSUMED: ÷10 every 5 epochs (not given here)
    config.batch_size = 32  # ASSUMED (not given here)
    config.num_epochs = 15  # ASSUMED (not given here)
    return config


def depth_study(config: ml_collections.ConfigDict, backbone: str, argument: str | None) -> ml_collections.ConfigDict:
    """The journal's depth study (ResNet-38, ResNet-101 beside ResNet-50) on `config`: each depth as the papers'
    best ResNet-50 row, X-ray-specific (from scratch), at 448², with non-image data (READING: the abstract names the
    best as "the X-ray-specific ResNet-38, integrating non-image data"; that the depths were compared in that set-up
    is not in the available text). `argument`: the config arguments, a protocol (`:kfold`, `:official`) or the
    common `:smoke`."""
    given = arguments.parse_arguments(argument, PROTOCOLS)
    config = training(config, backbone=backbone, init="scratch", large=True, meta=True,
                      protocol=arguments.choose(given, PROTOCOLS, "resample"))
    return arguments.finish(config, given)
