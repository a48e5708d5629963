"""Nothing lost, nothing silent (issue 13, items 3-6): a damaged checkpoint is named and passed over for the newest
intact one; a diverged run stops naming the step and saves nothing; Ctrl-C saves like SIGTERM; bad command lines
are one line and a non-zero exit, never a traceback. The CLI runs are real subprocesses."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from cxrjax.configs import default
from cxrjax.evaluation import evaluate
from cxrjax.evaluation.load import load_run
from cxrjax.runtime import checkpoint
from cxrjax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH, EPOCHS, STOPPED_AT = 3, 2, 5  # a run of 6 steps; the stopped copy keeps step 3 (best) and 5


def _config(data_dir: str):
    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = data_dir, 32, 28
    config.data.num_threads = 2
    config.batch_size, config.eval_batch_size, config.num_epochs = 16, 32, EPOCHS
    config.steps_per_epoch, config.log_every_steps = STEPS_PER_EPOCH, 1
    config.optimizer.learning_rate = 1e-3
    return config


def _config_file(tmp_path, data_dir: str) -> str:
    """`_config` as a file for `cxrjax train --config`."""
    path = tmp_path / "config.py"
    path.write_text("from cxrjax.configs import default\n\n\ndef get_config():\n    c = default.get_config()\n"
                    f"    c.data.data_dir, c.data.size, c.data.crop = {data_dir!r}, 32, 28\n"
                    f"    c.data.num_threads, c.batch_size, c.eval_batch_size, c.num_epochs = 2, 16, 32, {EPOCHS}\n"
                    f"    c.steps_per_epoch, c.log_every_steps = {STEPS_PER_EPOCH}, 1\n"
                    "    c.optimizer.learning_rate = 1e-3\n    return c\n")
    return str(path)


def _cli(*arguments: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrjax.cli", *arguments], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, **kwargs)


# A progress line (cxrjax.data.progress in a log): "predict:   0% 0/1 [00:00<?, ?img/s]".
PROGRESS_LINE = re.compile(r"^[^:]+: +\d+%")


def _messages(stderr: str) -> list[str]:
    """The lines of `stderr` that are not progress lines."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(_messages(result.stderr)) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _predictions(workdir: str) -> str:
    evaluate.evaluate_workdir(workdir, "latest", "test", bootstrap=0)
    with open(os.path.join(workdir, "eval", "test", "predictions.csv")) as f:
        return f.read()


