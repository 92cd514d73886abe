"""The collective watchdog: a collective that makes no progress for the timeout (600 s unless
init_process_group or PHALANX_COLLECTIVE_TIMEOUT says otherwise) aborts the MPI job with a
message naming the operation and the ranks that did not join, idle or stopped. Runs `mpiexec`
itself (three ranks), so it is an ordinary test, not an MPI suite."""
import os
import subprocess
import sys
import time

import pytest

from phalanx.distributed import comm_queue, shm_files

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")

WORKER = r'''
import os, signal, sys, time
import numpy as np
import phalanx as px
import phalanx.distributed as dist
dist.init_process_group(timeout=2)
dist.all_reduce(px.Tensor._make(np.zeros(3)))        # collective #1 on every rank
if dist.get_rank() == 2:
    if sys.argv[1] == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)
dist.all_reduce(px.Tensor._make(np.zeros(3)))        # #2: rank 2 never joins
'''


def test_default_collective_timeout(monkeypatch):
    monkeypatch.delenv(comm_queue.COLLECTIVE_TIMEOUT_ENV, raising=False)
    assert comm_queue.default_collective_timeout() == 600.0
    monkeypatch.setenv(comm_queue.COLLECTIVE_TIMEOUT_ENV, "42.5")
    assert comm_queue.default_collective_timeout() == 42.5
    monkeypatch.setenv(comm_queue.COLLECTIVE_TIMEOUT_ENV, "forever")
    with pytest.raises(ValueError, match="PHALANX_COLLECTIVE_TIMEOUT='forever'"):
        comm_queue.default_collective_timeout()


def test_init_process_group_without_a_timeout_takes_the_default(monkeypatch):
    """What every backend is built with when init_process_group() gets no timeout."""
    import datetime
    from phalanx.distributed import world, zmq_backend
    monkeypatch.delenv(comm_queue.COLLECTIVE_TIMEOUT_ENV, raising=False)
    assert world._seconds(None) == 600.0 == zmq_backend.DEFAULT_TIMEOUT
    monkeypatch.setenv(comm_queue.COLLECTIVE_TIMEOUT_ENV, "7")
    assert world._seconds(None) == 7.0
    assert world._seconds(datetime.timedelta(minutes=2)) == 120.0


@pytest.mark.skipif(not os.access(MPIEXEC, os.X_OK), reason="no mpiexec next to Python")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how,why", [
    ("idle", "rank 2 has not called it (it is idle after 1 collective(s) on this group)"),
    ("stop", "rank 2 did not answer in 3 s (stopped"),
])
def test_timeout_names_the_operation_and_the_ranks_that_did_not_join(tmp_path, how, why):
    script = tmp_path / "hang.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start, started = time.monotonic(), time.time()
    proc = subprocess.run(["timeout", "45", MPIEXEC, "-n", "3", sys.executable, str(script),
                           how], env=env, capture_output=True, text=True)
    shm_files.remove_mpich_leftovers(started - 1)     # what MPICH leaves after an abort
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 124), out
    assert time.monotonic() - start < 30, out
    assert "all_reduce(shape=(3,), dtype=float64) (collective #2 of" in out, out
    assert f"Ranks that did not join: {why}" in out, out
    assert "rank 1 " not in out.split("did not join:")[1].split(".")[0], out   # rank 1 joined
