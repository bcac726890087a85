"""Where the work runs: the devices JAX sees, a one-axis mesh over them, and several hosts.

JAX is the distributed engine; this module only names its pieces. In one process (the default)
the devices are this machine's. After `initialize(...)` (`jax.distributed.initialize`), every
process runs the same program and `jax.devices()` lists every host's devices: arrays placed
with `put` span all of them, XLA inserts the collectives (gradient all-reduce over a sharded
batch, nothing for independent models), and `fetch` gathers results to every process.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxseq.errors import OptionError


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None):
    """Joins this process to a multi-host run: `jax.distributed.initialize`, before any other JAX call.

    `coordinator` is "host:port" of process 0 (default $JAX_COORDINATOR_ADDRESS); with all three
    None, JAX reads them from a recognised cluster (Slurm, Open MPI, Kubernetes, Cloud TPU).
    The timeouts are short, so a process that dies takes the others down within a minute.
    """
    jax.distributed.initialize(
        coordinator,
        num_processes,
        process_id,
        initialization_timeout=120,
        heartbeat_timeout_seconds=30,
        shutdown_timeout_seconds=30,
    )


def platform_devices(platform: str | None = None) -> list:
    """Every device of `platform` (JAX's default backend when None), on every host."""
    try:
        return jax.devices(platform) if platform else jax.devices()
    except RuntimeError as e:
        raise OptionError(f"platform {platform!r} is not available to JAX: {str(e).splitlines()[0]}") from None


def usable_devices(devices: list, items: int, what: str) -> list:
    """The devices to split `items` over: all of them if `items` divides evenly, else the first.

    Across several processes the first device alone would leave the others idle, so an uneven
    split is an error there, naming `what` is split.
    """
    if items % len(devices) == 0:
        return devices
    if jax.process_count() > 1:
        raise OptionError(f"{items} {what} do not split evenly over the {len(devices)} devices of all processes")
    return devices[:1]


def mesh(devices: list, axis: str) -> jax.sharding.Mesh:
    """A one-axis mesh over `devices`. Auto axes: XLA's partitioner places the work and inserts
    the collectives; the program itself has no sharding code."""
    return jax.make_mesh((len(devices),), (axis,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def shardings(mesh: jax.sharding.Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated on every device, split along the mesh's axis over the leading dimension)."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def put(tree, sharding: NamedSharding):
    """Places every array of `tree` (each process holding the same values) with `sharding`.

    Each process supplies its own devices' pieces (`jax.make_array_from_callback`), which works
    in one process and across hosts alike, without comparing the data between processes.
    """

    def place(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

    return jax.tree.map(place, tree)


def fetch(tree):
    """Every array of `tree` as NumPy, gathered from all processes where it spans several."""
    from jax.experimental import multihost_utils

    def gather(leaf):
        if isinstance(leaf, jax.Array) and leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(gather, tree)


def any_process(flag: bool) -> bool:
    """Whether `flag` is true in any process: the same answer in every process (a collective where
    there are several, so every process must ask)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def is_main_process() -> bool:
    """True in process 0, the one that writes files and prints; always true in a single process."""
    return jax.process_index() == 0
