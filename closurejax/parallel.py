"""Device mesh, sharding helpers and multi-host initialisation.

Data parallelism in closurejax is sharding-aware ``jax.jit`` (no ``pmap``): the batch (or
ensemble) axis of the inputs is split over the ``"data"`` axis of a one-dimensional device
`Mesh`, parameters are replicated on every device, and XLA inserts the cross-device reductions
(e.g. the all-reduce of gradients of a batch-mean loss) itself. The same code runs on one CPU,
several fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``, set before jax
is imported), one or more GPUs, a TPU slice, and several hosts after `initialize_distributed`.

On several hosts, `jax.devices()` lists the devices of every process, so `data_mesh()` spans
them all, and `shard_batch` / `replicate` expect every process to hold the same *global* host
value (as `closurejax.data.pipeline.Batches.batch_at` gives: it is a function of the step alone);
each process then places only the slices its own devices hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "data_mesh",
    "initialize_distributed",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"

T = TypeVar("T")


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-dimensional mesh with the single axis ``"data"`` (of `AxisType.Auto`).

    Args:
      devices: the devices, in mesh order; defaults to ``jax.devices()`` (every device of every
        process).

    Auto axes let sharding-aware jit propagate shardings and allow indexing a sharded array
    (``jax.make_mesh`` would make Explicit axes, where indexing raises ``ShardingTypeError``).
    """
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 0:
        raise ValueError("data_mesh needs at least one device, got an empty sequence")
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _check_mesh(mesh: Mesh) -> None:
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh has axes {mesh.axis_names}; expected a {DATA_AXIS!r} axis")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits an array's leading axis over the mesh's ``"data"`` axis."""
    _check_mesh(mesh)
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Places the global value `x` with `sharding` (on several processes: the local slices).

    Typed PRNG keys are placed through their raw data; an array that is already global (spans
    devices of other processes) is resharded on device, never fetched to the host.
    """
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(tree: T, mesh: Mesh) -> T:
    """Places every leaf of `tree` with its leading (batch) axis split over ``"data"``.

    Args:
      tree: a pytree of arrays ``[batch, ...]`` (numpy or jax), the global batch; every leaf's
        batch size must be a multiple of the number of devices on the ``"data"`` axis.
      mesh: a mesh with a ``"data"`` axis (see `data_mesh`).

    Returns:
      The same pytree of `jax.Array` s, each device holding ``batch / num_devices`` rows.

    Raises:
      ValueError: a leaf is a scalar, or its batch size does not divide over the devices.
    """
    sharding = batch_sharding(mesh)
    num_devices = mesh.shape[DATA_AXIS]

    def put(path: jax.tree_util.KeyPath, x: Any) -> jax.Array:
        shape = np.shape(x)
        name = jax.tree_util.keystr(path) or "<root>"
        if len(shape) == 0:
            raise ValueError(f"shard_batch: leaf {name} is a scalar; every leaf needs a batch axis")
        if shape[0] % num_devices:
            raise ValueError(
                f"shard_batch: leaf {name} has batch size {shape[0]} (shape {shape}), which is "
                f"not a multiple of the {num_devices} devices on the mesh's {DATA_AXIS!r} axis; "
                f"use a batch size divisible by {num_devices}"
            )
        return _put(x, sharding)

    return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: T, mesh: Mesh) -> T:
    """Places every leaf of `tree` (the same global value on every process) on every device."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Starts JAX's multi-process runtime when there is more than one process; else does nothing.

    A thin wrapper over `jax.distributed.initialize`; call it first, before anything that
    touches a device (`jax.devices()`, any computation). Rules:

    - ``num_processes == 1``: a single process; nothing is done.
    - already initialised: nothing is done.
    - all three arguments None: JAX's cluster auto-detection is tried (Cloud TPU, Slurm,
      Open MPI, Kubernetes, fill in every value); outside a detected cluster JAX asks for a
      coordinator address, and that is taken to mean a single process: nothing is done.
    - otherwise ``jax.distributed.initialize(coordinator_address, num_processes, process_id)``,
      whose errors (unreachable coordinator, a backend already started) propagate.

    Args:
      coordinator_address: ``"host:port"`` of process 0, the same on every process.
      num_processes: number of processes.
      process_id: this process's index in ``[0, num_processes)``.

    Returns:
      True if the distributed runtime is (now) initialised, False for a single process.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None:
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    if num_processes == 1:
        return False
    if jax.distributed.is_initialized():
        return True
    auto = coordinator_address is None and num_processes is None and process_id is None
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    except ValueError as error:
        if auto and "coordinator_address" in str(error):
            return False  # no cluster environment detected: a single process
        raise
    return True
