"""The papers' training set-ups, one builder per paper; `experiments/<row>.py` files pick a row of a results table.

Every value a paper states is set here with its source (see ../shared/PAPERS.md); every value it leaves open is
marked ASSUMED. Data paths are not set: pass `--config.data.data_dir=...` (the --data-dir of `cxrjax prepare`).

Every paper here starts from ImageNet weights (Baltruschat's from-scratch row excepted), so every builder sets
`model.require_pretrained`: the run refuses to start without `--config.model.pretrained=FILE` (`cxrjax
import-weights`) rather than train silently from random weights; `:scratch` (any experiment file) opts out.
"""

from __future__ import annotations

import ml_collections

from cxrjax.configs import default

GE_LOSSES = {  # Ge 2018: E_total = α(E_MSML + E_CE) + β E_FCE, α = 0.2, β = 0.6
    "ce": {"loss": "bce", "weight": 0.2},
    "msml": {"loss": "msml", "weight": 0.2},
    "fce": {"loss": "bce", "weight": 0.6},
}


GE_STRATEGIES = ("global", "local1", "local2", "local_fixed2")  # Table 2's training strategies


def ge2018(backbone: str, architecture: str = "classifier", strategy: str = "global") -> ml_collections.ConfigDict:
    """Ge et al. 2018: ImageNet backbones; Adam 1e-4, betas (0.9, 0.999), ÷10 every 3 epochs; 256 → random 224 crop;
    random patient-level 70/10/20 split. ASSUMED: batch 32, 12 epochs (not given).

    `strategy` (Table 2, F-MSML only): global = all heads jointly; local1 = stage 1 of Local and Local-Fixed, the
    streams with their own heads (the bilinear head gets no loss); local2 / local_fixed2 = stage 2 from stage 1's
    best checkpoint (`--config.model.init_from=STAGE1_WORKDIR`), everything trained / the streams frozen.
    """
    if strategy not in GE_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(GE_STRATEGIES)}")
    config = default.get_config()
    config.data.protocol = "random"
    config.model.name, config.model.architecture = backbone, architecture
    config.model.require_pretrained = True  # ImageNet backbones (stage 2 starts from stage 1: init_from suffices)
    config.optimizer.learning_rate, config.optimizer.decay_every_epochs = 1e-4, 3
    config.batch_size, config.num_epochs = 32, 12
    if architecture == "bilinear":
        config.losses = {"fce": {"loss": "bce", "weight": 1.0}}
        config.model.predict_head = "fce"
    elif architecture == "fmsml":
        losses = dict(GE_LOSSES)
        if strategy == "local1":
            losses.pop("fce")
        config.losses = losses
        config.model.predict_head = "ce" if strategy == "local1" else "fce"  # ASSUMED: the paper predicts from FCE
        if strategy == "local_fixed2":
            config.model.frozen = ("stream1", "stream2")
        config.model.require_init_from = strategy in ("local2", "local_fixed2")  # stage 2 starts from stage 1
    return config


BALTRUSCHAT_INITIALISATIONS = ("finetuned", "frozen", "scratch")


def baltruschat2019(init: str = "finetuned", large: bool = False, meta: bool = False) -> ml_collections.ConfigDict:
    """Baltruschat et al. 2019, ResNet-50. `init`: finetuned (ImageNet weights, everything trains), frozen (ImageNet
    features, only the head trains) or scratch (random init); independent of it, `large`: higher resolution (448
    crops of the 512 shards) and `meta`: fusion of age, sex and view position (both: the paper's large + meta model).
    The official split, or `--config.data.protocol=kfold --config.data.fold=K` for the 5-fold patient-level
    resampling. Loss: weighted BCE (ASSUMED per batch, Wang 2017's β). ASSUMED: Adam 1e-4, ÷10 every 5 epochs,
    batch 32, 15 epochs.
    """
    if init not in BALTRUSCHAT_INITIALISATIONS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {list(BALTRUSCHAT_INITIALISATIONS)}")
    config = default.get_config()
    config.model.name = "resnet50"
    config.model.require_pretrained = init != "scratch"
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.learning_rate, config.optimizer.decay_every_epochs = 1e-4, 5
    config.batch_size, config.num_epochs = 32, 15
    config.data.num_folds = 5
    if init == "frozen":
        config.model.frozen = ("backbone",)
    if large:
        config.data.size, config.data.crop = 512, 448
    if meta:
        config.model.architecture = "fusion"
    return config


