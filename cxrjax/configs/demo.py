"""The demo's configuration: ResNet-18 on the synthetic release at 48² (crop 40), a few epochs on a laptop CPU.

Expected: mean AUC ≥ 0.90 on the synthetic official test split in a few minutes on 2 CPU cores (`cxrjax demo`).
"""

import ml_collections

from cxrjax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.size = 48
    config.data.crop = 40
    config.model.name = "resnet18"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.decay_every_epochs = 2
    config.batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 2
    config.log_every_steps = 20
    return config
