"""One process of the two-process training test (tests/test_multihost.py), and what that test shares with it.

Run as `python tests/multihost_worker.py SHARDS_DIR OUT.npz` with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID set, and XLA_FLAGS giving each process 4 fake CPU devices. The process starts the way `cxrjax train`
does (`sharding.initialize_distributed`; JAX's default CPU collectives, gloo, carry the cross-process all-reduces),
reads its own share of each global batch through the training input pipeline, runs `train.train_step` over the mesh
of all 8 devices, and process 0 writes the gathered result.
"""

from __future__ import annotations

import functools
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cxrjax import losses
from cxrjax.data import pipeline, shard_format
from cxrjax.models import create_model
from cxrjax.runtime import sharding
from cxrjax.training import train
from cxrjax.training.state import create_train_state

GLOBAL_BATCH = 16
# One step: its update is a gradient times the rate, so two programs' updates differ only by the rounding of their
# reduction orders. From the second step on, that rounding is amplified by ResNet-18's last BatchNorms at 28² (16
# examples of 1x1 maps): measured on a 2-core x86 machine, gloo's all-reduce against one process's differed by 0.3%
# of a leaf's update after one step, 7% after two and 290% after three, which no tolerance can tell from a fault.
NUM_STEPS = 1
FIELDS = ("image", "labels", *shard_format.METADATA_FIELDS)


def local_batches(builder_dir: str, process_index: int, process_count: int) -> list[dict[str, np.ndarray]]:
    """This process's share of the first NUM_STEPS global batches (random 28² crops and flips of the 32² shards),
    sliced and augmented by the training pipeline itself."""
    shards = shard_format.open_shards(builder_dir)
    dataset = pipeline.train_dataset(
        shards, np.arange(len(shards.metadata)), global_batch=GLOBAL_BATCH, crop=28, num_steps=NUM_STEPS, seed=0,
        process_index=process_index, process_count=process_count,
        read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    return [{name: batch[name] for name in FIELDS} for batch in dataset]


def initial_state(mesh):
    """ResNet-18 with plain SGD at a small rate (see `train_steps`), initialised from a fixed key."""
    return create_train_state(create_model("resnet18", 14), optax.sgd(1e-3), (32, 32, 3), jax.random.key(0), mesh)


def leaves(state) -> dict[str, np.ndarray]:
    """Parameters and batch statistics by path, gathered to the host."""
    tree = {"params": state.params, "batch_stats": state.batch_stats}
    return {jax.tree_util.keystr(path): sharding.to_host(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def train_steps(mesh, batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """NUM_STEPS steps of ResNet-18 with plain SGD from a fixed initialisation; every leaf gathered to the host.

    Plain SGD because its update is linear in the gradient, so a parameter difference is a gradient difference. A
    small rate because at 0.1 three steps of this net (BatchNorm over 16 examples of 1×1 maps in its last stage)
    amplify float rounding to differences of 1e-2, even between 1 and 8 devices of one process.
    """
    state = initial_state(mesh)
    step = jax.jit(functools.partial(train.train_step, objective=losses.build_objective({"logits": ("bce", 1.0)}),
                                     dtype=jnp.float32, dropout_key=jax.random.key(1)))
    step_losses = []
    for batch in batches:
        state, metrics = step(state, sharding.to_global(batch, mesh))
        step_losses.append(metrics["loss"])
    return leaves(state) | {"loss": np.stack([sharding.to_host(loss) for loss in step_losses])}


def main(builder_dir: str, out: str) -> None:
    sharding.initialize_distributed()
    assert (jax.process_count(), jax.local_device_count(), jax.device_count()) == (2, 4, 8), jax.devices()
    mesh = sharding.data_mesh()
    result = train_steps(mesh, local_batches(builder_dir, *sharding.process_block(mesh, GLOBAL_BATCH)))
    if jax.process_index() == 0:
        np.savez(out, **result)
    jax.distributed.shutdown()


if __name__ == "__main__":
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain reads absl flags; this script never parses them
    main(*sys.argv[1:])
