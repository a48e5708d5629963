"""What Ge et al. 2018's seven rows (`experiments/ge2018_*.py`) share, each value once with its source in the paper:
the training set-up it states once for all its tables, and the F-MSML objective with Table 2's training
strategies. Each experiment file sets its own backbone, architecture and heads.

Images 256² with random 224² crops (Ge) are the base config's `data.size`, `data.crop` and `data.random_crop`.
"""

import ml_collections

STRATEGIES = ("global", "local1", "local2", "local_fixed2")  # Table 2's training strategies (F-MSML only)


def training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Ge's training set-up, the same for every row of Tables 1-3, set on `config` (the base one): one list of values
    instead of the same six lines in seven experiment files."""
    config.data.protocol = "random"  # random patient-level 70/10/20 split, after Wang 2017 (not the official split)
    config.model.require_pretrained = True  # ImageNet backbones (stage 2 starts from stage 1: init_from suffices)
    config.optimizer.learning_rate = 1e-4  # Adam 1e-4, betas (0.9, 0.999): the base config's optimizer and betas
    config.optimizer.decay_every_epochs = 3  # the rate ÷10 every 3 epochs
    config.batch_size = 32  # ASSUMED: the paper gives no batch size
    config.num_epochs = 12  # ASSUMED: the paper gives no number of epochs
    return config


def fmsml_objective(config: ml_collections.ConfigDict, strategy: str = "global") -> ml_collections.ConfigDict:
    """F-MSML's losses, E_total = α(E_MSML + E_CE) + β E_FCE with α = 0.2, β = 0.6, and its prediction head, as the
    Table 2 `strategy` trains them: global = all heads jointly; local1 = stage 1 of Local and Local-Fixed, the
    streams with their own heads, CE + MSML (the bilinear FCE head gets no loss); local2 / local_fixed2 = stage 2 from
    stage 1's best checkpoint (`--config.model.init_from=STAGE1_WORKDIR`), fine-tuned with the FCE term alone (Ge:
    "then fine-tune with FCE"), everything trained / the streams frozen (only the bilinear head learns)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    losses = {
        "ce": {"loss": "bce", "weight": 0.2},  # α E_CE on stream 1's own head
        "msml": {"loss": "msml", "weight": 0.2},  # α E_MSML on stream 2's own head
        "fce": {"loss": "bce", "weight": 0.6},  # β E_FCE on the bilinear fusion head
    }
    if strategy == "local1":
        del losses["fce"]
    if strategy in ("local2", "local_fixed2"):
        # E_FCE alone; its weight stays β (Adam's steps do not depend on a constant factor of the loss).
        losses = {"fce": losses["fce"]}
    config.losses = losses
    config.model.predict_head = "ce" if strategy == "local1" else "fce"  # ASSUMED: the paper predicts from FCE
    if strategy == "local_fixed2":
        config.model.frozen = ("stream1", "stream2")
    config.model.require_init_from = strategy in ("local2", "local_fixed2")  # stage 2 starts from stage 1
    return config
