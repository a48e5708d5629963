"""`cxrjax demo`: synthetic release → prepare → train → eval on the test split → per-finding AUC table.

The whole pipeline a real run uses, at a size a laptop CPU finishes in minutes. Re-running on the same workdir
reuses what is there (the release, the shards, the finished training).
"""

from __future__ import annotations

import os

from cxrjax import metrics
from cxrjax.configs import demo as demo_config
from cxrjax.evaluation import evaluate
from cxrjax.training import train
from data_pipelines import synthetic
from data_pipelines.prepare import prepare


def run_demo(workdir: str, num_images: int = 2000, image_size: int = 64, num_epochs: int | None = None,
             print_fn=print) -> dict:
    release = os.path.join(workdir, "release")
    if not os.path.exists(os.path.join(release, "test_list.txt")):
        written = synthetic.write_release(release, num_images=num_images, size=image_size, seed=0)
        print_fn(f"synthetic release: {written.num_images} images of {written.num_patients} patients in {release}")
    config = demo_config.get_config()
    config.data.data_dir = os.path.join(workdir, "data")
    if num_epochs is not None:
        config.num_epochs = num_epochs
    prepared = prepare(release, config.data.data_dir, size=config.data.size, num_workers=1)
    if prepared.report is not None:
        print_fn(f"prepare: {prepared.report.summary()}")
    run_dir = os.path.join(workdir, "run")
    train.train_and_evaluate(config, run_dir)
    result = evaluate.evaluate_workdir(run_dir, "best", "test")
    print_fn(f"\nsynthetic test split, {result['num_images']} images (checkpoint step {result['step']}):")
    print_fn(metrics.auc_table(result))
    return result
