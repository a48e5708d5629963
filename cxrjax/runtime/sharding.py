"""Data parallelism by sharding: one 1-D mesh ("data",) over every device of every host.

Batches are sharded along "data", parameters replicated; under plain `jit` with such global arrays XLA inserts the
gradient all-reduce and BatchNorm's cross-device statistics itself (no pmap, no axis_name). Multi-host runs start with
`jax.distributed.initialize()`, JAX's own engine, when the environment asks for it.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Environment variables that mean "this is one process of a multi-process job".
_DISTRIBUTED_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def wants_distributed() -> bool:
    """True under an explicit coordinator, `CXRJAX_DISTRIBUTED=1`, a multi-task Slurm step, or a multi-host TPU slice
    on GKE. TPU VMs created with `gcloud` keep their topology in the VM metadata, not the environment, so a launch
    there sets `CXRJAX_DISTRIBUTED=1` and JAX reads the rest from the metadata."""
    if os.environ.get("CXRJAX_DISTRIBUTED") == "1" or any(os.environ.get(name) for name in _DISTRIBUTED_HINTS):
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def _int_from_environment(name: str) -> int | None:
    value = os.environ.get(name)
    return None if value is None else int(value)


def initialize_distributed() -> None:
    """Calls `jax.distributed.initialize()` once, when the environment asks.

    JAX fills in what it is not given from Slurm, Open MPI, Cloud TPU or Kubernetes. Elsewhere (hosts started by hand)
    each process needs `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`:
    JAX reads only the first itself, so the other two are passed on here.
    """
    if wants_distributed() and not jax.distributed.is_initialized():
        jax.distributed.initialize(num_processes=_int_from_environment("JAX_NUM_PROCESSES"),
                                   process_id=_int_from_environment("JAX_PROCESS_ID"))


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """The ("data",) mesh over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh):
    """Host arrays (the same on every process, e.g. restored variables) as arrays replicated over `mesh`; built from
    each process's own copy, so it works where the mesh spans several processes."""
    sharding = replicated(mesh)

    def place(value):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(place, tree)


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def process_block(mesh, global_batch: int) -> tuple[int, int]:
    """(block, number of blocks): which contiguous block of `global_batch` rows this process's devices hold under
    `batch_sharded(mesh)`, the process-local batch `make_array_from_process_local_data` expects from it
    (`pipeline.train_dataset`'s `process_index` and `process_count`). A mesh may order devices otherwise than by process
    (TPU topologies), so the block is read off the sharding rather than assumed to be `jax.process_index()`."""
    indices = batch_sharded(mesh).devices_indices_map((global_batch,))
    spans = [indices[device][0].indices(global_batch)[:2] for device in mesh.local_devices]
    start, stop = min(first for first, _ in spans), max(end for _, end in spans)
    local_batch = global_batch // jax.process_count()
    if sum(end - first for first, end in spans) != stop - start or stop - start != local_batch or start % local_batch:
        raise ValueError(f"this process's devices hold rows [{start}, {stop}) of a global batch of {global_batch}: "
                         f"not one contiguous block of {local_batch}")
    return start // local_batch, jax.process_count()


def to_global(local_batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Process-local numpy batch → global arrays sharded along "data" (each host contributes its slice)."""
    sharding = batch_sharded(mesh)
    return {name: jax.make_array_from_process_local_data(sharding, value) for name, value in local_batch.items()}


def to_host(x) -> np.ndarray:
    """A global array → the whole of it as numpy on every host, in global order."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