CAPSTONE_LOSSES = {  # the capstone's loss ablation rows → the prediction head's loss term
    "class_aware": {"loss": "class_aware", "kwargs": {"margin": 0.2}},
    "bce": {"loss": "bce"},
    "focal": {"loss": "focal"},
    "asl": {"loss": "asl"},
    "class_aware_coupled": {"loss": "class_aware", "kwargs": {"margin": 0.2, "decouple": False}},
    "class_aware_no_margin": {"loss": "class_aware", "kwargs": {"margin": 0.0}},
}


def capstone2023(loss: str = "class_aware") -> ml_collections.ConfigDict:
    """FPT capstone 2023: Swin-B, class-aware loss with margin 0.2; Adam 1e-4, weight decay 5e-4, batch 32,
    30 epochs; resize 256, centre crop 224, horizontal flip, small rotation (ASSUMED ±10°); official split.

    `loss` picks a row of the loss ablation: bce, focal, asl, class_aware (decoupled, margin 0.2),
    class_aware_coupled ("without decoupling", one shared weight), class_aware_no_margin.
    """
    if loss not in CAPSTONE_LOSSES:
        raise ValueError(f"unknown loss ablation row {loss!r}; choose one of {list(CAPSTONE_LOSSES)}")
    config = default.get_config()
    config.model.name = "swin_base"
    config.model.require_pretrained = True  # ImageNet start
    config.losses = {"logits": {"weight": 1.0, **CAPSTONE_LOSSES[loss]}}
    config.optimizer.learning_rate, config.optimizer.weight_decay = 1e-4, 5e-4
    config.optimizer.decay_every_epochs = 0
    config.batch_size, config.num_epochs = 32, 30
    config.data.random_crop, config.data.rotation = False, 10.0
    return config


def ma2019_can() -> ml_collections.ConfigDict:
    """Ma, Wang, Hoi 2019 cross-attention network (the full text is not available here; see
    `cxrjax.models.multistream.CrossAttentionNetwork` for every assumption). ASSUMED: branches DenseNet-121 and
    ResNet-50; loss = BCE on the fused logits + the multi-label balance loss (`can_balance`) on them + BCE on each
    branch's own head (0.5 each) + the attention-agreement loss (0.1); Adam 1e-4, ÷10 every 3 epochs, batch 32,
    12 epochs; official split."""
    config = default.get_config()
    config.model.name, config.model.second_backbone, config.model.architecture = "densenet121", "resnet50", "can"
    config.model.require_pretrained = True  # ImageNet start (branch 2: --config.model.pretrained_second)
    config.losses = {
        "logits": {"loss": "bce", "weight": 1.0},
        "balance": {"loss": "can_balance", "head": "logits", "weight": 1.0},
        "branch1": {"loss": "bce", "weight": 0.5},
        "branch2": {"loss": "bce", "weight": 0.5},
        "attention": {"loss": "can_attention", "weight": 0.1},
    }
    config.optimizer.learning_rate, config.optimizer.decay_every_epochs = 1e-4, 3
    config.batch_size, config.num_epochs = 32, 12
    return config


def wang2017() -> ml_collections.ConfigDict:
    """Wang et al. 2017 baseline: ImageNet ResNet-50 with the batch-weighted BCE (β_P, β_N per batch); random
    patient-level 70/10/20 split. ASSUMED: Adam 1e-4, ÷10 every 3 epochs, batch 32, 12 epochs."""
    config = default.get_config()
    config.data.protocol = "random"
    config.model.name = "resnet50"
    config.model.require_pretrained = True  # ImageNet start
    config.losses = {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    config.optimizer.learning_rate, config.optimizer.decay_every_epochs = 1e-4, 3
    config.batch_size, config.num_epochs = 32, 12
    return config


def chexnet() -> ml_collections.ConfigDict:
    """CheXNet (Rajpurkar 2017): ImageNet DenseNet-121, BCE, Adam 1e-3, batch 16, 224², official split here; the
    rate ÷10 each time the validation loss does not improve after an epoch (`plateau`, patience 1).
    ASSUMED 12 epochs."""
    config = default.get_config()
    config.model.name = "densenet121"
    config.model.require_pretrained = True  # ImageNet start
    config.optimizer.learning_rate, config.optimizer.schedule, config.optimizer.plateau_patience = 1e-3, "plateau", 1
    config.batch_size, config.num_epochs = 16, 12
    return config