@pytest.fixture(scope="module")
def uninterrupted(prepared_shards, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    result = train.train_and_evaluate(_config(prepared_shards[0]), workdir)
    assert result["step"] == STEPS_PER_EPOCH * EPOCHS and not result["stopped_early"]
    return workdir, _predictions(workdir)


@pytest.fixture(scope="module")
def stopped(prepared_shards, tmp_path_factory):
    """The same run stopped at step 5: step 3 (validated, the best) and step 5 (mid-epoch, the latest) are kept."""
    workdir = str(tmp_path_factory.mktemp("stopped"))
    result = train.train_and_evaluate(_config(prepared_shards[0]), workdir, lambda step: step == STOPPED_AT)
    assert result["stopped_early"] and result["step"] == STOPPED_AT
    mngr = checkpoint.manager(workdir)
    assert mngr.all_steps() == [STEPS_PER_EPOCH, STOPPED_AT] and mngr.best_step() == STEPS_PER_EPOCH
    mngr.close()
    return workdir


def _damage(workdir: str, step: int, how: str) -> str:
    """Damages one file of `step` as a crash or a full disk does; returns the file."""
    directory = os.path.join(workdir, "checkpoints", str(step))
    if how == "truncated array file":
        path = max(glob.glob(os.path.join(directory, "state", "d", "*")), key=os.path.getsize)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:
        path = os.path.join(directory, *{"empty data_iter JSON": ("data_iter", "process_0-of-1.json"),
                                         "empty state/_METADATA": ("state", "_METADATA")}[how])
        open(path, "w").close()
    return path


@pytest.fixture
def image(synthetic_release) -> str:
    return sorted(glob.glob(os.path.join(synthetic_release, "images", "*.png")))[0]


@pytest.mark.parametrize("how", ["truncated array file", "empty data_iter JSON", "empty state/_METADATA"])
def test_a_damaged_latest_checkpoint_is_named_and_the_intact_one_is_used(stopped, image, how, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    damaged = _damage(workdir, STOPPED_AT, how)
    result = _cli("predict", image, "--workdir", workdir, "--checkpoint", "latest", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(_messages(result.stderr)) == 1, result.stderr[-3000:]
    assert f"checkpoint step {STOPPED_AT} is damaged: {damaged}" in result.stderr
    assert json.loads(result.stdout)  # the prediction, from step 3
    assert load_run(workdir, "latest").step == STEPS_PER_EPOCH
    assert os.path.exists(damaged)  # left in place for inspection

    with pytest.raises(checkpoint.DamagedCheckpoint, match=f"checkpoint step {STOPPED_AT} is damaged: "):
        checkpoint.load_variables(workdir, str(STOPPED_AT))  # asked for by number: no other step instead


def test_resuming_past_a_damaged_checkpoint_redoes_its_steps_exactly(stopped, uninterrupted, prepared_shards,
                                                                     tmp_path):
    """Resumes from step 3 (step 5 is damaged and set aside): steps 4-6 are redone, to the uninterrupted result."""
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    damaged = _damage(workdir, STOPPED_AT, "truncated array file")
    result = train.train_and_evaluate(_config(prepared_shards[0]), workdir)
    assert result["step"] == STEPS_PER_EPOCH * EPOCHS
    assert _predictions(workdir) == uninterrupted[1]
    moved = os.path.join(workdir, checkpoint.DAMAGED_DIR, str(STOPPED_AT))
    assert os.path.exists(damaged.replace(os.path.join(workdir, "checkpoints", str(STOPPED_AT)), moved))


def test_a_damaged_best_asked_for_is_one_line_and_rc_1(stopped, image, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    damaged = _damage(workdir, STEPS_PER_EPOCH, "empty state/_METADATA")
    _assert_one_line_error(_cli("predict", image, "--workdir", workdir, "--checkpoint", "best"),
                           f"checkpoint step {STEPS_PER_EPOCH} is damaged: {damaged}: empty")


def _finite_latest(workdir: str) -> int:
    mngr = checkpoint.manager(workdir)
    step = mngr.latest_step()
    mngr.close()
    variables = checkpoint.load_variables(workdir, "latest")[3]
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(variables))
    return step


def test_a_huge_learning_rate_stops_naming_the_step_and_saves_nothing(stopped, prepared_shards, tmp_path):
    """Resumed at step 5 with a rate of 1e10: the loss is still ordinary at step 6, computed with step 5's
    parameters; the parameters after update 6, about to be validated and saved, are checked themselves."""
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    result = _cli("train", f"--config={_config_file(tmp_path, prepared_shards[0])}", f"--workdir={workdir}",
                  "--config.optimizer.learning_rate=1e10", "--accept_config_change")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("cxrjax train: error: loss is ") and f"after step {STOPPED_AT + 1}" in last_line, \
        last_line
    assert f"The last good checkpoint is step {STOPPED_AT}." in last_line
    assert _finite_latest(workdir) == STOPPED_AT


def test_nan_parameters_at_a_stop_are_not_saved(stopped, prepared_shards, tmp_path):
    """A NaN rate: step 6's loss is finite (step 5's parameters), its update is NaN. A SIGTERM at step 6 must not
    save those parameters as the last good checkpoint."""
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    config = _config(prepared_shards[0])
    config.optimizer.learning_rate = float("nan")
    with pytest.raises(train.TrainingDiverged, match=f"parameters are not finite after step {STOPPED_AT + 1}; "
                                                     f".* last good checkpoint is step {STOPPED_AT}"):
        train.train_and_evaluate(config, workdir, lambda step: step == STOPPED_AT + 1, accept_config_change=True)
    assert _finite_latest(workdir) == STOPPED_AT


def _training_child(tmp_path, data_dir: str, workdir) -> subprocess.Popen:
    """`cxrjax train` of `_config` in a child, returned once its signal handlers are installed: the checkpoint folder
    is made after that, so a signal then lands during the set-up or the first steps."""
    process = subprocess.Popen([sys.executable, "-m", "cxrjax.cli", "train",
                                f"--config={_config_file(tmp_path, data_dir)}", f"--workdir={workdir}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 240
    while not (workdir / "checkpoints").exists() and time.time() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    return process


def test_ctrl_c_saves_and_exits_zero_and_the_resumed_run_is_the_uninterrupted_one(uninterrupted, prepared_shards,
                                                                                tmp_path):
    workdir = tmp_path / "run"
    process = _training_child(tmp_path, prepared_shards[0], workdir)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "stopped by signal" in out, out
    steps = checkpoint.manager(str(workdir)).all_steps()
    assert len(steps) == 1 and steps[0] < STEPS_PER_EPOCH * EPOCHS, steps
    train.train_and_evaluate(_config(prepared_shards[0]), str(workdir))
    assert _predictions(str(workdir)) == uninterrupted[1]


def test_a_second_ctrl_c_aborts_at_once_in_one_line(prepared_shards, tmp_path):
    workdir = tmp_path / "run"
    process = _training_child(tmp_path, prepared_shards[0], workdir)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert _messages(err)[-1] == "interrupted by a second Ctrl-C; nothing saved since the last checkpoint"


BAD_OVERRIDES = [
    (["--config.foo=1"], "the config has no field 'foo'"),
    (["--config.data.szie=64"], "no field 'data.szie'; did you mean --config.data.size?"),
    (["--config.batch_size=0"], "batch_size must be at least 1 (got 0)"),
    (["--config.data.crop=40"], "data.crop must be between 1 and data.size 32 (got 40)"),
    (["--config.data.protocol=kfold", "--config.data.fold=5"], "data.fold must be between 0 and data.num_folds - 1"),
]


@pytest.mark.parametrize("overrides,message", BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_a_bad_config_override_is_one_line(overrides, message, prepared_shards, tmp_path):
    workdir = tmp_path / "run"
    result = _cli("train", f"--config={_config_file(tmp_path, prepared_shards[0])}", f"--workdir={workdir}",
                  *overrides)
    _assert_one_line_error(result, message)
    assert not workdir.exists()


def test_resuming_with_another_model_names_both(stopped, prepared_shards, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(stopped, workdir)
    config = _config_file(tmp_path, prepared_shards[0])
    refused = _cli("train", f"--config={config}", f"--workdir={workdir}", "--config.model.name=resnet34")
    _assert_one_line_error(refused, "other values of model.name", "it holds a resnet18 classifier, the config asks "
                                                                  "for a resnet34 classifier")
    forced = _cli("train", f"--config={config}", f"--workdir={workdir}", "--config.model.name=resnet34",
                  "--accept_config_change")
    assert forced.returncode == 1 and "Traceback" not in forced.stderr, forced.stderr[-3000:]
    assert len(forced.stderr) < 2000, forced.stderr[-3000:]
    assert forced.stderr.strip().splitlines()[-1].startswith(
        f"cxrjax train: error: the checkpoint at step {STOPPED_AT} holds a resnet18 classifier and the config asks "
        "for a resnet34 classifier")


@pytest.mark.parametrize("command", [["eval"], ["predict", "x.png"], ["localize", "--boxes", "boxes.csv"]])
def test_a_workdir_that_does_not_exist_is_one_line_and_not_created(command, tmp_path):
    workdir = tmp_path / "mistyped"
    result = _cli(*command, "--workdir", str(workdir))
    _assert_one_line_error(result, f"no run directory {workdir}")
    assert not workdir.exists()


def _wait_for(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 240
    while not ready():
        assert process.poll() is None, (what, process.communicate())
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_kill_9_at_seeded_points_then_resume_gives_the_uninterrupted_predictions(uninterrupted, prepared_shards,
                                                                                  tmp_path):
    """SIGKILL (nothing saved on the way out) at seeded points: after the k-th metrics line, or as soon as a new
    checkpoint folder appears (a save under way); each resume continues from the newest intact step, and the last
    one's predictions and metrics.jsonl are the uninterrupted run's (each step once)."""
    rng = np.random.default_rng(7)
    workdir = tmp_path / "run"
    log = workdir / "metrics.jsonl"

    def lines() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    def checkpoints() -> set:
        return set(os.listdir(workdir / "checkpoints")) if (workdir / "checkpoints").exists() else set()

    for kill_point in ("metrics line", "checkpoint save"):
        before, lines_before = checkpoints(), lines()
        process = _training_child(tmp_path, prepared_shards[0], workdir)
        if kill_point == "metrics line":
            _wait_for(process, lambda: lines() >= lines_before + int(rng.integers(1, 4)), kill_point)
        else:
            _wait_for(process, lambda: checkpoints() - before, kill_point)
        process.kill()
        process.communicate(timeout=60)
    result = train.train_and_evaluate(_config(prepared_shards[0]), str(workdir))
    assert result["step"] == STEPS_PER_EPOCH * EPOCHS and not result["stopped_early"]
    def steps(path) -> list[int]:
        return [json.loads(line)["step"] for line in path.read_text().splitlines()]

    assert steps(log) == steps(Path(uninterrupted[0]) / "metrics.jsonl")
    assert _predictions(str(workdir)) == uninterrupted[1]


def test_a_resumed_log_keeps_the_steps_up_to_the_checkpoint_and_drops_a_cut_line(tmp_path):
    from cxrjax.training import run_log

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1}\n{"step": 2, "loss": 2}\n{"step": 2, "val_loss": 3}\n'
                    '{"step": 3, "loss": 4}\n{"step": 4, "lo')
    run_log.keep_steps_to(str(path), 2)
    assert path.read_text() == '{"step": 1, "loss": 1}\n{"step": 2, "loss": 2}\n{"step": 2, "val_loss": 3}\n'
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
