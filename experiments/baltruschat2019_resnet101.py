"""Baltruschat et al. 2019 (Sci Rep 9:6381) — ResNet-101, the deeper network of the journal's depth study, in the
set-up of its best row: trained from scratch on X-rays, 448² crops of 512² shards, age, sex and view fused with the
image features (`cxrjax/configs/baltruschat2019.py`, `depth_study`; READING: that the depths were compared in that
set-up). ResNet-101 is He et al.'s, torchvision's layout.

Paper: no number for this row is available here (the journal's table is not transcribed). Ours: not yet run on the
real release (see experiments/README.md).

    cxrjax prepare --source RELEASE --data-dir DATA --size 512
    cxrjax train --config experiments/baltruschat2019_resnet101.py --workdir runs/baltruschat2019_resnet101_r0 \
        --config.data.data_dir=DATA --config.data.fold=0        # re-samplings K = 0..4

Protocol (at most one): five re-samplings (default), `:kfold` or `:official`, as in `baltruschat2019_resnet50.py`.
"""

from cxrjax.configs import baltruschat2019, default

DEFAULT_INITIALISATION = "scratch"  # X-ray-specific, like the journal's best row
VARIANTS = ("",)  # smoke-tested; `:kfold` and `:official` change only the split (smoke-tested with ResNet-50)


def get_config(argument: str | None = None):
    return baltruschat2019.depth_study(default.get_config(), "resnet101", argument)
