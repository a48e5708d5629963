"""Training: the sharded step equals the single-device step; resume is exact; NaN stops cleanly; SIGTERM saves."""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import TraceCounter, assert_same_training
from cxrjax import losses
from cxrjax.configs import default
from cxrjax.evaluation import evaluate
from cxrjax.models import create_model
from cxrjax.runtime import checkpoint, sharding
from cxrjax.training import train
from cxrjax.training.state import create_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _leaves(state) -> dict[str, np.ndarray]:
    """Parameters and batch statistics by path, on the host."""
    tree = {"params": state.params, "batch_stats": state.batch_stats}
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def _one_step(mesh, batch):
    """(initial leaves, leaves after one step, step metrics)."""
    model = create_model("resnet18", 14)
    # Plain SGD: its update is linear in the gradient, so a parameter difference is a gradient difference
    # (Adam's first step is lr * sign(g), which flips for gradients that are zero up to rounding).
    state = create_train_state(model, optax.sgd(0.1), (32, 32, 3), jax.random.key(0), mesh)
    initial = _leaves(state)
    step = jax.jit(functools.partial(train.train_step, objective=losses.build_objective({"logits": ("bce", 1.0)}),
                                     dtype=jnp.float32, dropout_key=jax.random.key(1)))
    state, metrics = step(state, sharding.to_global(batch, mesh))
    return initial, _leaves(state), jax.device_get(metrics)


def test_eight_device_step_equals_one_device_step():
    """Same step, other reduction orders (the all-reduce, BatchNorm's global statistics): equal up to float32
    rounding relative to each update (conftest.assert_same_training)."""
    assert jax.device_count() == 8, "conftest sets 8 fake CPU devices"
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8),
             "labels": rng.integers(0, 2, (16, 14), dtype=np.uint8),
             "age": rng.uniform(20, 80, 16).astype(np.float32),
             "sex": rng.integers(0, 2, 16, dtype=np.int32), "view": rng.integers(0, 2, 16, dtype=np.int32)}
    initial, one, one_metrics = _one_step(sharding.data_mesh(jax.devices()[:1]), batch)
    initial_eight, eight, eight_metrics = _one_step(sharding.data_mesh(), batch)
    jax.tree.map(np.testing.assert_array_equal, initial_eight, initial)  # the same initialisation on any mesh
    assert_same_training(eight, one, initial)
    assert eight_metrics["loss"] == pytest.approx(one_metrics["loss"], rel=1e-5) and eight_metrics["loss"] > 0


def _config(data_dir):
    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = data_dir, 32, 28
    config.data.num_threads = 2
    config.batch_size, config.eval_batch_size, config.num_epochs = 16, 32, 2
    config.optimizer.learning_rate, config.optimizer.decay_every_epochs = 1e-3, 1
    config.log_every_steps = 5
    return config


def _predictions(workdir):
    evaluate.evaluate_workdir(workdir, "latest", "test")
    with open(os.path.join(workdir, "eval", "test", "predictions.csv")) as f:
        return f.read()


@pytest.fixture(scope="module")
def uninterrupted(prepared_shards, tmp_path_factory):
    """Two epochs with a validation after each; the traces of the jitted functions are counted meanwhile."""
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    with TraceCounter() as traces:
        result = train.train_and_evaluate(_config(prepared_shards[0]), workdir)
    return workdir, result | {"traces": traces}


def test_training_traces_the_step_once_and_validation_once(uninterrupted):
    workdir, result = uninterrupted
    assert result["step"] >= 10  # many steps, two validations over several padded batches
    assert result["traces"]["train_step"] == 1, result["traces"]
    assert result["traces"]["step"] == 1, result["traces"]  # evaluate.make_predict_step's forward


def test_evaluation_of_a_whole_split_traces_once(uninterrupted):
    with TraceCounter() as traces:
        evaluate.evaluate_workdir(uninterrupted[0], "latest", "test", bootstrap=0)
    assert traces["step"] == 1, traces


def test_grain_worker_processes_train_the_same_run(prepared_shards, uninterrupted, tmp_path):
    """`data.num_workers` moves reading into grain worker processes; batches, and so the run, stay the same."""
    workdir, result = uninterrupted
    config = _config(prepared_shards[0])
    config.data.num_workers = 2
    with_workers = train.train_and_evaluate(config, str(tmp_path))
    assert with_workers["step"] == result["step"] and with_workers["val_mean_auc"] == result["val_mean_auc"]
    assert _predictions(str(tmp_path)) == _predictions(workdir)


