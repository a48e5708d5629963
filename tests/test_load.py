"""One way to load a trained run (`evaluation.load.load_run`): from its checkpoint alone. A run started from
imported weights and a second stage started from a first still evaluate, predict and localize, with the same
numbers, once the weights file and the stage-1 run are gone, and once the shards have moved (`--data-dir`)."""

import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cxrjax import cli
from cxrjax.configs import default
from cxrjax.evaluation import evaluate
from cxrjax.evaluation.load import load_run
from cxrjax.inference import localize, predict
from cxrjax.models import create_model, weights
from cxrjax.training import train


def _config(data_dir):
    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = data_dir, 32, 28
    config.data.num_threads = 2
    config.batch_size, config.eval_batch_size, config.num_epochs = 16, 32, 1
    config.model.architecture = "fusion"  # imported weights go into its backbone (models.Architecture)
    return config


def _outputs(workdir, release, data_dir=None):
    """What eval, predict and localize give for `workdir`'s best checkpoint."""
    evaluate.evaluate_workdir(workdir, "best", "test", bootstrap=0, data_dir=data_dir)
    with open(os.path.join(workdir, "eval", "test", "predictions.csv")) as f:
        evaluated = f.read()
    paths = sorted(glob.glob(os.path.join(release, "images", "*.png")))[:3]
    predicted, errors = predict.predict_files(load_run(workdir), paths, metadata=predict.Metadata(50.0, "F", "PA"))
    assert not errors
    if data_dir is None:
        localized, _ = localize.localize_workdir(workdir, os.path.join(release, "BBox_List_2017.csv"))
    else:
        localized = None
    return evaluated, np.stack([p.probabilities for p in predicted]), localized


@pytest.fixture(scope="module")
def staged(synthetic_release, prepared_shards, tmp_path_factory):
    """A stage-1 run from an imported-weights file W, and a stage 2 from stage 1's best checkpoint."""
    root = tmp_path_factory.mktemp("staged")
    pretrained = str(root / "resnet18.msgpack")
    model = create_model("resnet18", 14)
    weights.save_variables(pretrained, model.init(jax.random.key(7), jnp.zeros((1, 28, 28, 3)), train=False))
    stage1, stage2, data_dir = str(root / "stage1"), str(root / "stage2"), str(root / "data")
    shutil.copytree(prepared_shards[0], data_dir)  # a copy of the shards of their own, which the test moves
    config = _config(data_dir)
    config.model.pretrained, config.model.require_pretrained = pretrained, True
    train.train_and_evaluate(config, stage1)
    config = _config(data_dir)
    config.model.init_from, config.model.require_init_from = stage1, True
    train.train_and_evaluate(config, stage2)
    return pretrained, stage1, stage2, data_dir


def test_eval_predict_and_localize_need_only_the_checkpoint(staged, synthetic_release, tmp_path, capsys):
    pretrained, stage1, stage2, data_dir = staged
    before = {workdir: _outputs(workdir, synthetic_release) for workdir in (stage1, stage2)}
    kept = str(tmp_path / "stage1")
    shutil.copytree(stage1, kept)
    os.remove(pretrained)
    shutil.rmtree(stage1)
    for workdir, (evaluated, predicted, localized) in before.items():
        workdir = kept if workdir == stage1 else workdir  # stage 1 itself, without its weights file
        after = _outputs(workdir, synthetic_release)
        assert after[0] == evaluated
        np.testing.assert_array_equal(after[1], predicted)
        assert after[2] == localized
    # The shards moved: eval reads them where --data-dir says, with the same predictions.
    moved = str(tmp_path / "moved")
    os.rename(data_dir, moved)
    arguments = ["eval", "--workdir", stage2, "--split", "test", "--bootstrap", "0"]
    assert cli.main(arguments) == 1 and "no prepared shards" in capsys.readouterr().err
    assert cli.main([*arguments, "--data-dir", moved]) == 0
    with open(os.path.join(stage2, "eval", "test", "predictions.csv")) as f:
        assert f.read() == before[stage2][0]


def test_a_loaded_run_carries_its_architecture_and_operating_points(staged):
    run = load_run(staged[2])
    assert run.architecture.reads_metadata and run.config.model.init_from == staged[1]
    assert set(run.thresholds) == {"youden", "f1"} and run.step > 0
