"""The README's main job, end to end under the launcher: `phalanx run --standalone
--nproc-per-node 2 examples/ddp_digits.py` trains over the zmq backend, shows rank 0's progress
bar and ends with the test accuracy; `phalanx run --mpi -n 2` runs the same script through the
mpiexec found next to the interpreter, with BLAS threads set to cores ÷ ranks."""
import os
import re
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "ddp_digits.py")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def _accuracy(out):
    found = re.search(r"\[rank 0\]: final test accuracy: ([\d.]+)%|^final test accuracy: "
                      r"([\d.]+)%", out, flags=re.M)
    assert found, out[-5000:]
    return float(found.group(1) or found.group(2)) / 100


@pytest.mark.timeout(120)
def test_standalone_two_ranks_train_over_zmq_to_95_percent(launcher, tmp_path):
    code, out = launcher.run("--standalone", "--nproc-per-node", 2, SCRIPT, "--checkpoint",
                             tmp_path / "digits.ckpt", timeout=100,
                             env=launcher.env(PHALANX_PROGRESS_INTERVAL=0))
    assert code == 0, out[-5000:]
    assert "[rank 0]: 2 rank(s), backend zmq, global batch 64" in out, out[-5000:]
    # every redraw of the bar is a line of its own (text mode reads its \r as a newline; the
    # launcher keeps every redraw in a log with PHALANX_PROGRESS_INTERVAL=0)
    redraws = re.findall(r"^\[rank 0\]: epoch 1/6: +\d+%\|", out, flags=re.M)
    assert len(redraws) > 2, out[-3000:]
    assert "[rank 1]: epoch" not in out                       # only rank 0 reports
    assert "[rank 0]: epoch 6: loss" in out
    assert _accuracy(out) >= 0.95, out[-3000:]


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.access(MPIEXEC, os.X_OK), reason="no mpiexec next to the interpreter")
def test_mpi_mode_runs_the_same_script(launcher, tmp_path):
    env = launcher.env()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not os.path.exists(os.path.join(p, "mpiexec")))
    code, out = launcher.run("--mpi", "-n", 2, SCRIPT, "--epochs", 1, "--no-progress",
                             "--checkpoint", tmp_path / "digits.ckpt", env=env, timeout=100)
    assert code == 0, out[-5000:]
    assert "2 rank(s), backend mpi" in out, out[-5000:]
    assert _accuracy(out) > 0.5                               # one epoch; chance is 0.1
    code, out = launcher.run("--mpi", "-n", 2, "--no-python", sys.executable, "-c",
                             "import os; os.write(1, ('threads %s %s\\n' % (os.environ["
                             "'OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'])).encode())",
                             env=env)   # one write per rank: the two ranks share the console
    threads = max(1, os.cpu_count() // 2)
    assert code == 0 and out.count(f"threads {threads} {threads}") == 2, out
