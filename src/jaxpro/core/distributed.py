"""Many processes, one computation: ``jax.distributed`` set up the way each cluster needs.

:func:`initialize` is called once per process, first thing, before any JAX
computation. It reads where it runs (SLURM, Open MPI, or arguments you give),
turns on CPU collectives (gloo) so that CPU-only runs and local tests work,
calls ``jax.distributed.initialize`` and says what it did. Without a cluster
and without arguments it does nothing and reports one process, so the same
script runs on a laptop and on a cluster.

After it, ``jax.devices()`` lists every process's devices;
:func:`jaxpro.core.device_mesh` builds a mesh over them, and each process
feeds its own rows (``jaxpro.io.process_rows``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jaxpro.errors import BackendStartedError, InputError

__all__ = ["DistributedInfo", "detect_environment", "initialize"]


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands.

    Attributes:
        process_id: this process's index (0 is the coordinator).
        num_processes: processes in the computation.
        local_devices: devices of this process.
        global_devices: devices of all processes.
        environment: "slurm", "openmpi", "cloud-tpu", "arguments" or "single" (no cluster).
        coordinator: the coordinator's address, when known.
        reasons: what was decided and why.
    """

    process_id: int
    num_processes: int
    local_devices: int
    global_devices: int
    environment: str
    coordinator: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        lines = [
            f"process {self.process_id} of {self.num_processes} ({self.environment}):"
            f" {self.local_devices} local device(s), {self.global_devices} in all"
        ]
        lines += [f"  - {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "process_id": self.process_id,
            "num_processes": self.num_processes,
            "local_devices": self.local_devices,
            "global_devices": self.global_devices,
            "environment": self.environment,
            "coordinator": self.coordinator,
            "reasons": list(self.reasons),
        }


def detect_environment(environ: Mapping[str, str] | None = None) -> tuple[str, int, int] | None:
    """``(name, num_processes, process_id)`` from a SLURM, Open MPI or multi-host Cloud TPU
    launch, else None.

    A SLURM allocation counts only inside a job step with more than one task
    (``srun``); an interactive shell inside an allocation is one process.
    """
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" in env and "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        tasks = int(env["SLURM_NTASKS"])
        if tasks > 1:
            return "slurm", tasks, int(env["SLURM_PROCID"])
    if "OMPI_COMM_WORLD_SIZE" in env and "OMPI_COMM_WORLD_RANK" in env:
        size = int(env["OMPI_COMM_WORLD_SIZE"])
        if size > 1:
            return "openmpi", size, int(env["OMPI_COMM_WORLD_RANK"])
    # a multi-host Cloud TPU slice names its hosts (JAX reads the same variables)
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1 and "TPU_WORKER_ID" in env:
        return "cloud-tpu", len(hosts), int(env["TPU_WORKER_ID"])
    return None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    initialization_timeout: int = 300,
) -> DistributedInfo:
    """Join (or start) a multi-process JAX computation.

    Args:
        coordinator_address: ``host:port`` of process 0. With SLURM or Open
            MPI, JAX finds it; otherwise give it with the two next arguments.
        num_processes: how many processes take part.
        process_id: this process's index, ``0 <= process_id < num_processes``.
        local_device_ids: the local devices this process uses (default: all).
        initialization_timeout: seconds to wait for every process to join.

    Returns:
        A :class:`DistributedInfo`.

    Raises:
        InputError: some but not all of the three arguments are given, or
            ``process_id`` is out of range.
        BackendStartedError: a JAX computation already ran in this process.
    """
    import jax

    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    missing = [name for name, value in given.items() if value is None]
    detected = detect_environment()
    if 0 < len(missing) < 3 and detected is None:
        raise InputError(
            "give coordinator_address, num_processes and process_id together (or launch"
            " under SLURM or Open MPI, which provide them)",
            argument=missing[0],
        )
    if num_processes is not None and (isinstance(num_processes, bool) or num_processes < 1):
        raise InputError("must be a positive integer", argument="num_processes",
                         received=num_processes)  # fmt: skip
    if (
        process_id is not None
        and num_processes is not None
        and not (0 <= process_id < num_processes)
    ):
        raise InputError(f"must be in 0..{num_processes - 1}", argument="process_id",
                         received=process_id)  # fmt: skip
    reasons = []
    if jax.distributed.is_initialized():
        environment = "arguments" if not missing else (detected[0] if detected else "single")
        reasons.append("jax.distributed was already initialised in this process; left as is")
        return _info(environment, coordinator_address, reasons)
    if not missing:
        environment = "arguments"
    elif detected is not None:
        environment = detected[0]
        reasons.append(
            f"{environment} launch detected: {detected[1]} processes, this is process {detected[2]}"
        )
    else:
        reasons.append("no cluster launch detected and no arguments: one process, nothing to join")
        return _info("single", None, reasons)
    try:
        # CPU collectives are off by default in some JAX versions; gloo lets CPU
        # devices of different processes exchange data (GPUs use NCCL regardless).
        if jax.config.jax_cpu_collectives_implementation in (None, "none", ""):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        reasons.append(
            f"CPU collectives: {jax.config.jax_cpu_collectives_implementation} (used when the"
            " devices are CPUs)"
        )
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout,
        )
    except RuntimeError as error:
        if "before any JAX" in str(error) or "backend" in str(error).lower():
            raise BackendStartedError(
                "jax.distributed must be initialised before any JAX computation: call "
                "jaxpro.core.distributed.initialize() first thing in the script"
            ) from error
        raise
    return _info(environment, coordinator_address, reasons)


def _info(environment: str, coordinator: str | None, reasons: list[str]) -> DistributedInfo:
    import jax

    return DistributedInfo(
        process_id=jax.process_index(),
        num_processes=jax.process_count(),
        local_devices=jax.local_device_count(),
        global_devices=jax.device_count(),
        environment=environment,
        coordinator=coordinator,
        reasons=tuple(reasons),
    )
