"""Elastic membership with two agents on this machine (`--nnodes 1:2`): when one agent is
killed, the other notices its silence, restarts its worker with the smaller world and finishes;
when a second agent joins a running one-node job, the group restarts with the larger world."""
import os
import socket
import time

import pytest

from phalanx.distributed.store import Store

LOOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "elastic_loop.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _two_agent_args(port, log, steps):
    return ("--nnodes", "1:2", "--nproc-per-node", 1, "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--rdzv-id", "two-agents", "--max-restarts", 3, "--rdzv-conf",
            "last_call_timeout=1,node_timeout=1.5", LOOP, "--steps", steps, "--log", log)


def _worlds(log):
    return [int(line.split()[1]) for line in log.read_text().split("\n") if line]


@pytest.mark.timeout(90)
def test_surviving_agent_continues_with_the_smaller_world(launcher, tmp_path):
    port, log = _free_port(), tmp_path / "rounds.log"
    env = launcher.env(PHALANX_STORE_TOKEN="elastic-test-token")
    args = _two_agent_args(port, log, 60)
    host = launcher.start(*args, env=env)               # serves the store
    store = Store(f"tcp://127.0.0.1:{port}", "elastic-test-token", timeout=20)
    store.ping()
    guest = launcher.start(*args, env=env)
    _wait_for(lambda: log.exists() and "2\n" in log.read_text(), 30, "a 2-node round")
    _wait_for(lambda: int(store.add("steps_done", 0)) >= 5, 30, "steps in the 2-node world")
    guest.kill()                                        # its worker dies with it (PDEATHSIG)
    code, out = launcher.finish(host, timeout=60)
    assert code == 0, out
    worlds = _worlds(log)
    # a loaded machine may start the guest after the host's one-second last call: the host
    # then runs a 1-node round first; what is tested is the 2 -> 1 shrink after the kill
    assert 2 in worlds and worlds[-1] == 1 and worlds.index(2) < len(worlds) - 1, worlds
    assert "sent no heartbeat" in out or "restarting" in out
    assert "finished with world size 1 after 60 steps" in out
    store.close()


@pytest.mark.timeout(90)
def test_joining_agent_restarts_the_group_with_the_larger_world(launcher, tmp_path):
    port, log = _free_port(), tmp_path / "rounds.log"
    env = launcher.env(PHALANX_STORE_TOKEN="elastic-test-token")
    args = _two_agent_args(port, log, 120)
    host = launcher.start(*args, env=env)               # alone: forms a 1-node world
    store = Store(f"tcp://127.0.0.1:{port}", "elastic-test-token", timeout=20)
    _wait_for(lambda: log.exists() and _worlds(log)[:1] == [1], 30, "a 1-node round")
    _wait_for(lambda: int(store.add("steps_done", 0)) >= 5, 30, "steps in the 1-node world")
    guest = launcher.start(*args, env=env)
    code, out = launcher.finish(host, timeout=60)
    guest_code, guest_out = launcher.finish(guest, timeout=30)
    assert code == 0 and guest_code == 0, out + guest_out
    assert _worlds(log)[0] == 1 and _worlds(log)[-1] == 2, _worlds(log)
    assert "finished with world size 2 after 120 steps" in out
    store.close()
