"""Running the examples as their users do: `python x.py`, `phalanx run --standalone
--nproc-per-node 2 x.py` and `mpiexec -n 2 python x.py`, each in the test's temporary folder,
under a timeout that kills the whole process tree."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

import phalanx as px

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def _env():
    """No launcher or MPI variables of an outer job; phalanx importable; one BLAS thread."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_", "SLURM_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "RESTART_COUNT",
                         "PHALANX_STORE_ENDPOINT", "PHALANX_STORE_TOKEN")}
    parent = os.path.dirname(os.path.abspath(list(px.__path__)[0]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _kill_tree(pid):
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


class Examples:
    """`python(script, *args)`, `launcher(script, *args)` and `mpiexec(script, *args)` run an
    example with two ranks where it applies, in `folder`, and return its output (stdout and
    stderr together) after checking that it exited 0."""

    def __init__(self, folder):
        self.folder = folder

    def _run(self, command, timeout):
        proc = subprocess.Popen([str(c) for c in command], cwd=self.folder, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            out, _ = proc.communicate()
            pytest.fail(f"{' '.join(map(str, command))} ran over {timeout} s:\n{out[-5000:]}")
        finally:
            _kill_tree(proc.pid)
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-5000:]}"
        return out

    def python(self, script, *args, timeout=120):
        return self._run([sys.executable, EXAMPLES / script, "--no-progress", *args], timeout)

    def launcher(self, script, *args, timeout=120):
        return self._run([sys.executable, "-m", "phalanx.launcher", "run", "--standalone",
                          "--nproc-per-node", 2, EXAMPLES / script, "--no-progress", *args],
                         timeout)

    def mpiexec(self, script, *args, timeout=120):
        if MPIEXEC is None:
            pytest.fail("mpiexec is not next to the interpreter: pip install 'phalanx[test]'")
        return self._run([MPIEXEC, "-n", 2, sys.executable, EXAMPLES / script, "--no-progress",
                          *args], timeout)

    @staticmethod
    def module(script):
        """Import an example as a module (its folder on the path for its sibling imports)."""
        if str(EXAMPLES) not in sys.path:
            sys.path.insert(0, str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(Path(script).stem, EXAMPLES / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def resume_matches_uninterrupted(self, way, script, *args, stop_after=1):
        """Run `script` interrupted after epoch `stop_after` and resumed, and uninterrupted,
        `way` (`python`, `launcher` or `mpiexec`); check that both end in identical checkpoints
        and print identical last epochs. Returns the outputs (interrupted, resumed)."""
        run = getattr(self, way)
        first = run(script, *args, "--checkpoint", "resumed.ckpt", "--stop-after", stop_after)
        assert f"stopping after epoch {stop_after} as asked" in first, first[-3000:]
        second = run(script, *args, "--checkpoint", "resumed.ckpt", "--resume")
        assert f"resumed from resumed.ckpt after epoch {stop_after}" in second, second[-3000:]
        straight = run(script, *args, "--checkpoint", "straight.ckpt")
        resumed, expected = (px.load(self.folder / name) for name in ("resumed.ckpt",
                                                                       "straight.ckpt"))
        assert_same_state(resumed, expected)
        assert _epoch_lines(second)[-1] == _epoch_lines(straight)[-1], (second, straight)
        return first, second


def _epoch_lines(out):
    """The per-epoch report lines without their timings."""
    return [re.sub(r"[\d.]+ s\)", "s)", line) for line in out.splitlines()
            if re.match(r"(\[rank 0\]: )?epoch \d+:", line)]


def assert_same_state(got, expected, where="checkpoint"):
    """Two checkpoint trees are equal: the same keys and, bit for bit, the same values."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), (where, set(got) ^
                                                                     set(expected))
        for key in expected:
            assert_same_state(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_state(g, e, f"{where}[{i}]")
    elif isinstance(expected, (px.Tensor, np.ndarray)):
        g = got.numpy() if isinstance(got, px.Tensor) else got
        e = expected.numpy() if isinstance(expected, px.Tensor) else expected
        assert g.dtype == e.dtype and np.array_equal(g, e), f"{where} differs"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


@pytest.fixture
def examples(tmp_path):
    return Examples(tmp_path)
