"""`Join` with real processes under the launcher (the zmq backend); the MPI side is
tests/distributed/test_mpi_join.py."""
import os

import pytest


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shared", ["1", "0"], ids=["shared-memory", "zmq-all-reduce"])
def test_uneven_inputs_join_over_zmq(launcher, shared):
    """DDP + ZeRO under `Join` with 1, 3 and 5 batches on three ranks end with the weights of
    one process trained on the shards of the ranks still training at each step."""
    worker = os.path.join(os.path.dirname(__file__), "workers", "ddp_join.py")
    code, out = launcher.run("--standalone", "--nproc-per-node", 3, worker, timeout=100,
                             env=launcher.env(PHALANX_SHARED_MEMORY=shared))
    assert code == 0, out[-5000:]
    assert all(f"rank {r}: join ok" in out for r in range(3)), out[-5000:]
