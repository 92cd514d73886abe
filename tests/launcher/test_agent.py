"""The agent's state machine, restart budget, heartbeat bookkeeping and CLI, with fakes: no
processes, no sockets."""
import os

import pytest

from phalanx.launcher.agent import Agent, AgentState, RestartBudget, SignalReceived
from phalanx.launcher.cli import build_parser, config_from_args
from phalanx.launcher.errors import Failure, first_failure, format_summary
from phalanx.launcher.monitor import HeartbeatTracker
from phalanx.launcher.rendezvous import Assignment, RendezvousError
from phalanx.launcher.workers import GroupStatus, WorkerSpec, WorkerState, worker_env

S = AgentState


def assignment(round_=0, restarts=0):
    return Assignment(round_, 0, 1, 2, 0, restarts, "tcp://127.0.0.1:1", "t", "127.0.0.1", 1)


class FakeWorkers:
    """Plays a script of poll results per attempt; records starts and stops."""

    def __init__(self, attempts):
        self.attempts = [list(a) for a in attempts]
        self.started, self.stops = [], 0

    def start(self, assignment):
        self.started.append(assignment)
        self.script = self.attempts[len(self.started) - 1]

    def poll(self):
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self):
        self.stops += 1


class FakeRendezvous:
    """A one-node rendezvous with a job-wide restart counter; `peer_reasons` scripts
    restart_reason() answers."""

    def __init__(self, peer_reasons=(), fail_rendezvous_at=None):
        self.round, self.restarts = 0, 0
        self.peer_reasons = list(peer_reasons)
        self.fail_at = fail_rendezvous_at
        self.events = []

    def next_round(self):
        if self.round == self.fail_at:
            raise RendezvousError("not enough nodes")
        self.events.append(("round", self.round))
        return assignment(self.round, self.restarts)

    def restart_reason(self):
        if self.peer_reasons:
            reason = self.peer_reasons.pop(0)
            if reason:
                self.round += 1
            return reason
        return None

    def report_failure(self):
        self.restarts += 1
        self.round += 1
        self.events.append(("failure", self.restarts))
        return self.restarts

    def report_success(self):
        self.events.append(("success",))

    def shutdown(self, reason):
        self.events.append(("shutdown", reason))


HEALTHY = GroupStatus(WorkerState.HEALTHY)
DONE = GroupStatus(WorkerState.SUCCEEDED)


def failed(rank=1, code=1):
    return GroupStatus(WorkerState.FAILED, [Failure(rank, rank, f"exit code {code}", code, 100)])


def make(attempts, max_restarts=0, **rdzv):
    workers, rendezvous = FakeWorkers(attempts), FakeRendezvous(**rdzv)
    agent = Agent(workers, rendezvous, RestartBudget(max_restarts), monitor_interval=0,
                  log=lambda msg: None, sleep=lambda s: None)
    return agent, workers, rendezvous


def test_success_path():
    agent, workers, rdzv = make([[HEALTHY, HEALTHY, DONE]])
    result = agent.run()
    assert result.state is S.SUCCEEDED and result.exit_code == 0
    assert result.history == [S.INIT, S.RENDEZVOUS, S.RUNNING, S.SUCCEEDED]
    assert workers.stops == 1 and rdzv.events[-1] == ("success",)


def test_failure_restarts_within_budget_then_succeeds():
    agent, workers, rdzv = make([[HEALTHY, failed()], [HEALTHY, DONE]], max_restarts=1)
    result = agent.run()
    assert result.state is S.SUCCEEDED and result.restarts == 1
    assert result.history == [S.INIT, S.RENDEZVOUS, S.RUNNING, S.RESTARTING, S.RENDEZVOUS,
                              S.RUNNING, S.SUCCEEDED]
    assert [a.restart_count for a in workers.started] == [0, 1]
    assert workers.stops == 2


def test_budget_spent_fails_with_the_first_failures_exit_code():
    agent, workers, rdzv = make([[failed(code=3)], [failed(code=3)]], max_restarts=1)
    result = agent.run()
    assert result.state is S.FAILED and result.exit_code == 3
    assert len(workers.started) == 2
    assert rdzv.events[-1][0] == "shutdown"


def test_killed_worker_exit_code_is_128_plus_signal():
    agent, _, _ = make([[failed(code=-9)]])
    assert agent.run().exit_code == 137


def test_peer_restart_does_not_spend_the_budget():
    agent, workers, rdzv = make([[HEALTHY], [DONE]], max_restarts=0,
                                peer_reasons=[None, "node 1 left"])
    result = agent.run()
    assert result.state is S.SUCCEEDED and result.restarts == 0
    assert S.RESTARTING in result.history and len(workers.started) == 2


