"""Device memory of one DenseNet training step with and without rematerialisation, from XLA's own accounting.

The issue's case is DenseNet-121 at 512² with batch 64: without remat its stored activations grow quadratically with
each dense block's depth (every layer's concatenated input is kept for the backward pass). XLA's
`compiled.memory_analysis()` gives the step's buffers without running it, so this measures on any machine, even a
CPU without the memory, for the platform the script runs on:

    .venv/bin/python benchmarks/remat_memory.py --model densenet121 --size 512 --batch 64
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp
import optax

from cxrjax import losses
from cxrjax.models import create_model
from cxrjax.runtime import sharding
from cxrjax.training import train
from cxrjax.training.state import create_train_state


def step_memory(model_name: str, size: int, batch: int, remat: bool, dtype) -> dict:
    """XLA's memory analysis of the compiled training step (bytes), on one device."""
    mesh = sharding.data_mesh(jax.devices()[:1])
    model = create_model(model_name, 14, dtype, remat=remat)
    state = jax.eval_shape(lambda: create_train_state(model, optax.adam(1e-4), (size, size, 3), jax.random.key(0),
                                                      mesh))
    batch_shapes = {"image": jax.ShapeDtypeStruct((batch, size, size, 1), jnp.uint8),
                    "labels": jax.ShapeDtypeStruct((batch, 14), jnp.uint8),
                    "age": jax.ShapeDtypeStruct((batch,), jnp.float32),
                    "sex": jax.ShapeDtypeStruct((batch,), jnp.int32),
                    "view": jax.ShapeDtypeStruct((batch,), jnp.int32)}
    step = jax.jit(functools.partial(train.train_step, objective=losses.build_objective({"logits": ("bce", 1.0)}),
                                     dtype=dtype, dropout_key=jax.random.key(1)), donate_argnums=0)
    analysis = step.lower(state, batch_shapes).compile().memory_analysis()
    return {"remat": remat, "temp_bytes": analysis.temp_size_in_bytes,
            "argument_bytes": analysis.argument_size_in_bytes, "output_bytes": analysis.output_size_in_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    rows = [step_memory(args.model, args.size, args.batch, remat, dtype) for remat in (False, True)]
    print(json.dumps({"model": args.model, "size": args.size, "batch": args.batch, "dtype": args.dtype,
                      "platform": jax.devices()[0].platform, "steps": rows}, indent=1))


if __name__ == "__main__":
    main()
