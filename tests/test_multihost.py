"""Multi-host: two processes on localhost (4 fake CPU devices each, `jax.distributed`, gloo collectives) train like
one process with 8 devices; `cxrjax train` on two processes checkpoints, resumes and stops on SIGTERM at one step;
how the input pipeline splits a global batch between processes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import multihost_worker
from conftest import assert_same_training
from cxrjax.data import pipeline, shard_format
from cxrjax.runtime import checkpoint, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PROCESSES = 2
# Each worker imports JAX and compiles ResNet-18's steps while sharing the machine's cores with the other.
TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_environment(port: int, process_id: int) -> dict[str, str]:
    """This test process's environment with 4 devices instead of conftest's 8, and process `process_id` of 2."""
    xla_flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    return os.environ | {"XLA_FLAGS": f"{xla_flags} --xla_force_host_platform_device_count=4",
                         "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                         "JAX_NUM_PROCESSES": str(NUM_PROCESSES), "JAX_PROCESS_ID": str(process_id)}


class Workers:
    """`command` started as each process of a 2-process job, each logging to its own file; all killed on leaving the
    `with` block, so neither a timeout nor a failure in this process leaves one behind."""

    def __init__(self, command: list[str], log_dir, name: str = "worker"):
        port = _free_port()
        self.logs = [log_dir / f"{name}{i}.log" for i in range(NUM_PROCESSES)]
        self.processes = []
        for i, log in enumerate(self.logs):
            with open(log, "w") as out:
                self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                                       env=_worker_environment(port, i)))

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def wait(self, timeout_s: float) -> None:
        """Returns when all exited with 0; fails with their logs at the first failure (the others would wait for the
        missing process until JAX's own timeouts) or at the deadline."""
        deadline = time.monotonic() + timeout_s
        while any(process.poll() is None for process in self.processes):
            if any(process.returncode for process in self.processes):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"workers still running after {timeout_s} s\n{self.output()}")
            time.sleep(0.2)
        if any(process.returncode for process in self.processes):
            pytest.fail(f"worker exit codes {[process.returncode for process in self.processes]}\n{self.output()}")

    def output(self) -> str:
        return "\n".join(f"--- worker {i} (last 6000 characters) ---\n{log.read_text()[-6000:]}"
                         for i, log in enumerate(self.logs))


def test_two_processes_train_like_one_process_with_eight_devices(prepared_shards, tmp_path):
    """Each worker reads its block of every global batch (random crops and flips included) through the input
    pipeline's per-process slicing; the reference reads whole global batches as a one-process run does."""
    assert jax.device_count() == 8 and jax.process_count() == 1, "conftest sets 8 fake CPU devices"
    builder_dir = prepared_shards[1]
    out = tmp_path / "two_processes.npz"
    with Workers([sys.executable, multihost_worker.__file__, builder_dir, str(out)], tmp_path) as workers:
        # The one-process reference is computed while the workers start up and compile.
        one = multihost_worker.train_steps(sharding.data_mesh(), multihost_worker.local_batches(builder_dir, 0, 1))
        workers.wait(TIMEOUT_S)
    two = dict(np.load(out))
    one_losses, two_losses = one.pop("loss"), two.pop("loss")
    # Another reduction order (gloo's cross-process all-reduce sums the devices' gradients and batch statistics in
    # its own order): equal up to rounding relative to each leaf's update. Measured: up to 2.8e-3 of a leaf's update
    # (layer4's BatchNorm scales), above one process's 2.1e-4 between 1 and 8 devices; allowed 1e-2, still 100x below
    # a fault (one device's share of the batch instead of the global one changes an update by its own size).
    initial = multihost_worker.leaves(multihost_worker.initial_state(sharding.data_mesh()))
    assert_same_training(two, one, initial, rtol=1e-2)
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)  # about 12: forward rounding, ~1e-6 relative
    assert np.all(one_losses > 0)
    moved = [name for name in one if name.startswith("['params']") and np.abs(one[name] - initial[name]).max() > 0]
    assert len(moved) == sum(name.startswith("['params']") for name in one)  # the step updated every parameter


