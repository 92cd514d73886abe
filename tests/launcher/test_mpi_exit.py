"""A rank that leaves an MPI job with a non-zero status, by any path, ends the whole job within
seconds (instead of leaving its peers in a collective until the collective timeout), under a
plain `mpiexec` and under `phalanx run --mpi`, which then restarts it."""
import os
import subprocess
import sys
import time

import pytest

from phalanx.distributed import shm_files

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "mpi_exit.py")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")

pytestmark = pytest.mark.skipif(not os.access(MPIEXEC, os.X_OK),
                                reason="no mpiexec next to the Python interpreter")


def _mpi_env(launcher):
    return {k: v for k, v in launcher.env().items()
            if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}


# `raise SystemExit(3)` never shows its status to Python code in a bare `python train.py`
# (see distributed/abort.py): the rank announces its exit and rank 0, waiting for it, aborts.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "raise", "osexit", "exception"])
def test_bare_mpiexec_ends_the_job_when_a_rank_exits_nonzero(launcher, how):
    start, started = time.monotonic(), time.time()
    proc = subprocess.run(["timeout", "40", MPIEXEC, "-n", "2", sys.executable, WORKER,
                           "--how", how], env=_mpi_env(launcher), capture_output=True,
                          text=True)
    shm_files.remove_mpich_leftovers(started - 1)     # what MPICH leaves after an abort
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 124), f"exit {proc.returncode}:\n{out}"
    assert time.monotonic() - start < 20, out
    assert "all-reduced" not in out, out
    if how in ("exit", "osexit"):
        assert proc.returncode == 3, out
    if how == "raise":
        assert "rank 1 exited while this rank waits for it in all_reduce" in out, out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "raise", "osexit", "exception"])
def test_phalanx_run_mpi_ends_the_job_when_a_rank_exits_nonzero(launcher, how):
    start = time.monotonic()
    code, out = launcher.run("--mpi", "-n", 2, WORKER, "--how", how, env=_mpi_env(launcher),
                             timeout=40)
    assert code == (1 if how == "exception" else 3), out
    assert time.monotonic() - start < 20, out
    assert "all-reduced" not in out and "no restarts left" in out, out
    if how == "exception":
        assert "ValueError: boom on rank 1" in out and "first failure: rank 1" in out, out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "exception"])
def test_phalanx_run_mpi_restarts_after_a_rank_exits_nonzero(launcher, how):
    code, out = launcher.run("--mpi", "-n", 2, "--max-restarts", 1, WORKER, "--how", how,
                             "--first-attempt-only", env=_mpi_env(launcher), timeout=40)
    assert code == 0, out
    assert "attempt 0 failed; restarting" in out, out
    assert "rank 0 all-reduced [2.0, 2.0, 2.0]" in out, out
