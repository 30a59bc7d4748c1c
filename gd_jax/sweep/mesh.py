"""The device mesh a sweep's networks are sharded over, and the gather that brings
sharded arrays (from every process) back to the host."""

import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from gd_jax.errors import GdJaxError


def host(tree):
    """Numpy copies of (possibly sharded) arrays. An array spread over several processes
    is gathered from all of them, since each holds only its own devices' shards."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(jax.device_get(a))

    return jax.tree.map(one, tree)


def network_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh, ``"networks"``, over the first ``devices`` devices (all if None).

    Sweeps shard their network axis over it: each device trains its share of the
    networks, with the data replicated. Several hosts joined by
    ``jax.distributed.initialize`` see one another's devices in ``jax.devices()``.
    """
    available = jax.devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise GdJaxError(
            f"devices={devices} cannot be used: {len(available)} device(s) are visible "
            f"({available[0].platform}). Give a number from 1 to {len(available)}, or None "
            "to use them all.",
            field="devices",
        )
    return jax.make_mesh(
        (count,), ("networks",), devices=available[:count], axis_types=(AxisType.Auto,)
    )


def replicate(tree, network_mesh: Mesh):
    """``tree``'s arrays on every device of ``network_mesh``.

    An array already there is returned as it is (no copy); a host array is copied to
    the devices once; a device array placed otherwise is copied device to device, or,
    when several processes share the mesh, through the host (each process passes the
    same values and keeps the shards of its own devices).
    """
    everywhere = NamedSharding(network_mesh, PartitionSpec())

    def one(a):
        if isinstance(a, jax.Array):
            if a.sharding.is_equivalent_to(everywhere, a.ndim):
                return a
            if jax.process_count() > 1:
                a = np.asarray(jax.device_get(a))
        return jax.device_put(a, everywhere)

    return jax.tree.map(one, tree)


def check_platform(wanted: str | None) -> None:
    """Raises unless JAX runs on ``wanted`` (``"cpu"``, ``"gpu"`` or ``"tpu"``; None
    takes whatever JAX found). A CUDA plugin that fails to load makes JAX fall back to
    the CPU with only a warning; a run that asked for a GPU stops instead."""
    if not wanted:
        return
    try:
        found = jax.default_backend()
    except RuntimeError as e:  # JAX_PLATFORMS names a backend that cannot start
        found = f"no backend ({str(e).splitlines()[0]})"
    if found != wanted:
        raise GdJaxError(
            f"platform={wanted} was asked for, but JAX runs on {found}: the {wanted} "
            "backend is not installed, or failed to start (JAX warns why above). On NVIDIA "
            "GPUs install JAX's CUDA wheels (pip install -e '.[cuda12]' or '.[cuda13]'), or "
            "leave the platform to JAX.",
            field="platform",
        )


# The variables JAX's own Slurm detection reads (jax/_src/clusters/slurm_cluster.py).
SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def cluster_processes() -> tuple[str, int] | None:
    """The cluster manager that launched this process and how many processes it
    launched, from the environment JAX itself reads: a Slurm step (``srun``) or Open
    MPI (``mpirun``); None when there is none."""
    env = os.environ
    if "OMPI_MCA_orte_hnp_uri" in env:  # JAX prefers Open MPI when both are present
        return "Open MPI", int(env.get("OMPI_COMM_WORLD_SIZE", "1"))
    if all(name in env for name in SLURM):
        return "Slurm", int(env["SLURM_NTASKS"])
    return None


def join(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int = 0,
    local_device_ids: list[int] | None = None,
) -> int:
    """Joins the processes of a multi-host study (``jax.distributed``).

    With ``num_processes`` > 1 the processes join as told. Without it, a cluster JAX can
    detect (``srun`` under Slurm, ``mpirun`` under Open MPI) that launched more than one
    process is joined with JAX's own detection, no flags needed; ``num_processes=1``
    keeps a process alone even there. Each process then sees every process's devices
    in ``jax.devices()``, so the sweeps' network mesh spans them all; on CPUs the
    collectives go through gloo.

    Args:
      coordinator_address: ``host:port`` of process 0, the same for every process.
      num_processes: how many processes join (None: as the cluster says, else 1).
      process_id: this process's rank, from 0 to ``num_processes - 1``.
      local_device_ids: the devices of this host the process takes (e.g. one GPU per
        process); None leaves it to JAX (one GPU per process under Slurm and Open MPI,
        every local device otherwise).

    Returns:
      The number of processes joined (1 when the process runs alone).
    """
    found = cluster_processes()
    if num_processes is None:
        if found is None or found[1] <= 1:
            if "SLURM_JOB_ID" in os.environ and found is None:
                missing = [name for name in SLURM if name not in os.environ]
                logging.warning(
                    "SLURM_JOB_ID is set but %s not: this is not a Slurm step launched by "
                    "srun (a shell opened on the job's node, say), so the run stays one "
                    "process. Launch with srun to join the job's tasks.",
                    ", ".join(missing),
                )
            return 1
        logging.info("Joining the %d processes %s launched.", found[1], found[0])
        _initialize(local_device_ids=local_device_ids)
        return found[1]
    if num_processes <= 1:
        return 1
    if not coordinator_address or not 0 <= process_id < num_processes:
        raise GdJaxError(
            f"num_processes={num_processes} needs a coordinator_address HOST:PORT "
            f"(process 0's) and a process_id from 0 to {num_processes - 1} "
            f"(got {process_id}).",
            field="num_processes",
        )
    _initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    return num_processes


def _initialize(**kwargs) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
