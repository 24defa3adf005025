"""``jaxpro.core.distributed``: two processes on this machine join one computation.

Oracle: the sum of both processes' rows computed by one program over the
global mesh equals the sum of all rows computed here; each process sees two
global devices and its own index.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxpro.core import distributed
from jaxpro.errors import BackendStartedError, InputError

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from jaxpro.core import distributed, device_mesh
    info = distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    mesh = device_mesh()
    rows = np.arange(6.0) + 6.0 * info.process_id  # this process's rows only
    global_rows = jax.make_array_from_process_local_data(NamedSharding(mesh, P("batch")), rows)
    total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(global_rows)
    print("RESULT " + json.dumps({**info.to_dict(), "total": float(total),
                                  "shape": list(global_rows.shape)}))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes():
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, address, str(pid)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for pid in (0, 1)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
    return results


def test_two_processes_join_and_reduce_across_them(two_processes):
    for pid, result in enumerate(two_processes):
        assert result["process_id"] == pid and result["num_processes"] == 2
        assert result["local_devices"] == 1 and result["global_devices"] == 2
        assert result["environment"] == "arguments"
        assert result["shape"] == [12]
        assert result["total"] == sum(range(12))  # both processes' rows, one program
        assert any("CPU collectives: gloo" in r for r in result["reasons"])


def test_launchers_are_detected_from_their_environment():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "2"}
    assert distributed.detect_environment(slurm) == ("slurm", 4, 2)
    assert distributed.detect_environment({**slurm, "SLURM_NTASKS": "1"}) is None  # salloc shell
    mpi = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5"}
    assert distributed.detect_environment(mpi) == ("openmpi", 8, 5)
    tpu = {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3", "TPU_WORKER_ID": "3"}
    assert distributed.detect_environment(tpu) == ("cloud-tpu", 4, 3)
    assert distributed.detect_environment({**tpu, "TPU_WORKER_HOSTNAMES": "t0"}) is None
    assert distributed.detect_environment({}) is None


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_RANK", "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_without_a_cluster_it_is_one_process(no_launcher):
    info = distributed.initialize()
    assert (info.process_id, info.num_processes, info.environment) == (0, 1, "single")
    assert "one process, nothing to join" in info.summary()


def test_bad_input_and_a_late_call(no_launcher):
    with pytest.raises(InputError, match="num_processes: give coordinator_address, num_processes"):
        distributed.initialize("127.0.0.1:1234")
    with pytest.raises(InputError, match=r"process_id: must be in 0..1 \(got 2\)"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(InputError, match=r"num_processes: must be a positive integer \(got 0\)"):
        distributed.initialize("127.0.0.1:1234", 0, 0)
    # this test process already runs JAX: too late to join
    with pytest.raises(BackendStartedError, match="before any JAX computation"):
        distributed.initialize(f"127.0.0.1:{free_port()}", 2, 0)
