"""Ma, Wang, Hoi 2019 — CAN (cross-attention network; documented interpretation).

Sources searched (last on 2026-12-02): the abstract (arXiv 2007.10859) and the introduction of the MICCAI 2019 chapter
(LNCS 11769, pp. 730-738, doi 10.1007/978-3-030-32226-7_81). They name the loss terms and their purpose: "an
attention loss that could facilitate the model to learn better representations and a multi-label balance loss to
reduce imbalance between positive and negative classes within each disease" and to down-weight easy samples, beside
cross-entropy; the formulas, backbones, weights and tables are in the paper's method and results sections, which no
source here holds. So both losses stay interpretations (`cxrjax.losses.can_attention`, `can_balance`), and so does
every value below marked ASSUMED.

Paper: unverified (the paper's tables are not available here). Ours: not yet run on the real release (see
experiments/README.md).

    cxrjax import-weights densenet121-imagenet.pth --model densenet121 --out weights/densenet121.msgpack
    cxrjax train --config experiments/ma2019_can.py --workdir runs/ma2019_can \
        --config.data.data_dir=DATA --config.model.pretrained=weights/densenet121.msgpack
    cxrjax eval --workdir runs/ma2019_can --split test

The second branch (resnet50) takes `--config.model.pretrained_second=weights/resnet50.msgpack`.
"""

from cxrjax.configs import arguments, default

VARIANTS = ("",)  # the config arguments naming this file's rows ("": the default), each smoke-tested


def get_config(argument: str | None = None):
    # The full text is not available here: every value but the kinds of loss terms is ASSUMED (the model's
    # assumptions: `cxrjax.models.multistream.CrossAttentionNetwork`). The split: the base config's official one.
    config = default.get_config()
    config.model.name = "densenet121"  # ASSUMED: branch 1
    config.model.second_backbone = "resnet50"  # ASSUMED: branch 2
    config.model.architecture = "can"  # cross-attention: the Hadamard product of the two branches' feature maps
    config.model.require_pretrained = True  # ImageNet start (branch 2: --config.model.pretrained_second)
    config.losses = {  # cross-entropy + a multi-label balance loss + an attention loss; ASSUMED: heads and weights
        "logits": {"loss": "bce", "weight": 1.0},  # BCE on the fused logits
        "balance": {"loss": "can_balance", "head": "logits", "weight": 1.0},  # the balance loss on them
        "branch1": {"loss": "bce", "weight": 0.5},  # BCE on each branch's own head, 0.5 each
        "branch2": {"loss": "bce", "weight": 0.5},
        "attention": {"loss": "can_attention", "weight": 0.1},  # the attention-agreement loss
    }
    config.optimizer.learning_rate = 1e-4  # ASSUMED: Adam 1e-4
    config.optimizer.decay_every_epochs = 3  # ASSUMED: ÷10 every 3 epochs
    config.batch_size = 32  # ASSUMED
    config.num_epochs = 12  # ASSUMED
    return arguments.finish(config, arguments.parse_arguments(argument))
