"""`cxrjax bench`: how fast training, evaluation, the input pipeline and preparation run, beside PyTorch.

What is measured, and why this way:
- training images/s of cxrjax's own `train.train_step` (Adam, the config's BCE objective, donated state, batch
  sharded over the data mesh), jitted exactly as `train.train_and_evaluate` jits it. The batch is random and put on
  the device once, so the figure is the device's, not the input pipeline's. Compilation is timed on its own (ahead
  of time: lower + compile) and XLA's cost analysis gives the FLOPs of a step, hence the achieved FLOP/s;
- evaluation images/s of `forward.make_predict_step`, the forward pass `cxrjax eval` runs;
- the input pipeline (`pipeline.train_dataset`: shards → random crop + flip on uint8 → batches) and preparation
  (`data_pipelines.prepare`: PNG → resize → shards) in images per CPU-second of the process, which is the per-core
  rate whatever the number of threads;
- the PyTorch reference (`cxrjax.bench_torch`) for the same architectures, each run in a child process.

The PyTorch runs go first, before this process touches the accelerator: JAX reserves most of the accelerator's
memory when it starts, which would starve a PyTorch child started later.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable

import grain
import jax
import numpy as np
import optax
import psutil

from cxrjax import losses
from cxrjax.configs import default as default_config
from cxrjax.data import pipeline, shard_format
from cxrjax.data.findings import NUM_FINDINGS
from cxrjax.data.progress import progress
from cxrjax.data.shard_format import builder_dir
from cxrjax.evaluation.forward import make_predict_step
from cxrjax.models import BACKBONES, compute_dtype, create_model
from cxrjax.runtime import sharding
from cxrjax.tools import bench_profile
from cxrjax.training import train
from cxrjax.training.run import init_key
from cxrjax.training.state import create_optimizer, create_train_state
from data_pipelines import synthetic
from data_pipelines.prepare import prepare

DEFAULT_MODELS = ("resnet50", "densenet121", "swin_base")  # the models of the GPU targets (issue 7)
TORCH_MODES = ("eager", "compile")  # cxrjax.bench_torch.MODES, named here so this process never imports torch
PARTS = ("train", "eval", "input", "prepare")  # what `skip` may leave out
VERSIONED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "grain", "numpy", "torch", "torchvision", "timm")
# Environment variables that change what is measured (XLA options, visible devices, threads), recorded with it.
RELEVANT_ENVIRONMENT = ("XLA_FLAGS", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                        "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What `run_benchmarks` measures. The defaults are the GPU targets' settings (224², bf16)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    batch: int = 128
    size: int = 224
    dtypes: tuple[str, ...] = ("bfloat16",)
    steps: int = 20
    warmup: int = 3
    torch_modes: tuple[str, ...] = TORCH_MODES
    skip: frozenset[str] = frozenset()
    data_dir: str | None = None  # existing shards (`cxrjax prepare --data-dir`) for the input benchmark
    shard_size: int = 256  # shard side the input benchmark reads (cropped to `size`)
    input_images: int = 512  # synthetic images prepared for the input benchmark when no data_dir is given
    input_batches: int = 40
    input_threads: int = 4  # grain reader threads (the configs' data.num_threads)
    input_workers: int = 0  # grain worker processes (the configs' data.num_workers)
    profile_dir: str | None = None  # trace the JAX training steps here and break their time down
    prepare_images: int = 32
    prepare_source_size: int = 1024  # the NIH release's PNGs are 1024²

    def __post_init__(self):
        unknown = set(self.skip) - set(PARTS) or set(self.torch_modes) - set(TORCH_MODES)
        if unknown:
            raise ValueError(f"unknown benchmark part or PyTorch mode {sorted(unknown)}; parts: {PARTS}, modes: "
                             f"{TORCH_MODES}")
        for dtype in self.dtypes:
            compute_dtype(dtype)
        unknown_models = set(self.models) - set(BACKBONES)
        if unknown_models:
            raise ValueError(f"unknown model(s) {sorted(unknown_models)}; known: {', '.join(sorted(BACKBONES))}")


# --- JAX: training and evaluation --------------------------------------------------------------------------------


def synthetic_batch(batch: int, size: int, mesh, seed: int = 0) -> dict[str, jax.Array]:
    """A random global batch shaped like the input pipeline's (uint8 pixels and labels, age / sex / view), sharded
    along "data" as `sharding.to_global` places a real one."""
    rng = np.random.default_rng(seed)
    local = {"image": rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8),
             "labels": rng.integers(0, 2, (batch, NUM_FINDINGS), dtype=np.uint8),
             "age": rng.uniform(1, 95, batch).astype(np.float32),
             "sex": rng.integers(0, 2, batch).astype(np.int32),
             "view": rng.integers(0, 2, batch).astype(np.int32)}
    return sharding.to_global(local, mesh)


def init_state(name: str, dtype_name: str, size: int, mesh, seed: int = 0):
    """The model and its replicated train state as `run.build_run` makes them (the default config's Adam)."""
    dtype = compute_dtype(dtype_name)
    model = create_model(name, NUM_FINDINGS, dtype)
    optimizer = default_config.get_config().optimizer
    tx = create_optimizer(optimizer, optax.constant_schedule(optimizer.learning_rate))
    return model, create_train_state(model, tx, (size, size, 3), init_key(seed), mesh)


def _timed_loop(step: Callable, carry, steps: int, warmup: int):
    """Runs `carry = step(carry)` `warmup` times, then `steps` timed times; returns (wall s, CPU s, carry).

    Blocks on the result before and after the timed steps (dispatch is asynchronous). The CPU seconds are this
    process's, all threads: on a CPU shared with other work they still count the work done, when wall time does not."""
    for _ in range(warmup):
        carry = step(carry)
    jax.block_until_ready(carry)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        carry = step(carry)
    jax.block_until_ready(carry)
    return time.perf_counter() - wall, time.process_time() - cpu, carry


def _compile(jitted, *args) -> tuple[jax.stages.Compiled, float]:
    """Ahead-of-time compilation (trace, lower, compile) of `jitted` for `args`, and its seconds."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _step_figures(compiled: jax.stages.Compiled, compile_s: float, elapsed: float, cpu: float, steps: int,
                  batch: int) -> dict:
    """images/s, and XLA's cost analysis of the step: FLOPs and bytes accessed (per device), achieved FLOP/s.

    `load_average` (1 minute, just after the timed steps; the benchmark's own threads count too) tells whether other
    work shared the CPU: well above the number of cores, it did, and images/s is low by roughly that share, when
    `images_per_cpu_s` (this process's CPU time) is not. On an accelerator the latter is only the host's side."""
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    step_s = elapsed / steps
    figures = {"compile_s": compile_s, "step_s": step_s, "images_per_s": batch / step_s,
               "images_per_cpu_s": batch * steps / cpu, "load_average": os.getloadavg()[0]}
    if cost.get("flops"):
        figures |= {"flops_per_step": cost["flops"], "bytes_accessed_per_step": cost.get("bytes accessed"),
                    "achieved_tflops": cost["flops"] / step_s / 1e12}
    return figures


def time_train_step(model, state, batch: dict, mesh, dtype_name: str, steps: int, warmup: int,
                    profile_dir: str | None = None):
    """Training figures of `train.train_step` on one fixed batch; returns (figures, the state after training).

    With `profile_dir`, a few more steps are traced there and figures["profile"] says where their time went
    (`bench_profile.profile_step`)."""
    objective = losses.build_objective(default_config.get_config().losses.to_dict())
    step_fn = functools.partial(train.train_step, objective=objective, dtype=compute_dtype(dtype_name),
                                dropout_key=jax.random.key(1))
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    jitted = jax.jit(step_fn, in_shardings=(state_sharding, sharding.batch_sharded(mesh)),
                     out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
    compiled, compile_s = _compile(jitted, state, batch)
    elapsed, cpu, (state, metrics) = _timed_loop(lambda carry: compiled(carry[0], batch), (state, None), steps,
                                                 warmup)
    figures = _step_figures(compiled, compile_s, elapsed, cpu, steps, batch["image"].shape[0])
    figures["final_loss"] = float(metrics["loss"])
    if profile_dir:
        figures["profile"], (state, _) = bench_profile.profile_step(
            lambda carry: compiled(carry[0], batch), (state, None), compiled.as_text(), min(steps, 3), profile_dir)
    return figures, state


def time_eval_forward(model, variables: dict, images: jax.Array, dtype_name: str, steps: int, warmup: int) -> dict:
    """Evaluation figures of `forward.make_predict_step` (forward + sigmoid) on one fixed batch."""
    predict = make_predict_step(model, compute_dtype(dtype_name))
    compiled, compile_s = _compile(predict, variables, images)
    elapsed, cpu, _ = _timed_loop(lambda _: compiled(variables, images), None, steps, warmup)
    return _step_figures(compiled, compile_s, elapsed, cpu, steps, images.shape[0])


# --- PyTorch reference ---------------------------------------------------------------------------------------------


def torch_reference(name: str, batch: int, size: int, dtype_name: str, mode: str, steps: int, warmup: int) -> dict:
    """`cxrjax.bench_torch`'s training figures in a child process, or why there are none ("unavailable", "error")."""
    if importlib.util.find_spec("torch") is None:
        return {"mode": mode, "unavailable": "PyTorch is not installed (pip install 'cxrjax[test]')"}
    command = [sys.executable, "-m", "cxrjax.tools.bench_torch", "--model", name, "--batch", str(batch), "--size",
               str(size), "--dtype", dtype_name, "--mode", mode, "--steps", str(steps), "--warmup", str(warmup)]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:
        lines = [line for line in child.stderr.strip().splitlines() if line.strip()]
        return {"mode": mode, "error": lines[-1] if lines else f"exit status {child.returncode}"}
    return json.loads(child.stdout.strip().splitlines()[-1])


# --- host side: input pipeline and preparation --------------------------------------------------------------------


def _cpu_timed(fn: Callable[[], object], clock: Callable[[], float] = time.process_time) -> tuple[float, float]:
    """(wall seconds, CPU seconds by `clock`: by default this process's, all its threads) that `fn()` takes."""
    wall, cpu = time.perf_counter(), clock()
    fn()
    return time.perf_counter() - wall, clock() - cpu


def _cpu_with_children() -> float:
    """CPU seconds of this process (all its threads) and of its live child processes (grain's workers), which
    `time.process_time` does not see. The children's come from psutil in clock ticks (10 ms)."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def synthetic_shards(directory: str, num_images: int, size: int) -> str:
    """Prepares a synthetic release of `num_images` at `size`² into shards under `directory`; returns the data dir."""
    release = os.path.join(directory, "release")
    synthetic.write_release(release, num_images=num_images, size=size, seed=0)
    data_dir = os.path.join(directory, "data")
    prepare(release, data_dir, size=size, num_workers=1)
    return data_dir


def time_input_pipeline(data_dir: str, shard_size: int, crop: int, batch: int, num_batches: int,
                        num_threads: int, workers: int = 0) -> dict:
    """Images/s of `pipeline.train_dataset` (read → random crop + flip on uint8 → batch), and per CPU-second.

    Timed in the steady state: the first batches (thread and worker start-up, first reads) are not timed, and the
    dataset runs on past the timed batches, so the prefetch buffers are as full at the end as at the start and the CPU
    seconds are those of the timed batches. They include grain's worker processes (`workers` > 0), so images per
    CPU-second is the per-core rate either way."""
    shards = shard_format.open_shards(builder_dir(data_dir, shard_size))
    untimed = max(1, 2 * workers)
    dataset = pipeline.train_dataset(
        shards, np.arange(len(shards.metadata)), global_batch=batch, crop=crop,
        num_steps=untimed + num_batches + 8 * max(1, workers), seed=0,
        read_options=grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4), workers=workers)
    batches = iter(dataset)
    for _ in range(untimed):
        next(batches)
    wall, cpu = _cpu_timed(lambda: [next(batches) for _ in range(num_batches)], _cpu_with_children)
    if workers:
        batches.close()  # grain's advice for an mp_prefetch iterator: stop the workers now, not at garbage collection
    images = batch * num_batches
    return {"shard_size": shard_size, "crop": crop, "batch": batch, "batches": num_batches, "threads": num_threads,
            "workers": workers, "records": len(shards.metadata), "images_per_s": images / wall, "cpu_s": cpu,
            "images_per_cpu_s": images / cpu}


def time_prepare(directory: str, num_images: int, source_size: int, size: int) -> dict:
    """Images/s of `prepare` (PNG decode → area resize → ArrayRecord shards) on one worker process, and per
    CPU-second, from a synthetic release of `source_size`² PNGs. TFDS's fixed cost per run is included, so a few
    dozen images understate the rate over a whole release."""
    release = os.path.join(directory, "prepare_release")
    synthetic.write_release(release, num_images=num_images, size=source_size, seed=0)
    wall, cpu = _cpu_timed(lambda: prepare(release, os.path.join(directory, "prepare_data"), size=size,
                                           num_workers=1))
    return {"images": num_images, "source_size": source_size, "size": size, "workers": 1,
            "images_per_s": num_images / wall, "cpu_s": cpu, "images_per_cpu_s": num_images / cpu}


# --- the whole run ------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine the figures belong to: accelerators as JAX sees them, CPU, package versions, environment."""
    devices = jax.devices()
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"backend": jax.default_backend(), "devices": [device.device_kind for device in devices],
            "processes": jax.process_count(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "environment": {name: os.environ[name] for name in RELEVANT_ENVIRONMENT if name in os.environ}}


def _ratio(jax_figures: dict, torch_figures: dict, key: str = "images_per_s") -> float | None:
    if key in jax_figures and key in torch_figures:
        return jax_figures[key] / torch_figures[key]
    return None


def _jax_figures(name: str, dtype_name: str, options: BenchOptions, mesh) -> dict:
    """{"jax_train": ..., "jax_eval": ...} of one model and dtype (what `options.skip` leaves in)."""
    model, state = init_state(name, dtype_name, options.size, mesh)
    batch = synthetic_batch(options.batch, options.size, mesh)
    figures = {}
    if "train" not in options.skip:
        profile_dir = options.profile_dir and os.path.join(options.profile_dir, f"{name}_{dtype_name}")
        figures["jax_train"], state = time_train_step(model, state, batch, mesh, dtype_name, options.steps,
                                                      options.warmup, profile_dir)
    if "eval" not in options.skip:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        figures["jax_eval"] = time_eval_forward(model, variables, batch["image"], dtype_name, options.steps,
                                                options.warmup)
    return figures


def run_benchmarks(options: BenchOptions, command: str = "") -> dict:
    """Every measurement `options` asks for, as one JSON-ready dict (`format_table` prints it); a bar on stderr
    names the measurement running and counts those done."""
    measures_models = not {"train", "eval"} <= options.skip
    rows = [{"model": name, "dtype": dtype, "batch": options.batch, "size": options.size, "torch": {}}
            for name in options.models for dtype in options.dtypes if measures_models]
    torch_modes = () if "train" in options.skip else options.torch_modes
    with progress(total=len(rows) * (1 + len(torch_modes)) + ("input" not in options.skip) +
                  ("prepare" not in options.skip), desc="bench", unit="measurement") as bar:
        for row in rows:
            for mode in torch_modes:
                bar.set_description_str(f"bench: PyTorch {mode} {row['model']} {row['dtype']}")
                row["torch"][mode] = torch_reference(row["model"], options.batch, options.size, row["dtype"], mode,
                                                     options.steps, options.warmup)
                bar.update()
        mesh = sharding.data_mesh()
        result = {"date": datetime.date.today().isoformat(), "command": command, "machine": machine_info(),
                  "options": dataclasses.asdict(options) | {"skip": sorted(options.skip)}, "devices": mesh.size}
        for row in rows:
            bar.set_description_str(f"bench: JAX {row['model']} {row['dtype']}")
            row |= _jax_figures(row["model"], row["dtype"], options, mesh)
            if "jax_train" in row:
                row["ratio"] = {mode: _ratio(row["jax_train"], figures) for mode, figures in row["torch"].items()}
                row["ratio_per_cpu_s"] = {mode: _ratio(row["jax_train"], figures, "images_per_cpu_s")
                                          for mode, figures in row["torch"].items()}
            bar.update()
        result["models"] = rows
        with tempfile.TemporaryDirectory(prefix="cxrjax_bench_") as scratch:
            if "input" not in options.skip:
                bar.set_description_str("bench: input pipeline")
                data_dir = options.data_dir or synthetic_shards(scratch, options.input_images, options.shard_size)
                result["input_pipeline"] = time_input_pipeline(data_dir, options.shard_size, options.size,
                                                               options.batch, options.input_batches,
                                                               options.input_threads, options.input_workers)
                bar.update()
            if "prepare" not in options.skip:
                bar.set_description_str("bench: prepare")
                result["prepare"] = time_prepare(scratch, options.prepare_images, options.prepare_source_size,
                                                 options.shard_size)
                bar.update()
    return result


def _number(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _torch_cell(figures: dict | None) -> str:
    if not figures:
        return "-"
    if "images_per_s" in figures:
        return _number(figures["images_per_s"], 1)
    return "unavailable" if "unavailable" in figures else "failed"


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table: one line per model and dtype, then the host-side rates."""
    header = (f"{'model':<12} {'dtype':<8} {'batch':>5} {'size':>4}  {'train img/s':>11} {'compile s':>9}  "
              f"{'torch eager':>11} {'ratio':>5}  {'torch.compile':>13} {'ratio':>5}  {'eval img/s':>10}")
    lines = [header, "-" * len(header)] if result.get("models") else []
    for row in result.get("models", []):
        train_figures, ratio = row.get("jax_train", {}), row.get("ratio", {})
        lines.append(f"{row['model']:<12} {row['dtype']:<8} {row['batch']:>5} {row['size']:>4}  "
                     f"{_number(train_figures.get('images_per_s'), 1):>11} "
                     f"{_number(train_figures.get('compile_s'), 1):>9}  "
                     f"{_torch_cell(row['torch'].get('eager')):>11} {_number(ratio.get('eager'), 2):>5}  "
                     f"{_torch_cell(row['torch'].get('compile')):>13} {_number(ratio.get('compile'), 2):>5}  "
                     f"{_number(row.get('jax_eval', {}).get('images_per_s'), 1):>10}")
    failures = [f"  torch {mode} {row['model']} {row['dtype']}: {figures.get('error') or figures.get('unavailable')}"
                for row in result.get("models", []) for mode, figures in row["torch"].items()
                if "images_per_s" not in figures]
    lines += failures
    for row in result.get("models", []):
        profile = row.get("jax_train", {}).get("profile")
        if profile:
            shares = [", ".join(f"{key} {share:.0%}" for key, share in profile[part].items())
                      for part in ("by_phase", "by_category")]
            lines.append(f"  where {row['model']} {row['dtype']} training time goes: {shares[0]}; {shares[1]}")
    for key, label in (("input_pipeline", "input pipeline"), ("prepare", "prepare")):
        if key in result:
            figures = result[key]
            lines.append(f"{label}: {_number(figures['images_per_s'])} images/s, "
                         f"{_number(figures['images_per_cpu_s'])} images per CPU-second")
    devices = result["machine"]["devices"]
    lines.append(f"machine: {len(devices)} x {devices[0]}, {result['machine']['cpu_count']} CPU cores "
                 f"({result['machine']['cpu']}); {result['date']}")
    return "\n".join(lines)
