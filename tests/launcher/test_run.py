"""`phalanx run` with real processes: success, exit codes, error summaries, logs, signals and
orphans. Resume and elastic membership are in test_resume.py and test_elastic.py."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")
HELLO, BARRIER, SLEEPER, P2P = (os.path.join(WORKERS, name)
                                for name in ("hello.py", "barrier.py", "sleeper.py", "p2p.py"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nproc", [1, 2, 4])
def test_all_ranks_pass_a_store_barrier(launcher, nproc):
    code, out = launcher.run("--nproc-per-node", nproc, BARRIER)
    assert code == 0, out
    for rank in range(nproc):
        assert f"[rank {rank}]: rank {rank} passed the barrier" in out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nproc", [2, 3])
def test_point_to_point_over_the_launchers_backend(launcher, nproc):
    code, out = launcher.run("--nproc-per-node", nproc, P2P)
    assert code == 0, out
    for rank in range(nproc):
        assert f"[rank {rank}]: rank {rank}: point-to-point ok" in out, out


@pytest.mark.timeout(60)
def test_workers_get_the_torchrun_environment(launcher, tmp_path):
    env = launcher.env()
    env.pop("OMP_NUM_THREADS")
    code, out = launcher.run("--nproc_per_node", 2, "--rdzv-id", "job7", HELLO,
                                "--out", tmp_path, env=env)
    assert code == 0, out
    envs = [json.loads((tmp_path / f"env_{r}.json").read_text()) for r in range(2)]
    for rank, e in enumerate(envs):
        assert (e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"]) == \
               (str(rank), str(rank), "2", "2")
        assert (e["GROUP_RANK"], e["RESTART_COUNT"], e["PHALANX_RUN_ID"]) == ("0", "0", "job7")
        assert e["PHALANX_STORE_ENDPOINT"] == f"tcp://127.0.0.1:{e['MASTER_PORT']}"
        assert e["OMP_NUM_THREADS"] == str(max(1, os.cpu_count() // 2))
        assert e["OPENBLAS_NUM_THREADS"] == "1"          # set by the caller: kept


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(60)
def test_a_torchrun_command_line_runs_as_it_is(launcher, tmp_path):
    """`python -m phalanx.distributed.run` with torchrun's static-rendezvous flags, and the
    role and restart variables torchrun gives its workers."""
    port = _free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "phalanx.distributed.run", "--nnodes=1", "--node_rank=0",
         "--nproc_per_node=2", "--rdzv_backend=static", "--master_addr=127.0.0.1",
         f"--master_port={port}", "--role", "trainer", "--max_restarts=3", HELLO,
         "--out", str(tmp_path)],
        env=launcher.env(), capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in range(2):
        e = json.loads((tmp_path / f"env_{rank}.json").read_text())
        assert e["MASTER_PORT"] == str(port)
        assert (e["ROLE_NAME"], e["ROLE_RANK"], e["ROLE_WORLD_SIZE"]) == ("trainer", str(rank),
                                                                          "2")
        assert (e["TORCHELASTIC_RESTART_COUNT"], e["TORCHELASTIC_MAX_RESTARTS"]) == ("0", "3")


@pytest.mark.timeout(60)
def test_exit_code_propagates_and_summary_names_the_rank(launcher):
    code, out = launcher.run("--nproc-per-node", 2, HELLO, "--exit-rank", 1, "--code", 7)
    assert code == 7, out
    assert "first failure: rank 1 (local_rank 1)" in out and "exit code 7" in out


@pytest.mark.timeout(60)
def test_uncaught_exception_is_summarised_with_its_traceback(launcher, tmp_path):
    code, out = launcher.run("--nproc-per-node", 2, "--log-dir", tmp_path, HELLO,
                                "--raise-rank", 0)
    assert code == 1, out
    summary = out[out.index("first failure"):]
    assert "rank 0" in summary and "RuntimeError: rank 0 raised on purpose" in summary
    assert "hello.py" in summary and "bootstrap" not in summary
    record = json.loads((tmp_path / "attempt_0" / "0" / "error.json").read_text())
    assert record["rank"] == 0 and record["exception"] == "RuntimeError"


@pytest.mark.timeout(60)
def test_restarts_are_bounded_by_max_restarts(launcher):
    code, out = launcher.run("--nproc-per-node", 2, "--max-restarts", 2, HELLO,
                                "--exit-rank", 0, "--code", 3)
    assert code == 3
    assert out.count("worker group failed") == 3 and "no restarts left" in out


@pytest.mark.timeout(60)
def test_log_filter_and_tee(launcher, tmp_path):
    code, out = launcher.run("--nproc-per-node", 2, "--local-ranks-filter", "1", "--tee", 3,
                                "--log-dir", tmp_path, BARRIER)
    assert code == 0, out
    assert "[rank 1]:" in out and "[rank 0]:" not in out
    assert "rank 0 passed" in (tmp_path / "attempt_0" / "0" / "stdout.log").read_text()


@pytest.mark.timeout(60)
def test_module_and_no_python_modes(launcher, tmp_path):
    env = launcher.env(PYTHONPATH=f"{WORKERS}{os.pathsep}{launcher.env()['PYTHONPATH']}")
    code, out = launcher.run("--nproc-per-node", 2, "-m", "hello", env=env)
    assert code == 0 and "hello from rank 1" in out, out
    code, out = launcher.run("--nproc-per-node", 2, "--no-python", sys.executable, HELLO)
    assert code == 0 and "hello from rank 1" in out, out


@pytest.mark.timeout(60)
def test_mpi_mode_runs_through_mpiexec(launcher):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(mpiexec, os.X_OK):
        pytest.skip("no mpiexec next to the Python interpreter")
    code, out = launcher.run("--mpi", "-n", 2, "--max-restarts", 1, "--no-python",
                                sys.executable, "-c", "import sys; sys.exit(5)")
    assert code == 5 and out.count("attempt") == 2, out


def _wait_for_pids(tmp_path, nproc, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = [tmp_path / f"pids_{r}" for r in range(nproc)]
        if all(f.exists() for f in files):
            return [int(p) for f in files for p in f.read_text().split()]
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError("workers did not start")


def _gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_launcher_leaves_no_process_behind(launcher, tmp_path, sig):
    proc = launcher.start("--nproc-per-node", 2, "--grace-period", 1, SLEEPER, tmp_path)
    pids = _wait_for_pids(tmp_path, 2, proc)          # two workers and their children
    proc.send_signal(sig)
    code, out = launcher.finish(proc, timeout=30)
    assert code == 128 + sig, out
    assert _gone(pids), f"survivors: {[p for p in pids if psutil.pid_exists(p)]}"


@pytest.mark.timeout(60)
def test_workers_die_with_a_killed_launcher(launcher, tmp_path):
    proc = launcher.start("--nproc-per-node", 2, SLEEPER, tmp_path)
    pids = _wait_for_pids(tmp_path, 2, proc)          # two workers and their children
    proc.kill()          # no chance to clean up: PDEATHSIG takes the workers, the guardian
    proc.wait()          # the processes they started
    assert _gone(pids), f"orphans: {[p for p in pids if psutil.pid_exists(p)]}"


@pytest.mark.timeout(90)
def test_temporary_log_dirs_are_kept_only_when_they_hold_a_failure(launcher):
    """Without --log-dir the launcher writes under a temporary directory of its own: removed
    after a success and after a failure that left nothing to read, kept (and named) when a
    rank wrote its error file."""
    def left():
        return sorted(p.name for p in launcher.tmp.glob("phalanx-*"))

    code, out = launcher.run("--nproc-per-node", 2, BARRIER)
    assert code == 0 and left() == [], out
    code, out = launcher.run("--nproc-per-node", 2, HELLO, "--exit-rank", 1, "--code", 7)
    assert code == 7 and left() == [], out
    code, out = launcher.run("--nproc-per-node", 2, HELLO, "--raise-rank", 0)
    kept = left()
    assert code == 1 and len(kept) == 1 and str(launcher.tmp / kept[0]) in out, out
    assert list((launcher.tmp / kept[0]).glob("attempt_0/0/error.json"))

    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(mpiexec, os.X_OK):
        return
    code, out = launcher.run("--mpi", "-n", 2, "--no-python", sys.executable, "-c", "pass")
    assert code == 0 and left() == kept, out
    code, out = launcher.run("--mpi", "-n", 2, HELLO, "--raise-rank", 1)
    new = sorted(set(left()) - set(kept))
    assert code != 0 and len(new) == 1 and f"error files are under {launcher.tmp / new[0]}" \
        in out, out
