"""`fully_shard` with real processes under the launcher (the zmq backend); the MPI side is
tests/distributed/test_mpi_fsdp.py."""
import os

import pytest


@pytest.mark.timeout(120)
def test_fully_shard_over_zmq(launcher):
    """FSDP's all-gathers and reduce-scatters over the zmq backend: three ranks train to the
    weights of one process on the whole batch (the MPI side is test_mpi_fsdp.py)."""
    worker = os.path.join(os.path.dirname(__file__), "workers", "fsdp_train.py")
    code, out = launcher.run("--standalone", "--nproc-per-node", 3, worker, timeout=100)
    assert code == 0, out[-5000:]
    assert all(f"rank {r}: fsdp ok" in out for r in range(3)), out[-5000:]
