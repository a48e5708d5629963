"""FPT capstone 2023 — Swin-B + class-aware loss; loss ablation rows `:bce`, `:focal`, `:asl`, `:class_aware_coupled`, `:class_aware_no_margin`.

Paper: AUC 0.874 / mAP 0.338 (ablation: BCE 0.804/0.268 · focal 0.821/0.272 · ASL 0.835/0.293 · no decoupling 0.870/0.319 · no margin 0.868/0.312). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights swin_base-imagenet.pth --model swin_base --out weights/swin_base.msgpack
    cxrjax train --config experiments/capstone2023_swin_b.py --workdir runs/capstone2023_swin_b \
        --config.data.data_dir=DATA --config.model.pretrained=weights/swin_base.msgpack
    cxrjax eval --workdir runs/capstone2023_swin_b --split test
"""

from cxrjax.configs import arguments, default

LOSSES = {  # the loss ablation's rows → the prediction head's loss term
    "class_aware": {"loss": "class_aware", "kwargs": {"margin": 0.2}},  # the paper's model: decoupled, margin 0.2
    "bce": {"loss": "bce"},
    "focal": {"loss": "focal"},
    "asl": {"loss": "asl"},
    "class_aware_coupled": {"loss": "class_aware", "kwargs": {"margin": 0.2, "decouple": False}},  # one shared weight
    "class_aware_no_margin": {"loss": "class_aware", "kwargs": {"margin": 0.0}},
}
VARIANTS = tuple(LOSSES)  # at most one; "class_aware" (the paper's model) is the default


def get_config(argument: str | None = None):
    given = arguments.parse_arguments(argument, VARIANTS)
    loss = arguments.choose(given, VARIANTS, "class_aware")
    config = default.get_config()  # resize 256, 224² crops, horizontal flip: the base config's; the official split
    config.data.random_crop = False  # the centre crop for training too
    config.data.rotation = 10.0  # ASSUMED ±10°: a small random rotation, the angle not given
    config.model.name = "swin_base"  # Swin-B
    config.model.require_pretrained = True  # ImageNet start (1k or 22k not stated)
    config.losses = {"logits": {"weight": 1.0, **LOSSES[loss]}}
    config.optimizer.learning_rate = 1e-4  # Adam 1e-4
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_every_epochs = 0  # ASSUMED: a constant rate, no schedule stated
    config.batch_size = 32
    config.num_epochs = 30
    return arguments.finish(config, given)