def _train_two_processes(data_dir: str, workdir, num_epochs: int, log_dir) -> list[str]:
    """`cxrjax train` as a 2-process job (the way Slurm or a pod slice starts it); returns both processes' output."""
    command = [sys.executable, "-m", "cxrjax.cli", "train", "--config=cxrjax/configs/default.py",
               f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--config.data.size=32",
               "--config.data.crop=28", "--config.data.num_threads=2", "--config.batch_size=16",
               "--config.eval_batch_size=32", f"--config.num_epochs={num_epochs}", "--config.steps_per_epoch=2",
               "--config.log_every_steps=1"]
    with Workers(command, log_dir, name=f"train{num_epochs}_") as workers:
        workers.wait(TIMEOUT_S)
    return [log.read_text() for log in workers.logs]


def test_two_process_cxrjax_train_checkpoints_and_resumes(prepared_shards, tmp_path):
    """One Orbax checkpoint written by both processes, with each process's input position; a second job resumes it."""
    workdir = tmp_path / "run"
    for num_epochs in (1, 2):
        outputs = _train_two_processes(prepared_shards[0], workdir, num_epochs, tmp_path)
        assert all(f"trained to step {2 * num_epochs};" in output for output in outputs), outputs[0][-3000:]
        step_dir = workdir / "checkpoints" / str(2 * num_epochs)
        assert sorted(path.name for path in (step_dir / "data_iter").glob("process_*.json")) == [
            "process_0-of-2.json", "process_1-of-2.json"]
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    # Process 0 alone logs; the second job went on from step 2 rather than starting again.
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["epoch"] for r in records if "epoch" in r] == [1, 2]


def test_sigterm_to_one_process_stops_both_at_one_step(prepared_shards, tmp_path):
    """A preemption notice reaching only process 1: both processes save one checkpoint at the same step and exit 0."""
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "cxrjax.cli", "train", "--config=cxrjax/configs/default.py",
               f"--workdir={workdir}", f"--config.data.data_dir={prepared_shards[0]}", "--config.data.size=32",
               "--config.data.crop=28", "--config.data.num_threads=1", "--config.batch_size=16",
               "--config.eval_batch_size=32", "--config.num_epochs=40", "--config.log_every_steps=1"]
    with Workers(command, tmp_path, name="sigterm") as workers:
        log, deadline = workdir / "metrics.jsonl", time.monotonic() + TIMEOUT_S
        while not (log.exists() and log.read_text().count("\n") >= 3):
            assert all(p.poll() is None for p in workers.processes) and time.monotonic() < deadline, workers.output()
            time.sleep(0.2)
        workers.processes[1].send_signal(signal.SIGTERM)
        workers.wait(TIMEOUT_S)
        outputs = [log.read_text() for log in workers.logs]
    stopped = [re.findall(r"stopped by signal at step (\d+);", output) for output in outputs]
    assert stopped[0] and stopped[0] == stopped[1], workers.output()
    step = int(stopped[0][0])
    assert step >= 3 and checkpoint.manager(str(workdir)).all_steps() == [step]
    assert sorted(path.name for path in (workdir / "checkpoints" / str(step) / "data_iter").glob("*.json")) == [
        "process_0-of-2.json", "process_1-of-2.json"]


def _first_batch(builder_dir: str, process_index: int, process_count: int) -> dict[str, np.ndarray]:
    shards = shard_format.open_shards(builder_dir)
    dataset = pipeline.train_dataset(shards, np.arange(len(shards.metadata)), global_batch=16, crop=28,
                                      num_steps=1, seed=0, process_index=process_index,
                                      process_count=process_count)
    return next(iter(dataset))


def test_process_shares_of_a_global_batch_assemble_into_the_one_process_batch(prepared_shards):
    builder_dir = prepared_shards[1]
    one = _first_batch(builder_dir, 0, 1)
    shares = [_first_batch(builder_dir, p, NUM_PROCESSES) for p in range(NUM_PROCESSES)]
    for name in ("record", "image"):
        np.testing.assert_array_equal(np.concatenate([share[name] for share in shares]), one[name], err_msg=name)


@pytest.mark.parametrize("environment, expected", [
    ({}, False),
    ({"SLURM_NTASKS": "1"}, False),
    ({"SLURM_NTASKS": "16"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"}, True),
    ({"CXRJAX_DISTRIBUTED": "1"}, True),  # e.g. a TPU VM slice, whose topology JAX reads from the VM metadata
    ({"TPU_WORKER_HOSTNAMES": "t1v-0"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t1v-0,t1v-1"}, True),
])
def test_the_launch_environment_decides_whether_to_start_jax_distributed(monkeypatch, environment, expected):
    for name in ("SLURM_NTASKS", "JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "CXRJAX_DISTRIBUTED",
                 "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert sharding.wants_distributed() is expected
