"""What dead ranks leave behind is removed: the /dev/shm files of DDP's shared-memory buffers
(named after the process and run that made them), under `phalanx run` and `phalanx run --mpi`.
(The temporaries of killed saves are in tests/test_serialization.py.)"""
import os
import subprocess
import sys

import pytest

from phalanx.distributed import shm_files

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "shm_orphan.py")


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_names_carry_the_pid_and_run_and_orphans_are_found(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    mine_dead = shm_files.file_name(dead, "job-1/x")
    mine_alive = shm_files.file_name(alive, "job-1/x")
    other_run = shm_files.file_name(dead, "job-2")
    for name in (mine_dead, mine_alive, other_run, "phalanx-123-notours", "unrelated"):
        (tmp_path / name).write_bytes(b"")
    assert shm_files.owner(mine_dead) == (dead, "job_1_x")
    assert shm_files.owner("phalanx-123-notours") is None
    assert shm_files.remove_orphans("job-1/x", directory=tmp_path) == [
        str(tmp_path / mine_dead)]
    assert shm_files.remove_orphans("job-1/x", pids=[alive], directory=tmp_path) == [
        str(tmp_path / mine_alive)]
    assert sorted(os.listdir(tmp_path)) == sorted([other_run, "phalanx-123-notours",
                                                   "unrelated"])


@pytest.mark.timeout(60)
def test_phalanx_run_removes_the_shared_memory_files_of_dead_ranks(launcher, tmp_path):
    out = tmp_path / "path"
    code, log = launcher.run("--nproc-per-node", 2, "--rdzv-id", "shm-test", WORKER,
                             "--out", out, timeout=45)
    assert code != 0 and "killed by SIGKILL" in log, log
    path = out.read_text()
    assert os.path.basename(path).startswith("phalanx-") and "-shm_test-" in path
    assert not os.path.exists(path), f"{path} was left behind"


@pytest.mark.timeout(60)
def test_phalanx_run_mpi_removes_the_shared_memory_files_of_dead_ranks(launcher, tmp_path):
    if not os.access(os.path.join(os.path.dirname(sys.executable), "mpiexec"), os.X_OK):
        pytest.skip("no mpiexec next to the Python interpreter")
    out = tmp_path / "path"
    env = {k: v for k, v in launcher.env().items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    code, log = launcher.run("--mpi", "-n", 2, "--rdzv-id", "shm-mpi", WORKER, "--out", out,
                             env=env, timeout=45)
    assert code != 0, log
    path = out.read_text()
    assert "-shm_mpi-" in path and not os.path.exists(path), f"{path} was left behind"


def test_mpich_segments_left_by_aborted_jobs_are_removed_unless_mapped(tmp_path):
    import mmap
    import time
    old, leaked, in_use = (tmp_path / f"mpich_shm_{n}_0" for n in ("old", "leaked", "in_use"))
    for f in (old, leaked, in_use):
        f.write_bytes(b"\0" * 4096)
    os.utime(old, (time.time() - 3600,) * 2)
    with open(in_use, "r+b") as f, mmap.mmap(f.fileno(), 4096):
        start = time.monotonic()
        removed = shm_files.remove_mpich_leftovers(time.time() - 60, directory=tmp_path,
                                                   settle=0.3)
        assert time.monotonic() - start >= 0.3          # it waited for the mapping to go
    assert removed == [str(leaked)]
    assert sorted(os.listdir(tmp_path)) == sorted([old.name, in_use.name])


def test_mpich_segments_of_ranks_still_exiting_are_removed_once_they_are_gone(tmp_path):
    """mpiexec may return while its killed ranks still map their segments."""
    import subprocess
    import sys
    import time
    segment = tmp_path / "mpich_shm_dying_0"
    segment.write_bytes(b"\0" * 4096)
    rank = subprocess.Popen([sys.executable, "-c", (
        "import mmap, sys, time\n"
        "f = open(sys.argv[1], 'r+b'); m = mmap.mmap(f.fileno(), 4096)\n"
        "print('mapped', flush=True); time.sleep(0.5)"), str(segment)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert rank.stdout.readline().strip() == "mapped"
        removed = shm_files.remove_mpich_leftovers(time.time() - 60, directory=tmp_path,
                                                   settle=10)
    finally:
        rank.kill()
        rank.wait()
    assert removed == [str(segment)] and not segment.exists()
