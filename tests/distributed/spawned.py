"""Real worker processes for the launcher-less tests: a clean environment (no launcher's
variables, a private XDG_RUNTIME_DIR for token files), a free loopback port, and a runner that
kills every worker (and its children) when the test fails or times out."""
import os
import socket
import subprocess
import sys

import psutil

import phalanx


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp_path, **extra):
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI", "SLURM_", "PHALANX_", "MPI_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                         "MASTER_PORT")}
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", XDG_RUNTIME_DIR=str(runtime),
               PYTHONPATH=os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")])))
    env.update(extra)
    return env


def run_workers(tmp_path, source, argvs, env, timeout=60):
    """Run `source` once per argument list of `argvs`; (return codes, outputs)."""
    script = tmp_path / "worker.py"
    script.write_text(source)
    procs = [subprocess.Popen([sys.executable, str(script), *map(str, argv)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for argv in argvs]
    return join(procs, timeout)


def join(procs, timeout):
    """Wait for every process; (return codes, outputs). None outlives a failure or timeout."""
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                for child in psutil.Process(p.pid).children(recursive=True):
                    child.kill()
                p.kill()
                p.wait()
    return [p.returncode for p in procs], outs
