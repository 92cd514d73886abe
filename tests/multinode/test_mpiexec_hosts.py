"""MPI across hosts: `mpiexec` with a host file, its launcher reaching the other host through
an ssh-like wrapper that enters that host's namespaces."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).parent / "workers" / "ddp_equiv.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not os.access(MPIEXEC, os.X_OK),
                                 reason="no mpiexec next to the interpreter")]


def _mpiexec(job, tmp_path, *args):
    hosts = tmp_path / "hosts"
    hosts.write_text("h0:2\nh1:2\n")
    return job.start("h0", [MPIEXEC, "-f", hosts, "-launcher", "ssh", "-launcher-exec",
                            job.cluster.ssh_wrapper(), "-n", 4, sys.executable, WORKER, *args])


def test_ddp_over_mpi_across_hosts_equals_one_process(job, tmp_path):
    one = tmp_path / "one.npy"
    subprocess.run([sys.executable, WORKER, "--out", one], check=True, timeout=120,
                   capture_output=True, env={"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    code, out = job.finish(_mpiexec(job, tmp_path, "--out", tmp_path / "mpi.npy"))
    assert code == 0, out[-4000:]
    # the remote host's lines can arrive glued together through the launcher
    paths = sorted(re.findall(r"path (\d+) (h\d) (hierarchical|flat|backend)", out))
    assert paths == [("0", "h0", "hierarchical"), ("1", "h0", "hierarchical"),
                     ("2", "h1", "hierarchical"), ("3", "h1", "hierarchical")], out[-4000:]
    np.testing.assert_allclose(np.load(tmp_path / "mpi.npy"), np.load(one), rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_a_failing_rank_on_the_other_host_ends_the_job_within_seconds(job, tmp_path, mode):
    start = time.monotonic()
    code, out = job.finish(_mpiexec(job, tmp_path, "--out", tmp_path / "x.npy", "--steps", 50,
                                    "--fail-rank", 3, "--fail-mode", mode))
    elapsed = time.monotonic() - start
    assert code != 0, out[-4000:]
    assert "rank 3 fails" in out, out[-4000:]
    assert elapsed < 30, f"the job took {elapsed:.0f} s to end:\n{out[-4000:]}"
