"""FPT capstone 2023 — Swin-B + class-aware loss; loss ablation rows `:bce`, `:focal`, `:asl`, `:class_aware_coupled`, `:class_aware_no_margin`.

Paper: AUC 0.874 / mAP 0.338 (ablation: BCE 0.804/0.268 · focal 0.821/0.272 · ASL 0.835/0.293 · no decoupling 0.870/0.319 · no margin 0.868/0.312). Ours: not yet run on the real release (see experiments/README.md).

    cxrjax import-weights swin_base-imagenet.pth --model swin_base --out weights/swin_base.msgpack
    cxrjax train --config experiments/capstone2023_swin_b.py --workdir runs/capstone2023_swin_b \
        --config.data.data_dir=DATA --config.model.pretrained=weights/swin_base.msgpack
    cxrjax eval --workdir runs/capstone2023_swin_b --split test
"""

from cxrjax.configs import default, papers

VARIANTS = tuple(papers.CAPSTONE_LOSSES)  # at most one; "class_aware" (the paper's model) is the default


def get_config(argument: str | None = None):
    arguments = default.parse_arguments(argument, VARIANTS)
    loss = default.choose(arguments, VARIANTS, "class_aware")
    return default.finish(papers.capstone2023(loss), arguments)
