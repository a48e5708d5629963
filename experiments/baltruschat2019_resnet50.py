"""Baltruschat et al. 2019 — the ResNet-50 study (the preprint, arXiv 1803.02315, and the journal's Sci Rep 9:6381).

Rows, the preprint's best first (arguments combine with a comma):
- `:scratch,large,meta` — the preprint's best, "the X-ray-specific ResNet-50, integrating non-image data": trained
  from scratch on X-rays, 448² input, age, sex and view fused with the image features (READING: that its best row is
  the higher-resolution one; the abstract names only "X-ray-specific" and "non-image data").
- `:finetuned` (the default) — ImageNet ResNet-50 fine-tuned; `:frozen` — ImageNet features, only the head trains;
  `:scratch` — X-ray-specific, from random weights. At most one of the three.
- `:large` — the "extended" higher-resolution ResNet-50 (448² crops of 512² shards; READING, see
  `cxrjax/configs/baltruschat2019.py`); `:meta` — the non-image data fused. Both combine with any initialisation.

Paper: no per-row number is available here (the papers' tables are not transcribed); the only figures at hand, a
secondary source's "best model" ≈0.822 (re-sampling) and ≈0.806 (official split), belong to the journal's best row,
ResNet-38 with non-image data (`baltruschat2019_resnet38.py`). Ours: not yet run on the real release (see
experiments/README.md).

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

from cxrjax.configs import arguments, baltruschat2019, default

INITIALISATIONS = baltruschat2019.INITIALISATIONS  # at most one
DEFAULT_INITIALISATION = "finetuned"
# The config arguments naming this file's rows, the preprint's best first, each smoke-tested.
VARIANTS = ("scratch,large,meta", "", "frozen", "scratch", "large", "meta", "large,meta", "kfold", "official")


def get_config(argument: str | None = None):
    given = arguments.parse_arguments(argument, (*INITIALISATIONS, *baltruschat2019.FLAGS,
                                                 *baltruschat2019.PROTOCOLS))
    config = baltruschat2019.training(
        default.get_config(), backbone="resnet50",
        init=arguments.choose(given, INITIALISATIONS, DEFAULT_INITIALISATION),
        large="large" in given, meta="meta" in given,
        protocol=arguments.choose(given, baltruschat2019.PROTOCOLS, "resample"))
    return arguments.finish(config, given)