def test_resumed_run_equals_uninterrupted_run(prepared_shards, uninterrupted, tmp_path):
    workdir, result = uninterrupted
    stopped = train.train_and_evaluate(_config(prepared_shards[0]), str(tmp_path), lambda step: step == 7)
    assert stopped["stopped_early"] and stopped["step"] == 7  # mid-epoch
    resumed = train.train_and_evaluate(_config(prepared_shards[0]), str(tmp_path))
    assert not resumed["stopped_early"] and resumed["step"] == result["step"]
    assert resumed["val_mean_auc"] == result["val_mean_auc"]
    assert _predictions(str(tmp_path)) == _predictions(workdir)
    # Two identical members: the ensemble's average is each member's prediction.
    ensemble = evaluate.evaluate_workdir(str(tmp_path), "latest", "test", ensemble=[workdir], bootstrap=0)
    with open(os.path.join(tmp_path, "eval", "test_ensemble-2", "predictions.csv")) as f:
        assert f.read() == _predictions(workdir)
    assert ensemble["ensemble"] == [str(tmp_path), workdir]
    assert ensemble["operating_points_from"] == "val predictions of this evaluation" and ensemble["operating_points"]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(prepared_shards, uninterrupted,
                                                                         tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    last_good = uninterrupted[1]["step"]
    config = _config(prepared_shards[0])
    config.num_epochs = 3
    config.optimizer.learning_rate = float("nan")  # a rate changed on purpose, to diverge
    with pytest.raises(train.TrainingDiverged, match=f"at step {last_good + 2}; .* last good checkpoint is step "
                                                     f"{last_good}"):
        train.train_and_evaluate(config, workdir, accept_config_change=True)
    assert checkpoint.manager(workdir).all_steps() == checkpoint.manager(uninterrupted[0]).all_steps()


def test_resuming_with_a_config_that_changes_the_run_is_refused(prepared_shards, uninterrupted, tmp_path):
    """The uninterrupted run's workdir, resumed with another batch size and loss: one error naming both fields; the
    fields that do not change the run (threads, logging, more epochs) resume; --accept_config_change continues."""
    workdir, result = uninterrupted
    changed = _config(prepared_shards[0])
    changed.batch_size = 8
    changed.losses = {"logits": {"loss": "focal", "weight": 1.0, "kwargs": {}}}
    with pytest.raises(ValueError, match=r"trained with other values of batch_size, losses; resuming would mix two "
                                         r"runs: use a new --workdir, or pass --accept_config_change"):
        train.train_and_evaluate(changed, workdir)
    harmless = _config(prepared_shards[0])
    harmless.data.num_threads, harmless.log_every_steps = 1, 3
    assert train.train_and_evaluate(harmless, workdir)["step"] == result["step"]  # finished: nothing left to do
    assert train.changed_fields(json.loads(json.dumps(changed.to_dict())), changed) == []
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    changed.num_epochs = 3  # one more epoch, at the new batch size, on purpose
    assert train.train_and_evaluate(changed, copy, accept_config_change=True)["step"] > result["step"]


def test_sigterm_saves_and_exits_zero(prepared_shards, tmp_path):
    config_file = tmp_path / "config.py"
    config_file.write_text("from cxrjax.configs import default\n\ndef get_config():\n"
                           "    c = default.get_config()\n"
                           f"    c.data.data_dir, c.data.size, c.data.crop = {prepared_shards[0]!r}, 32, 28\n"
                           "    c.batch_size, c.num_epochs, c.log_every_steps = 16, 50, 1\n    return c\n")
    workdir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "cxrjax.cli", "train", f"--config={config_file}",
                                f"--workdir={workdir}", "--config.optimizer.learning_rate=0.01"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (log.exists() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "stopped by signal" in out
    steps = checkpoint.manager(str(workdir)).all_steps()
    assert len(steps) == 1 and steps[0] >= 2


def test_plateau_schedule_divides_the_rate_after_a_validation_loss_plateau(prepared_shards, tmp_path):
    config = _config(prepared_shards[0])
    config.optimizer.schedule, config.optimizer.learning_rate = "plateau", 0.05  # a rate that makes val loss wobble
    config.num_epochs, config.steps_per_epoch, config.log_every_steps = 5, 3, 1
    with TraceCounter() as traces:
        train.train_and_evaluate(config, str(tmp_path))
    assert traces["train_step"] == 1, traces  # changing the rate does not recompile the step
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    val_losses = [r["val_loss"] for r in records if "val_loss" in r]
    rates = {r["step"]: r["learning_rate"] for r in records if "learning_rate" in r}
    # The rule, independently: ÷10 whenever an epoch does not improve on the best loss so far by 1e-4 relative.
    best, scale, expected = float("inf"), 1.0, []
    for loss in val_losses:
        if loss < best * (1 - 1e-4):
            best = loss
        else:
            scale /= 10
        expected.append(scale)
    assert 0.0 < expected[-1] < 1.0, val_losses  # at least one plateau happened in this run
    for epoch, scale in enumerate(expected[:-1], start=1):
        assert rates[epoch * 3 + 1] == pytest.approx(0.05 * scale), (epoch, val_losses, rates)