def test_signal_stops_workers_and_shuts_the_job_down():
    agent, workers, rdzv = make([[HEALTHY, SignalReceived(15)]])
    result = agent.run()
    assert result.state is S.STOPPED and result.exit_code == 143
    assert workers.stops == 1 and rdzv.events[-1][0] == "shutdown"


def test_rendezvous_failure_fails_the_agent():
    agent, workers, _ = make([[DONE]], fail_rendezvous_at=0)
    result = agent.run()
    assert result.state is S.FAILED and workers.started == []


def test_restart_budget():
    budget = RestartBudget(2)
    assert budget.allows(0) and budget.allows(2) and not budget.allows(3)


def test_progress_tracker_flags_only_ranks_that_stopped():
    now = [0.0]
    tracker = HeartbeatTracker(liveness_timeout=0, progress_timeout=5, clock=lambda: now[0])
    tracker.expect({0: 100, 1: 101, 2: 102})
    tracker.beat(0, 100, 1)
    tracker.beat(1, 101, 1)
    tracker.beat(2, 102, 0)                   # alive, never advanced
    tracker.beat(1, 999, 7)                   # an old worker's pid: ignored
    now[0] = 4
    tracker.beat(0, 100, 2)                   # rank 0 progresses, rank 1 does not
    now[0] = 6
    assert tracker.stuck() == [1]             # rank 2 never advanced: not judged
    assert tracker.dead() == []               # liveness off
    assert HeartbeatTracker(0, 0).stuck() == []


def test_liveness_flags_ranks_whose_beats_stop_also_before_the_first():
    now = [100.0]
    tracker = HeartbeatTracker(liveness_timeout=30, progress_timeout=0, clock=lambda: now[0])
    tracker.expect({0: 10, 1: 11, 2: 12})
    tracker.beat(0, 10, 0)
    tracker.beat(1, 11, 0)
    now[0] = 125
    tracker.beat(0, 10, 0)                    # rank 1 stops beating, rank 2 never started
    assert tracker.dead() == [] and tracker.last_beat(2) is None
    now[0] = 131
    assert tracker.dead() == [1, 2]
    assert tracker.last_beat(0) == 6 and tracker.stuck() == []


def test_a_hung_rank_is_named_before_the_peer_that_gave_up_waiting():
    gave_up = Failure(0, 0, "exit code 1", 1, 10, error={"timestamp": 1.0, "traceback": "T"})
    stopped = Failure(1, 1, "sent no heartbeat for 30 s", None, 11, hung=True)
    assert first_failure([gave_up, stopped]) is stopped


def test_timeout_defaults_and_environment(monkeypatch):
    config = config_from_args(build_parser().parse_args(["run", "train.py"]))
    assert (config.heartbeat_timeout, config.progress_timeout) == (30.0, 1800.0)
    monkeypatch.setenv("PHALANX_HEARTBEAT_TIMEOUT", "7")
    monkeypatch.setenv("PHALANX_PROGRESS_TIMEOUT", "0")
    config = config_from_args(build_parser().parse_args(["run", "train.py"]))
    assert (config.heartbeat_timeout, config.progress_timeout) == (7.0, 0.0)
    spec = WorkerSpec(["train.py"], 1, heartbeat_timeout=30.0)
    env = worker_env(spec, assignment(), 0, "/tmp/e.json", "tcp://127.0.0.1:1")
    assert env["PHALANX_HEARTBEAT_INTERVAL"] == "1.0"           # 30 beats per timeout


def test_summary_names_the_first_failure():
    late = Failure(0, 0, "exit code 1", 1, 10, error={"timestamp": 20.0, "traceback": "B"})
    early = Failure(3, 1, "exit code 1", 1, 11, error={"timestamp": 10.0, "traceback": "Tb A"})
    assert first_failure([late, early]) is early
    text = format_summary([late, early], "header")
    assert "rank 3" in text and "Tb A" in text and "rank 0: exit code 1" in text


def parse(*argv):
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_cli_accepts_torchrun_spellings_and_env_fallbacks(monkeypatch):
    c = parse("--nproc_per_node", "3", "--nnodes", "1:4", "--max_restarts", "2", "t.py", "-x")
    assert (c.nproc_per_node, c.min_nodes, c.max_nodes, c.max_restarts) == (3, 1, 4, 2)
    assert c.entrypoint == ["t.py", "-x"] and c.rdzv_port == 29500
    monkeypatch.setenv("PHALANX_NPROC_PER_NODE", "5")
    monkeypatch.setenv("PHALANX_MAX_RESTARTS", "7")
    c = parse("--rdzv-endpoint", "h:1234", "--rdzv-conf", "node_timeout=3", "t.py")
    assert (c.nproc_per_node, c.max_restarts, c.rdzv_host, c.rdzv_port) == (5, 7, "h", 1234)
    assert c.rdzv_conf == {"node_timeout": 3.0}
    assert parse("--standalone", "t.py").rdzv_port == 0


