"""Elastic membership across hosts: a host joins a running job, a whole host dies, and a host's
link goes down and comes back. Survivors restart at the new size and resume bitwise from the
last checkpoint (the digest of the restored parameters and optimizer state equals the one rank 0
printed when it committed that step)."""
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "workers" / "elastic_train.py"
pytestmark = pytest.mark.timeout(300)


class Output:
    """Collects the output lines of the agents of one job on threads, all into one list (rank 0
    moves between hosts as the membership changes), so a test can wait for a line."""

    def __init__(self):
        self.lines, self.procs, self._threads = [], [], []

    def add(self, proc):
        self.procs.append(proc)
        t = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")),
                             daemon=True)
        t.start()
        self._threads.append(t)
        return proc

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + self.text())

    def finish(self, procs, timeout=120):
        """The exit codes of `procs`, once they ended."""
        for p in procs:
            p.wait(timeout)
        return [p.returncode for p in procs]

    def text(self):
        return "".join(self.lines)


def _agent(job, out, host, tmp_path, steps, run_id):
    return out.add(job.phalanx_run(
        host, "--nnodes", "1:3", "--nproc-per-node", 1, "--rdzv-endpoint", "h0:29600",
        "--rdzv-id", run_id, "--max-restarts", 5,
        "--rdzv-conf", "node_timeout=3,last_call_timeout=1", WORKER,
        "--ckpt", tmp_path / "state.px", "--steps", steps, seconds=240))


def _check_resumes(text):
    """Every resume after step 0 restored exactly what was committed at that step."""
    commits = dict(re.findall(r"commit (\d+) (\w+)", text))
    resumes = re.findall(r"resume (\d+) (\d+) (\d+) (\w+)", text)
    later = [(rnd, world, step, d) for rnd, world, step, d in resumes if step != "0"]
    for rnd, world, step, d in later:
        assert commits.get(step) == d, f"round {rnd} resumed step {step} as {d}, committed " \
                                       f"{commits.get(step)}"
    return [(int(world), int(step)) for _, world, step, _ in resumes]


def _kill_host(host):
    for pid in host.pids():
        if pid != host.anchor:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_host_joins_then_dies_and_survivors_resume_bitwise(job, tmp_path):
    out = Output()
    survivors = [_agent(job, out, h, tmp_path, 70, "grow") for h in ("h0", "h1")]
    out.wait_for(r"commit 5 ")
    _agent(job, out, "h2", tmp_path, 70, "grow")
    out.wait_for(r"resume \d+ 3 [1-9]")                   # the group grew to three hosts
    time.sleep(1.5)
    _kill_host(job.cluster.host("h2"))                    # every process of the host, at once
    out.wait_for(r"resume \d+ 2 [1-9]", 60)               # the survivors went on without it
    assert out.finish(survivors, 180) == [0, 0], out.text()[-4000:]
    worlds = [w for w, _ in _check_resumes(out.text())]
    assert worlds[0] == 2 and 3 in worlds and worlds[-1] == 2, worlds
    assert "finished 70 steps on 2 ranks" in out.text(), out.text()[-3000:]


def test_link_down_and_back_does_not_hang(job, tmp_path):
    out = Output()
    agents = [_agent(job, out, h, tmp_path, 60, "link") for h in ("h0", "h1")]
    out.wait_for(r"commit 5 ")
    host = job.cluster.host("h1")
    host.set_link(False)
    try:
        out.wait_for(r"resume \d+ 1 [1-9]", 60)           # h0 went on alone
    finally:
        host.set_link(True)
    out.wait_for(r"resume \d+ 2 [1-9]", 90)               # and h1 came back
    assert out.finish(agents, 180) == [0, 0], out.text()[-4000:]
    _check_resumes(out.text())
