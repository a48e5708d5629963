"""Where a compiled step's time goes: a JAX profiler trace of a few steps, each traced op looked up in the compiled
HLO to say what it computes (convolution, dot, reduction, layout change, elementwise) and which phase of a training
step it belongs to (forward, backward, optimizer update).

Why: images/s says how fast a model trains, not what limits it. The trace names each executed op after its HLO
instruction (on CPU, one event per thunk), and the HLO says what the instruction computes (the ops inside a fusion)
and, through its metadata, which JAX operation it came from: `jvp(...)` is the forward pass of `value_and_grad`,
`transpose(jvp(...))` its backward pass, the rest is the loss bookkeeping and the optimizer. Written against CPU
traces; an accelerator trace that names its kernels otherwise matches fewer events (compare `op_s_per_step` with
`wall_s_per_step`) or none (RuntimeError).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import math
import os
import re
import time
from typing import Callable

import jax

# What an instruction computes, by the first of these groups that one of its ops (its own, or inside its fusion) is in.
CATEGORIES = (("convolution", {"convolution"}), ("dot", {"dot"}),
              ("reduction", {"reduce", "reduce-window", "select-and-scatter"}),
              ("layout (copy, transpose, reverse)", {"copy", "transpose", "reverse"}))
OTHER = "elementwise and other"
WEIGHT_GRADIENT = "convolution (weight gradient)"  # told apart from the others by `is_weight_gradient`

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?)\s*\b([a-z][\w\-]*)\(")
_CALLS = re.compile(r"\bcalls=%([\w.\-]+)")
_OP_NAME = re.compile(r'metadata=\{op_name="([^"]*)"')
_CONVOLUTION = re.compile(r"(window=\{[^}]*\}).*?(dim_labels=[\w>\-]+)")


def parse_hlo(hlo_text: str) -> dict[str, dict]:
    """Instruction name → {"category", "phase", "op_name", "shape", "convolution"} for every instruction of a compiled
    module's text. A fusion is described by the ops inside it: its category, the JAX op_name of the inner op that gave
    it that category when the fusion has none of its own, and the window and dimension labels of an inner
    convolution. Weight-gradient convolutions, which XLA may create without metadata, count as backward."""
    inner = collections.defaultdict(list)  # computation → [(op, op_name, convolution)]
    parsed, computation = {}, None
    for line in hlo_text.splitlines():
        if match := _COMPUTATION.match(line):
            computation = match.group(1)
        elif match := _INSTRUCTION.match(line):
            name, shape, op = match.groups()
            calls, op_name, convolution = _CALLS.search(line), _OP_NAME.search(line), _CONVOLUTION.search(line)
            op_name = op_name.group(1) if op_name else ""
            convolution = " ".join(convolution.groups()) if op == "convolution" and convolution else ""
            inner[computation].append((op, op_name, convolution))
            parsed[name] = (op, calls.group(1) if calls else None, op_name, shape, convolution)
    instructions = {}
    for name, (op, calls, op_name, shape, convolution) in parsed.items():
        contents = [(op, op_name, convolution), *inner.get(calls, [])]
        category, members = next(((category, members) for category, members in CATEGORIES
                                  if members & {content[0] for content in contents}), (OTHER, set()))
        op_name = op_name or next((content[1] for content in contents if content[0] in members and content[1]), "")
        convolution = next((content[2] for content in contents if content[2]), "")
        if convolution and is_weight_gradient(shape, convolution):
            category = WEIGHT_GRADIENT
        instructions[name] = {"category": category, "phase": "backward" if category == WEIGHT_GRADIENT else
                              phase(op_name), "op_name": op_name, "shape": shape, "convolution": convolution}
    return instructions


def is_weight_gradient(shape: str, convolution: str) -> bool:
    """Whether a convolution computes a weight gradient: its window spans the layer's activations and its output is
    kernel-sized, the reverse of a forward or input-gradient convolution (window = kernel, output = activations)."""
    window = re.search(r"size=([\dx]+)", convolution)
    dims = re.search(r"\[([\d,]*)\]", shape)
    if not window or not dims or not dims.group(1):
        return False
    output_labels = convolution.rsplit("->", 1)[-1]
    sizes = [int(d) for d in dims.group(1).split(",")]
    spatial = [size for size, label in zip(sizes, output_labels) if label.isdigit()]
    return math.prod(int(d) for d in window.group(1).split("x")) > math.prod(spatial)


def phase(op_name: str) -> str:
    """forward, backward, update and other, or unattributed (an instruction XLA made without JAX metadata, e.g. a
    layout change), from an instruction's JAX op_name (see the module docstring)."""
    if not op_name:
        return "unattributed"
    if "transpose(jvp(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "update and other"


def _trace_events(log_dir: str) -> list[dict]:
    paths = sorted(glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "perfetto_trace.json.gz")))
    if not paths:
        raise FileNotFoundError(f"the profiler wrote no perfetto trace under {log_dir}")
    with gzip.open(paths[-1]) as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def _shares(seconds: dict[str, float], total: float) -> dict[str, float]:
    return {key: value / total for key, value in sorted(seconds.items(), key=lambda item: -item[1])}


def profile_step(step: Callable, carry, hlo_text: str, steps: int, log_dir: str, top: int = 10):
    """Traces `carry = step(carry)` `steps` times into `log_dir`; returns (the breakdown, carry).

    The breakdown: wall and summed op seconds per step (ops may overlap on several threads, so the sum can exceed
    the wall time), the share of op time by category and by phase, and the `top` instructions by time."""
    instructions = parse_hlo(hlo_text)
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(steps):
            carry = step(carry)
        jax.block_until_ready(carry)
        wall = time.perf_counter() - start
    by_instruction = collections.Counter()
    for event in _trace_events(log_dir):
        if event.get("ph") != "X":
            continue
        name = event.get("args", {}).get("hlo_op", event["name"])
        if name in instructions:
            by_instruction[name] += event.get("dur", 0) / 1e6
    total = sum(by_instruction.values())
    if not total:
        raise RuntimeError("no traced event matched an HLO instruction of the step")
    by_category, by_phase = collections.Counter(), collections.Counter()
    for name, seconds in by_instruction.items():
        by_category[instructions[name]["category"]] += seconds
        by_phase[instructions[name]["phase"]] += seconds
    top_ops = [{"instruction": name, "share": seconds / total, **instructions[name]}
               for name, seconds in by_instruction.most_common(top)]
    return {"traced_steps": steps, "wall_s_per_step": wall / steps, "op_s_per_step": total / steps,
            "by_category": _shares(by_category, total),
            "by_phase": _shares(by_phase, total), "top_ops": top_ops, "trace_dir": log_dir}, carry