def test_cli_understands_torchrun_rendezvous_options():
    """torchrun's static rendezvous (--master-addr/--master-port, fixed nodes, --node-rank),
    --rdzv-backend c10d, --shutdown-timeout, --role and --start-method."""
    c = parse("--nnodes", "2", "--node_rank", "1", "--master_addr", "10.0.0.1",
              "--master_port", "29600", "--rdzv_backend", "static", "t.py")
    assert (c.rdzv_host, c.rdzv_port, c.node_rank, c.min_nodes) == ("10.0.0.1", 29600, 1, 2)
    c = parse("--rdzv_backend=c10d", "--rdzv_endpoint=h:1", "--master_addr", "x", "t.py")
    assert (c.rdzv_host, c.rdzv_port) == ("h", 1)          # the endpoint wins
    assert parse("--master-port", "29700", "t.py").rdzv_port == 29700
    c = parse("--shutdown_timeout", "12", "--role", "trainer", "--start-method", "fork", "t.py")
    assert (c.grace_period, c.role) == (12.0, "trainer")


@pytest.mark.parametrize("argv, message", [
    (["--rdzv-backend", "etcd"], "etcd is not needed"),
    (["--rdzv-backend", "static", "--nnodes", "1:2"], "fixed --nnodes"),
    (["--rdzv-backend", "static", "--nnodes", "2"], "--node-rank"),
    (["--numa-binding", "node"], "torchrun's --numa-binding is not supported"),
    (["--run-path"], "processes of their own"),
    (["-r", "3"], None),                      # not even parsed: argparse names it
])
def test_cli_refuses_torchrun_options_it_cannot_honour(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv, "t.py")
    text = str(e.value.code) + capsys.readouterr().err
    assert message is None or message in text, text


@pytest.mark.parametrize("argv", [["--nnodes", "3:2"], ["--nproc-per-node", "0"],
                                  ["--rdzv-endpoint", "nohost"], ["--rdzv-conf", "bogus=1"],
                                  ["--standalone", "--nnodes", "2"]])
def test_cli_rejects_bad_values(argv):
    with pytest.raises(SystemExit):
        parse(*argv, "t.py")


def test_help_documents_every_flag():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for flag in ["--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id",
                 "--standalone", "--max-restarts", "--monitor-interval", "--heartbeat-timeout",
                 "--log-dir", "--tee", "--local-ranks-filter", "--no-python", "--mpi", "-m"]:
        assert flag in text
    assert "PHALANX_NPROC_PER_NODE" in text


def test_nproc_per_node_auto_counts_visible_gpus_else_cpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert parse("--nproc-per-node", "auto", "t.py").nproc_per_node == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    if not os.path.isdir("/proc/driver/nvidia/gpus"):
        assert parse("--nproc-per-node", "auto", "t.py").nproc_per_node == os.cpu_count()


def test_log_prefix_names_the_host_in_multi_node_jobs():
    from phalanx.launcher.logs import rank_prefix
    assert rank_prefix(3) == b"[rank 3]: "
    assert rank_prefix(3, "node7") == b"[node7:rank 3]: "


def test_a_lost_store_after_the_workers_succeeded_keeps_the_success():
    from phalanx.distributed.store import StoreError

    class StoreGone(FakeRendezvous):
        def report_success(self):
            raise StoreError("the store server in this process stopped serving")
    logs = []
    result = Agent(FakeWorkers([[DONE]]), StoreGone(), RestartBudget(0), monitor_interval=0,
                   log=logs.append).run()
    assert result.state is S.SUCCEEDED and result.exit_code == 0
    assert any("workers succeeded, but" in m and "stopped serving" in m for m in logs), logs


def test_an_endpoint_naming_this_host_is_recognised_however_it_is_written():
    """The agent serves the store when the endpoint is this machine: loopback (IPv6 in
    brackets too, as in "[::1]:29500"), its name, or an address of one of its interfaces."""
    import socket

    import psutil

    from phalanx.launcher.launch import _is_local
    mine = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET]
    for host in ["127.0.0.1", "::1", "[::1]", "localhost", socket.gethostname(), *mine]:
        assert _is_local(host), host
    assert not _is_local("192.0.2.1")            # TEST-NET-1: nobody's address
