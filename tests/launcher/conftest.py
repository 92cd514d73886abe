"""Helpers for tests that start real launchers: every process they start is killed (with its
whole tree) when the test ends, pass or fail."""
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import phalanx

WORKERS = Path(__file__).parent / "workers"


def pytest_configure(config):
    config.addinivalue_line("markers", "chaos: random kills and stops of a training job "
                                       "(PHALANX_CHAOS_TRIALS sets how many; 2 by default)")


def child_env(**extra):
    """The environment for launchers and workers: phalanx importable, one BLAS thread."""
    env = dict(os.environ)
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def kill_tree(pid):
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def finish(proc, timeout=60):
    """Wait for a launcher; returns (exit code, its output)."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


class Launcher:
    """What the tests use (conftest is not importable under --import-mode=importlib):
    `start(*run_args, env=None) -> Popen` of `phalanx run ...` with stdout+stderr piped,
    `finish(proc)`, `env(**extra)`, `workers` (the worker scripts' folder), `kill_tree(pid)`."""
    workers = WORKERS
    env = staticmethod(child_env)
    finish = staticmethod(finish)
    kill_tree = staticmethod(kill_tree)

    def __init__(self, tmp):
        self.started = []
        self.tmp = tmp

    def start(self, *args, env=None, stdout=subprocess.PIPE):
        # the launchers' own temporary files (the logs of a failed run, which they keep) go
        # under pytest's temporary tree, not /tmp
        env = dict(env or child_env(), TMPDIR=str(self.tmp))
        proc = subprocess.Popen([sys.executable, "-m", "phalanx.launcher", "run", *map(str, args)],
                                env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)
        self.started.append(proc)
        return proc

    def run(self, *args, env=None, timeout=60):
        return finish(self.start(*args, env=env), timeout)


def _launchers(tmp):
    helper = Launcher(tmp)
    yield helper
    for proc in helper.started:
        kill_tree(proc.pid)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def launcher(tmp_path_factory):
    """A `Launcher`; every process it started is killed, with its tree, after the test."""
    yield from _launchers(tmp_path_factory.mktemp("launcher"))


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory):
    """The same, for module-scoped fixtures (a reference run shared by several tests)."""
    yield from _launchers(tmp_path_factory.mktemp("launcher"))
