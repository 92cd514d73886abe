"""Fault tolerance end to end on the real stack (zmq process group, DDP, SGD with momentum,
DistributedSampler, dropout): a rank that exits, is killed with SIGKILL, or hangs mid-step makes
the launcher restart the group, which resumes from the last commit (`elastic.State`) and ends
with bitwise the weights of an uninterrupted run."""
import os

import numpy as np
import pytest

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "train.py")


def train(launcher, tmp_path, name, *extra, launcher_args=()):
    out = tmp_path / f"{name}.npy"
    code, log = launcher.run("--nproc-per-node", 2, "--max-restarts", 1, *launcher_args, TRAIN,
                             "--steps", 12, "--ckpt", tmp_path / f"{name}.px", "--out", out,
                             *extra, timeout=90)
    assert code == 0, log
    assert "finished 12 steps on 2 ranks (zmq)" in log, log
    return np.load(out), log


@pytest.fixture
def reference(launcher, tmp_path):
    weights, _ = train(launcher, tmp_path, "reference")
    return weights


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["exit", "kill"])
def test_failed_rank_restarts_and_resumes_to_identical_weights(launcher, tmp_path, reference,
                                                               mode):
    weights, log = train(launcher, tmp_path, mode, "--fail-rank", 1, "--fail-step", 5,
                         "--mode", mode)
    assert "restarting (1 of 1 restarts)" in log
    assert "resumed from" in log and "'step': 5" in log
    assert np.array_equal(weights, reference)


@pytest.mark.timeout(120)
def test_hung_rank_is_detected_by_heartbeat(launcher, tmp_path, reference):
    weights, log = train(launcher, tmp_path, "hang", "--fail-rank", 0, "--fail-step", 4,
                         "--mode", "hang", launcher_args=("--progress-timeout", 1.5,
                                                          "--grace-period", 0.5))
    assert "no progress for 1.5 s" in log and "'step': 4" in log
    assert np.array_equal(weights, reference)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step", [0, 5])
def test_stopped_rank_is_declared_dead_named_and_killed_at_once(launcher, tmp_path, reference,
                                                                step):
    """SIGSTOP: the rank's heartbeat thread stops too. At step 0 it has never advanced its
    progress counter (before, the healthy rank that waited for it was blamed). A stopped rank
    cannot act on SIGTERM: it is killed at once, not after the 60 s grace period."""
    import time
    start = time.monotonic()
    weights, log = train(launcher, tmp_path, f"stop{step}", "--fail-rank", 1, "--fail-step",
                         step, "--mode", "stop",
                         launcher_args=("--heartbeat-timeout", 3, "--grace-period", 60))
    assert time.monotonic() - start < 55, log
    assert "first failure: rank 1 (local_rank 1)" in log, log
    assert "sent no heartbeat for 3 s (process stopped" in log, log
    assert np.array_equal(weights, reference)
