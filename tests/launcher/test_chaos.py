"""Chaos: a 2-rank elastic job (`phalanx run --max-restarts`, resuming through `elastic.State`
and `px.save`) in which a random rank is SIGKILLed or SIGSTOPped, from outside, at a random
moment of a random step. Every trial must finish with weights bitwise equal to an uninterrupted
run, and leave no process, checkpoint temporary, shared-memory file or log folder behind.

CI runs PHALANX_CHAOS_TRIALS (default 2) trials; the full run is

    PHALANX_CHAOS_TRIALS=20 python -m pytest tests/launcher/test_chaos.py

(about 4-6 s a trial on 2 cores). PHALANX_CHAOS_SEED changes the draws; each trial prints its
plan, so a failure can be replayed.
"""
import glob
import os
import random
import re
import signal
import tempfile
import time

import numpy as np
import psutil
import pytest

from phalanx.distributed import shm_files

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "train.py")
TRIALS = int(os.environ.get("PHALANX_CHAOS_TRIALS", "2"))
SEED = int(os.environ.get("PHALANX_CHAOS_SEED", "0"))
STEPS = 12
STEP_LINE = re.compile(r"rank (\d) pid (\d+) attempt (\d+) committed step (\d+)")


def _job(launcher, tmp_path, name, run_id):
    return launcher.start("--nproc-per-node", 2, "--max-restarts", 3, "--rdzv-id", run_id,
                          "--heartbeat-timeout", 2, "--grace-period", 5, TRAIN,
                          "--steps", STEPS, "--ckpt", tmp_path / f"{name}.px",
                          "--out", tmp_path / f"{name}.npy", "--announce")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, module_launcher):
    tmp_path = tmp_path_factory.mktemp("chaos-reference")
    proc = _job(module_launcher, tmp_path, "reference", f"chaos-ref-{os.getpid()}")
    code, log = module_launcher.finish(proc, timeout=90)
    assert code == 0, log
    return np.load(tmp_path / "reference.npy")


def _strays(pids):
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


@pytest.mark.chaos
@pytest.mark.timeout(60 + 40 * TRIALS)
@pytest.mark.parametrize("trial", range(TRIALS))
def test_random_kill_or_stop_ends_with_the_uninterrupted_weights(launcher, tmp_path, reference,
                                                                  trial):
    rng = random.Random(SEED * 1000 + trial)
    sig = (signal.SIGKILL, signal.SIGSTOP)[trial % 2]          # CI's two trials: one each
    # a random moment of steps 1..STEPS-2: the delay stays well under the two steps left
    victim, step, delay = rng.randrange(2), rng.randrange(1, STEPS - 2), rng.uniform(0, 0.03)
    plan = (f"trial {trial} (seed {SEED}): {sig.name} rank {victim} {delay * 1000:.0f} ms "
            f"after it committed step {step}")
    print(plan)
    run_id = f"chaos-{os.getpid()}-{trial}"
    start = time.monotonic()
    proc = _job(launcher, tmp_path, "chaos", run_id)
    pids, lines, sent = set(), [], False
    for line in proc.stdout:
        lines.append(line)
        m = STEP_LINE.search(line)
        if not m:
            continue
        rank, pid, attempt, at = map(int, m.groups())
        pids.add(pid)
        if not sent and attempt == 0 and rank == victim and at >= step:
            time.sleep(delay)                  # anywhere in the next step, its save included
            os.kill(pid, sig)
            sent = True
    code = proc.wait(timeout=60)
    log = "".join(lines)
    assert code == 0, f"{plan}\n{log}"
    assert sent, f"{plan}: never reached step {step}\n{log}"
    assert "restarting (1 of 3 restarts)" in log, f"{plan}\n{log}"
    if sig is signal.SIGSTOP:
        assert f"first failure: rank {victim}" in log and "sent no heartbeat" in log, log
    assert np.array_equal(np.load(tmp_path / "chaos.npy"), reference), plan
    # nothing left behind: processes, checkpoint temporaries, shared memory, logs
    time.sleep(0.2)
    assert not _strays(pids), f"{plan}: still running: {_strays(pids)}"
    assert sorted(os.listdir(tmp_path)) == ["chaos.npy", "chaos.px"], plan
    assert not [f for f in os.listdir(shm_files.DIRECTORY)
                if (shm_files.owner(f) or (0, ""))[0] in pids], plan
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"phalanx-{run_id}-*")), plan
    print(f"{plan}: passed in {time.monotonic() - start:.1f} s")
