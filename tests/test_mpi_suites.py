"""Runs the multi-rank suites (`tests/distributed`, tests marked `mpi`) under mpiexec.

This is how the README's one test command reaches them: each case starts
`mpiexec -n N python -m pytest --only-mpi tests/distributed` as a subprocess under a timeout
(a hang is a failure), gives every rank its own --basetemp, and checks that the job exited 0
and that tests really ran on every rank.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phalanx.distributed import shm_files

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
    shutil.which("mpiexec")


def _mpi_ready():
    if MPIEXEC is None:
        return "mpiexec not found (pip install 'phalanx[mpi]')"
    try:
        import mpi4py  # noqa: F401
        import pytest_mpi  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed"
    return None


pytestmark = pytest.mark.mpi_skip


@pytest.fixture(autouse=True)
def _require_mpi():
    # a missing MPI is a failure, not a skip: the README's test command installs it
    problem = _mpi_ready()
    if problem is not None:
        pytest.fail(f"the multi-rank suites cannot run: {problem}")


def _clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                         "PHALANX_STORE_ENDPOINT", "PHALANX_STORE_TOKEN", "PHALANX_DEBUG")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("nproc,tests", [
    (2, "tests/distributed"), (3, "tests/distributed"),
    # two simulated hosts of two ranks; a 2 x 2 device mesh (HSDP's too); four stages
    (4, "tests/distributed/test_mpi_hosts.py tests/distributed/test_mpi_device_mesh.py "
        "tests/distributed/test_mpi_fsdp.py tests/distributed/test_mpi_dcp.py "
        "tests/distributed/test_mpi_tensor_parallel.py tests/distributed/test_mpi_dtensor.py "
        "tests/distributed/test_mpi_fsdp_tp.py tests/distributed/test_mpi_pipelining.py"),
], ids=["2", "3", "4-hosts"])
@pytest.mark.timeout(660)
def test_distributed_suite(nproc, tests, tmp_path):
    cmd = ["timeout", "600", MPIEXEC]
    for rank in range(nproc):   # MPMD: one segment per rank, each with its own --basetemp
        if rank:
            cmd.append(":")
        cmd += ["-n", "1", sys.executable, "-m", "pytest", "--only-mpi", "-q", "-p",
                "no:randomly", f"--basetemp={tmp_path / f'rank{rank}'}", *tests.split()]
    proc = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    # one summary per rank; ranks share the pipe, so lines may run into each other
    summaries = re.findall(r"(\d+) passed[^\n]*? in [\d.]+s", out)
    assert proc.returncode == 0 and len(summaries) == nproc, \
        f"mpiexec -n {nproc} exited {proc.returncode}; output:\n{out[-20000:]}"
    assert all(int(n) > 0 for n in summaries), f"no test ran:\n{out[-5000:]}"
    assert not re.search(r"\d+ (failed|errors?)\b", out), out[-20000:]


ABORT_WORKER = r'''
import sys, threading, time
import numpy as np
import phalanx as px
import phalanx.distributed as dist
dist.init_process_group()
if dist.get_rank() == 1:
    time.sleep(0.3)
    if sys.argv[1] == "thread":
        threading.Thread(target=lambda: 1 / 0, name="loader").start()
        time.sleep(60)
    raise ValueError("boom on rank 1")
dist.all_reduce(px.Tensor._make(np.zeros(3)))   # rank 1 never joins
print("NOT REACHED", flush=True)
'''


def _run_aborting(command, env):
    """`mpiexec -n 2 command` for a job that aborts, and the segments MPICH leaves after it
    removed."""
    started = time.time()
    proc = subprocess.run(["timeout", "45", MPIEXEC, "-n", "2", *command], env=env,
                          capture_output=True, text=True)
    shm_files.remove_mpich_leftovers(started - 1)
    return proc


@pytest.mark.parametrize("where", ["main", "thread"])
@pytest.mark.timeout(60)
def test_uncaught_exception_aborts_job_without_hang(where, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(ABORT_WORKER)
    env = _clean_env()
    start = time.monotonic()
    proc = _run_aborting([sys.executable, str(script), where], env)
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 124), f"exit {proc.returncode}:\n{out}"
    assert elapsed < 30, f"took {elapsed:.1f} s to abort:\n{out}"
    assert "NOT REACHED" not in out
    expected = "ValueError: boom on rank 1" if where == "main" else "ZeroDivisionError"
    assert out.count(expected) == 1, out          # the traceback, printed once
    assert "[rank 1] uncaught exception" in out, out


HANG_WORKER = r'''
import numpy as np
import phalanx as px
import phalanx.distributed as dist
dist.init_process_group(timeout=2)
if dist.get_rank() == 0:
    dist.all_reduce(px.Tensor._make(np.zeros(3)))   # rank 1 never calls it
else:
    import time
    time.sleep(60)
'''


@pytest.mark.timeout(60)
def test_collective_timeout_aborts_instead_of_hanging(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG_WORKER)
    start = time.monotonic()
    proc = _run_aborting([sys.executable, str(script)], _clean_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 124), out
    assert time.monotonic() - start < 30, out
    assert "all_reduce(shape=(3,), dtype=float64)" in out and "PHALANX_DEBUG=1" in out, out


@pytest.mark.timeout(120)
def test_ddp_digits_example_trains_and_resumes(tmp_path):
    script = ROOT / "examples" / "ddp_digits.py"
    ckpt = tmp_path / "digits.ckpt"
    base = ["timeout", "100", MPIEXEC, "-n", "2", sys.executable, str(script), "--no-progress",
            "--checkpoint", str(ckpt)]
    first = subprocess.run(base + ["--epochs", "1"], env=_clean_env(), cwd=tmp_path,
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 rank(s), backend mpi" in first.stdout and ckpt.exists(), first.stdout
    again = subprocess.run(base + ["--epochs", "2", "--resume"], env=_clean_env(),
                           cwd=tmp_path, capture_output=True, text=True)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "resumed from" in out and "epoch 2:" in out and "epoch 1:" not in out, out
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", out).group(1))
    assert accuracy > 50, out          # two short epochs; chance is 10%


THREADS_WORKER = r'''
import os
from threadpoolctl import threadpool_info
import phalanx.distributed as dist
dist.init_process_group()
blas = {m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"}
print(f"rank {dist.get_rank()}: blas {sorted(blas)} env {os.environ['OMP_NUM_THREADS']}",
      flush=True)
'''


@pytest.mark.parametrize("user_set", [False, True])
@pytest.mark.timeout(60)
def test_bare_mpiexec_ranks_share_the_cores(user_set, tmp_path):
    """Without `phalanx run` nobody divides the cores among a host's ranks:
    init_process_group gives each rank's BLAS its share, unless the user chose."""
    script = tmp_path / "threads.py"
    script.write_text(THREADS_WORKER)
    env = {k: v for k, v in _clean_env().items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if user_set:
        env["OMP_NUM_THREADS"] = "3"
    proc = subprocess.run(["timeout", "45", MPIEXEC, "-n", "2", sys.executable, str(script)],
                          env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for rank in range(2):
        if user_set:
            assert f"rank {rank}: blas" in out and "env 3" in out, out
        else:
            assert f"rank {rank}: blas [{share}] env {share}" in out, out
    assert out.count("each rank runs") == (0 if user_set else 1), out   # said once, by rank 0
