"""The digits examples, run as scripts: they train, print per-epoch metrics, save a checkpoint
that loads back into the same model, and the CNN reaches 97% test accuracy."""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

import phalanx as px

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
EPOCH_LINE = re.compile(r"epoch +(\d+) +loss ([\d.]+) +train acc ([\d.]+) +test acc ([\d.]+)")


def _run(script, tmp_path, *args):
    ckpt = tmp_path / (script + ".ckpt")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script + ".py"),
                           "--checkpoint", str(ckpt), *args],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    epochs = [tuple(float(v) for v in m.groups()) for m in EPOCH_LINE.finditer(proc.stdout)]
    return epochs, ckpt, proc, time.monotonic() - start


def _module(script):
    if EXAMPLES not in sys.path:  # the examples import their shared module as a sibling
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(script, os.path.join(EXAMPLES, script + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mlp_trains_the_same_with_workers_and_its_checkpoint_loads_back(tmp_path):
    epochs, *_ = _run("digits_mlp", tmp_path, "--epochs", "3", "--no-progress")
    with_workers, ckpt, proc, _ = _run("digits_mlp", tmp_path, "--epochs", "3", "--workers", "2")
    assert with_workers == epochs  # same batches, same numbers, whatever num_workers is
    assert [e[0] for e in epochs] == [1, 2, 3]
    assert epochs[-1][1] < epochs[0][1]  # the loss goes down
    assert epochs[-1][3] > 0.85  # far above chance (0.1) after 3 epochs
    assert "epoch 1/3" in proc.stderr  # the tqdm progress bar
    state = px.load(ckpt)
    assert state["epoch"] == 3 and abs(state["test_accuracy"] - epochs[-1][3]) < 1e-4
    assert set(state) >= {"model", "optimizer", "scheduler", "rng_state"}
    mod = _module("digits_mlp")
    model = mod.build_model()
    model.load_state_dict(state["model"])
    from phalanx.data import DataLoader
    from phalanx.data.datasets import load_digits
    acc = _module("digits_common").accuracy(model, DataLoader(load_digits()[1], batch_size=512))
    assert acc == pytest.approx(state["test_accuracy"])


def test_cnn_reaches_97_percent(tmp_path):
    epochs, ckpt, proc, seconds = _run("digits_cnn", tmp_path, "--no-progress")
    assert len(epochs) == 15
    assert epochs[-1][3] >= 0.97, proc.stdout
    assert px.load(ckpt)["test_accuracy"] >= 0.97
    print(f"digits_cnn: test accuracy {epochs[-1][3]:.4f} in {seconds:.1f}s")


@pytest.mark.timeout(120)
def test_ddp_example_runs_unchanged_as_one_plain_process(tmp_path):
    """`python examples/ddp_digits.py` with no launcher: a world of one (the mpirun and
    `phalanx run` ways are in tests/test_mpi_suites.py and tests/launcher)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "SLURM_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                         "PHALANX_STORE_ENDPOINT")}
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "ddp_digits.py"), "--epochs",
                           "1", "--no-progress", "--checkpoint", str(tmp_path / "d.ckpt")],
                          capture_output=True, text=True, timeout=100, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 rank(s), backend local" in proc.stdout, proc.stdout
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", proc.stdout).group(1))
    assert accuracy > 50 and (tmp_path / "d.ckpt").exists(), proc.stdout
