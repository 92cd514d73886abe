"""`phalanx run` across hosts with network stacks, /dev/shm and hostnames of their own."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).parent / "workers" / "ddp_equiv.py"
pytestmark = pytest.mark.timeout(300)


def _reference(tmp_path):
    """The same training as one plain process on the whole batch."""
    out = tmp_path / "one.npy"
    subprocess.run([sys.executable, WORKER, "--out", out], check=True, timeout=120,
                   capture_output=True, env={"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return np.load(out)


def _two_hosts(job, endpoint, out, run_id):
    procs = [job.phalanx_run(h, "--nnodes", 2, "--nproc-per-node", 2, "--rdzv-endpoint",
                             endpoint, "--rdzv-id", run_id, WORKER, "--out", out)
             for h in ("h0", "h1")]
    return [job.finish(p) for p in procs]


def test_hosts_are_separate_machines(cluster):
    h0, h1 = cluster.host("h0"), cluster.host("h1")
    names = [h.run(["hostname"], capture_output=True, text=True).stdout.strip() for h in (h0, h1)]
    assert names == ["h0", "h1"]
    h0.run(["touch", "/dev/shm/phalanx-test-only-h0"], check=True)
    assert h0.run(["test", "-e", "/dev/shm/phalanx-test-only-h0"]).returncode == 0
    assert h1.run(["test", "-e", "/dev/shm/phalanx-test-only-h0"]).returncode != 0
    assert not Path("/dev/shm/phalanx-test-only-h0").exists()
    h0.run(["rm", "/dev/shm/phalanx-test-only-h0"], check=True)


@pytest.mark.parametrize("endpoint", ["name", "address"])
def test_ddp_across_two_hosts_equals_one_process(job, tmp_path, endpoint):
    """2 hosts x 2 ranks train to the weights of one process on the concatenated batch, through
    the hierarchical shared-memory all-reduce on both hosts; the endpoint may be the head's
    host name or its own address (the usual $HEAD_IP:29500), and in either case the head agent
    serves the store. Three runs in a row: no agent is stranded at shutdown."""
    host = "h0" if endpoint == "name" else job.cluster.host("h0").address
    expected = _reference(tmp_path)
    for attempt in range(3):
        out = tmp_path / f"ddp{attempt}.npy"
        start = time.monotonic()
        results = _two_hosts(job, f"{host}:29500", out, f"eq{endpoint}{attempt}")
        for code, log in results:
            assert code == 0, log[-4000:]
        assert time.monotonic() - start < 60, results[1][1][-3000:]
        lines = [l.split("]: ")[-1].split() for _, log in results for l in log.splitlines()
                 if "]: path " in l]
        # ranks go to hosts by arrival; each host runs two, and all four took the hierarchy
        assert sorted(l[1] for l in lines) == ["0", "1", "2", "3"], results
        assert sorted((l[2], l[3]) for l in lines) == [
            ("h0", "hierarchical")] * 2 + [("h1", "hierarchical")] * 2, results
        np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-9)
        # the ranks' transport listens only on the interface that reaches the rendezvous
        listen = [l.split("]: ")[-1].split() for _, log in results for l in log.splitlines()
                  if "]: listen " in l]
        addresses = {h.name: h.address for h in job.cluster.hosts}
        assert len(listen) == 4 and all(ips == addresses[host] for _, _, host, ips in listen), \
            listen


def test_agent_says_when_nobody_serves_the_store_and_exits_on_sigterm(job):
    """An agent pointed at a host where no agent runs says so within seconds, and SIGTERM ends
    it at once (it used to wait silently for the 600 s join timeout, and ignore SIGTERM)."""
    proc = job.phalanx_run("h1", "--nnodes", 2, "--nproc-per-node", 1, "--rdzv-endpoint",
                           "h0:29511", "--rdzv-id", "lonely", WORKER, "--out", "/dev/null")
    lines, start = [], time.monotonic()
    while time.monotonic() - start < 15:
        line = proc.stdout.readline()
        lines.append(line)
        if "nobody serves the store at tcp://h0:29511" in line:
            break
    else:
        pytest.fail("no word about the missing store within 15 s:\n" + "".join(lines))
    assert time.monotonic() - start < 8
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)     # `timeout` passes it on to the agent
    code, out = job.finish(proc, timeout=30)
    assert time.monotonic() - sent < 8, out
    assert code == 128 + signal.SIGTERM, "".join(lines) + out
