"""`phalanx run --mpi -n N script ...`: run the job through mpiexec, restart it on failure.

MPI owns the ranks (and their environment), so there is no rendezvous and no heartbeat here:
a failure is mpiexec's exit status, and a restart is a fresh mpiexec, which resumes from the
last checkpoint the script's `elastic.State` committed (`RESTART_COUNT` tells it which attempt
it is in). Each rank still runs through the bootstrap, so it dies with the launcher and writes
an error file the summary can show.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .agent import SignalReceived
from .bootstrap import AGENT_PID_ENV
from .errors import ERROR_FILE_ENV, Failure, describe_exit, format_summary, read_error_file, \
    tidy_log_dir
from ..distributed import shm_files
from ..distributed.threads import THREAD_ENV_VARS, threads_per_rank
from .workers import BOOTSTRAP


def find_mpiexec(config):
    candidates = [config.mpiexec, os.path.join(os.path.dirname(sys.executable), "mpiexec"),
                  shutil.which("mpiexec"), shutil.which("mpirun")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit("phalanx run --mpi: no mpiexec found; install MPI (pip install mpich) or "
                     "pass --mpiexec PATH")


def mpi_command(config, mpiexec):
    np_ = config.np or config.nproc_per_node
    if config.no_python:
        target = list(config.entrypoint)
    else:
        target = [sys.executable, BOOTSTRAP] + (["-m"] if config.module else []) + \
            list(config.entrypoint)
    return [mpiexec, "-n", str(np_), *target]


def launch_mpi(config):
    mpiexec = find_mpiexec(config)
    command = mpi_command(config, mpiexec)
    log_dir = config.log_dir or tempfile.mkdtemp(prefix="phalanx-mpi-")
    code = 1
    try:
        code = _attempts(config, command, log_dir)
    finally:
        if tidy_log_dir(log_dir, bool(config.log_dir), code == 0) and code != 0:
            print(f"[phalanx] error files are under {log_dir}", file=sys.stderr, flush=True)
    return code


def _attempts(config, command, log_dir):
    """Run mpiexec until it succeeds or the restarts are spent; returns the exit code."""
    for attempt in range(config.max_restarts + 1):
        error_dir = os.path.join(log_dir, f"attempt_{attempt}")
        os.makedirs(error_dir, exist_ok=True)
        env = dict(os.environ, RESTART_COUNT=str(attempt), PHALANX_RUN_ID=config.run_id,
                   PYTHONUNBUFFERED=os.environ.get("PYTHONUNBUFFERED", "1"))
        # the rank is only known inside the worker: the bootstrap's error file is per pid
        env[ERROR_FILE_ENV] = os.path.join(error_dir, "error-{pid}.json")
        env.pop(AGENT_PID_ENV, None)       # mpiexec, not we, is the ranks' parent
        # cores ÷ ranks, as for our own workers: BLAS threads fighting MPI's busy-polling for
        # the same cores make a step tens of times slower
        threads = str(threads_per_rank(int(config.np or config.nproc_per_node)))
        for name in THREAD_ENV_VARS:
            env.setdefault(name, threads)
        started = time.time()
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            code = proc.wait()
        except SignalReceived as e:
            _stop(proc, config.grace_period)
            return 128 + e.signum
        shm_files.remove_orphans(config.run_id)     # of ranks killed in DDP's bucket setup
        if code != 0:                                # an aborted MPICH job leaves its own
            shm_files.remove_mpich_leftovers(started - 1)
        if code == 0:
            return 0
        errors = [read_error_file(p) for p in glob.glob(os.path.join(error_dir, "error-*.json"))]
        failures = [Failure(e["rank"], e["local_rank"], describe_exit(code), code, e["pid"],
                            e["host"], e) for e in errors if e] or \
            [Failure(-1, -1, f"mpiexec {describe_exit(code)}", code, proc.pid)]
        left = config.max_restarts - attempt
        print(format_summary(failures, f"phalanx run --mpi: attempt {attempt} failed; "
                                       f"{'restarting' if left else 'no restarts left'}"),
              file=sys.stderr, flush=True)
        if not left:
            return code if code > 0 else 128 - code
    return 1


def _stop(proc, grace):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            return
