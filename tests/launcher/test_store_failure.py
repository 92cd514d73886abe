"""The launcher's store under poison requests: the job finishes as if nothing happened, and if
the store's thread dies anyway the agent fails at once with a clear message (no waiting out
the join timeout, signals honoured)."""
import os
import threading
import time

import pytest

from phalanx.distributed.store import Store, StoreServer
from phalanx.launcher.agent import Agent, AgentState, RestartBudget
from phalanx.launcher.rendezvous import RendezvousConfig, StoreRendezvous
from phalanx.launcher.workers import GroupStatus, WorkerState

POISON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "store_poison.py")


@pytest.mark.timeout(60)
def test_poison_requests_leave_the_job_finishing_promptly(launcher):
    start = time.monotonic()
    code, out = launcher.run("--nproc-per-node", 2, POISON, timeout=45)
    assert code == 0, out
    assert time.monotonic() - start < 30, out
    for rank in range(2):
        assert f"rank {rank}: the store survived" in out, out
    assert "client refused: store timeout must be a finite number of seconds" in out, out
    assert "key must be a str, got bytes b'bytes-key'" in out, out


class HealthyWorkers:
    def __init__(self):
        self.stopped = threading.Event()

    def start(self, assignment):
        pass

    def poll(self):
        return GroupStatus(WorkerState.HEALTHY)

    def stop(self):
        self.stopped.set()


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_agent_fails_at_once_when_its_store_thread_dies(monkeypatch):
    server = StoreServer().start()
    store = Store(server.endpoint, server.token, timeout=600, local_server=server)
    rendezvous = StoreRendezvous(store, "job", 1, RendezvousConfig(join_timeout=600))
    workers, logs = HealthyWorkers(), []
    agent = Agent(workers, rendezvous, RestartBudget(3), monitor_interval=0.01,
                  log=logs.append)
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=agent.run()))
    thread.start()
    deadline = time.monotonic() + 10
    while agent.state is not AgentState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)

    def broken(*_):
        raise MemoryError("simulated")
    monkeypatch.setattr(server, "_poll_ms", broken)
    killed = time.monotonic()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - killed < 3
    assert result["r"].state is AgentState.FAILED and workers.stopped.is_set()
    assert any("lost the rendezvous store" in m and "stopped serving" in m
               and "MemoryError: simulated" in m for m in logs), logs
    store.close()
    server.close()
