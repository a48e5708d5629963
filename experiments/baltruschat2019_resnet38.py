"""Baltruschat et al. 2019 (Sci Rep 9:6381) — ResNet-38, the journal's best row: "the X-ray-specific ResNet-38,
integrating non-image data yields the best overall results" (abstract). Trained from scratch on X-rays, 448² crops
of 512² shards, age, sex and view fused with the image features (`cxrjax/configs/baltruschat2019.py`,
`depth_study`). ResNet-38 itself is a READING (`cxrjax/models/resnet.py`, `ResNet38`): He et al.'s bottleneck
ResNet with 12 blocks, (2, 3, 5, 2) per stage.

Paper: ≈0.822 mean AUC under re-sampling, ≈0.806 on the official split (a secondary source's "best model", which
the abstract makes this row; unverified). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax prepare --source RELEASE --data-dir DATA --size 512
    cxrjax train --config experiments/baltruschat2019_resnet38.py --workdir runs/baltruschat2019_resnet38_r0 \
        --config.data.data_dir=DATA --config.data.fold=0        # re-samplings K = 0..4
    cxrjax folds runs/baltruschat2019_resnet38_r0 ... runs/baltruschat2019_resnet38_r4

Protocol (at most one): five re-samplings (default), `:kfold` or `:official`, as in `baltruschat2019_resnet50.py`.
"""

from cxrjax.configs import baltruschat2019, default

DEFAULT_INITIALISATION = "scratch"  # X-ray-specific: no ImageNet weights (none exist for this depth)
VARIANTS = ("",)  # smoke-tested; `:kfold` and `:official` change only the split (smoke-tested with ResNet-50)


def get_config(argument: str | None = None):
    return baltruschat2019.depth_study(default.get_config(), "resnet38", argument)
