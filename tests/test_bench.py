"""`cxrjax bench` on a tiny model: it runs end to end and writes valid JSON (timings are not asserted)."""

import json
import math
import subprocess
import sys
import time

import psutil

from cxrjax import cli
from cxrjax.tools import bench, bench_profile


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_writes_json_and_a_table(prepared_shards, tmp_path, capsys):
    data_dir, _ = prepared_shards
    output = tmp_path / "bench.json"
    argv = ["bench", "--models", "resnet18", "--batch", "8", "--size", "32", "--dtype", "float32", "--steps", "1",
            "--warmup", "1", "--torch", "eager", "--data-dir", data_dir, "--shard-size", "32", "--input-batches", "2",
            "--prepare-images", "4", "--prepare-source-size", "64", "--profile", str(tmp_path / "trace"),
            "--output", str(output)]
    assert cli.main(argv) == 0

    result = json.loads(output.read_text())
    assert result["command"].startswith("cxrjax bench --models=resnet18")
    assert result["machine"]["backend"] == "cpu" and result["machine"]["cpu_count"] >= 1
    assert result["devices"] == 8  # the suite's fake CPU devices (conftest.py)
    [row] = result["models"]
    assert (row["model"], row["dtype"], row["batch"], row["size"]) == ("resnet18", "float32", 8, 32)
    for figures in (row["jax_train"], row["jax_eval"]):
        assert all(_positive_finite(figures[key])
                   for key in ("compile_s", "step_s", "images_per_s", "images_per_cpu_s", "flops_per_step"))
    assert math.isfinite(row["jax_train"]["final_loss"])
    torch_eager = row["torch"]["eager"]
    assert _positive_finite(torch_eager["images_per_s"]), torch_eager
    assert _positive_finite(row["ratio"]["eager"]) and _positive_finite(row["ratio_per_cpu_s"]["eager"])
    profile = row["jax_train"]["profile"]
    for breakdown in (profile["by_category"], profile["by_phase"]):
        assert math.isclose(sum(breakdown.values()), 1.0, rel_tol=1e-6)
    assert {"forward", "backward"} <= set(profile["by_phase"]) and profile["top_ops"]
    for part in ("input_pipeline", "prepare"):
        assert _positive_finite(result[part]["images_per_s"]) and _positive_finite(result[part]["images_per_cpu_s"])
    assert result["input_pipeline"]["records"] == 400 and result["prepare"]["images"] == 4

    table = capsys.readouterr().out
    assert "resnet18" in table and "input pipeline:" in table and "prepare:" in table
    assert "training time goes" in table


def test_weight_gradient_convolutions_are_told_apart():
    """A weight gradient's window spans the activations and its output is kernel-sized; forward is the reverse."""
    forward = "window={size=3x3 pad=1_1x1_1} dim_labels=b01f_01io->b01f"
    weight_gradient = "window={size=56x56 pad=1_1x1_1} dim_labels=b01f_01io->b01f"
    assert not bench_profile.is_weight_gradient("f32[16,56,56,64]{3,2,1,0}", forward)
    assert bench_profile.is_weight_gradient("f32[64,3,3,64]{3,2,1,0}", weight_gradient)


def test_hlo_instructions_get_their_category_and_phase():
    """A fusion takes its category from the ops inside it; the phase comes from the JAX op_name metadata."""
    convolution = ("  ROOT %convolution.1 = f32[64,3,3,64]{3,2,1,0} convolution(%param_0, %param_1), "
                   "window={size=56x56 pad=1_1x1_1}, dim_labels=b01f_01io->b01f")
    hlo = "\n".join([
        "HloModule m",
        "%fused_computation (param_0: f32[64,56,56,16], param_1: f32[56,56,16,64]) -> f32[64,3,3,64] {",
        "  %param_0 = f32[64,56,56,16]{3,2,1,0} parameter(0)",
        "  %param_1 = f32[56,56,16,64]{3,2,1,0} parameter(1)",
        convolution,
        "}",
        "ENTRY %main (a: f32[64,56,56,16], b: f32[56,56,16,64], c: f32[8]) -> f32[64,3,3,64] {",
        "  %a = f32[64,56,56,16]{3,2,1,0} parameter(0)",
        "  %b = f32[56,56,16,64]{3,2,1,0} parameter(1)",
        "  %c = f32[8]{0} parameter(2)",
        '  %add.1 = f32[8]{0} add(%c, %c), metadata={op_name="jit(train_step)/jvp(Classifier)/backbone/bn1/add"}',
        "  ROOT %ynn_fusion.1 = f32[64,3,3,64]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation",
        "}"])
    instructions = bench_profile.parse_hlo(hlo)
    assert instructions["ynn_fusion.1"]["category"] == bench_profile.WEIGHT_GRADIENT
    assert instructions["ynn_fusion.1"]["phase"] == "backward"
    assert (instructions["add.1"]["category"], instructions["add.1"]["phase"]) == ("elementwise and other", "forward")


def test_bench_reports_an_unknown_model_as_a_usage_error(capsys):
    assert cli.main(["bench", "--models", "resnet7"]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_input_cpu_seconds_count_grain_worker_processes(prepared_shards):
    """The input benchmark's CPU clock sees child processes, which `time.process_time` does not; a run with a grain
    worker process reports through it."""
    start, own = bench._cpu_with_children(), time.process_time()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 60
        while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bench._cpu_with_children() - start >= 0.5 > time.process_time() - own
    finally:
        child.kill()
        child.wait()
    figures = bench.time_input_pipeline(prepared_shards[0], 32, 28, 16, 20, num_threads=1, workers=1)
    assert figures["workers"] == 1 and _positive_finite(figures["images_per_cpu_s"])
