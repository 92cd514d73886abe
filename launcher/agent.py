"""The per-node agent: an explicit state machine over a rendezvous and a worker group.

    INIT → RENDEZVOUS → RUNNING → SUCCEEDED
                ↑          │
                └ RESTARTING ← (a local rank failed, within budget; or a peer failed, joined, left)
                           │
                           └→ FAILED (budget spent, rendezvous impossible) · STOPPED (signal)

The agent only decides. `workers` starts, polls and stops processes (`LocalWorkerGroup`, or a
fake in tests); `rendezvous` forms rounds and tells of peers (`StoreRendezvous`, or a fake).
"""
import enum
import signal
import sys
import time
from dataclasses import dataclass, field

from ..distributed.store import StoreError
from .errors import first_failure, format_summary
from .rendezvous import RendezvousError
from .workers import WorkerState


def _log(msg):
    print(msg if "\n" in msg else f"[phalanx] {msg}", file=sys.stderr, flush=True)


class AgentState(enum.Enum):
    INIT = "init"
    RENDEZVOUS = "rendezvous"
    RUNNING = "running"
    RESTARTING = "restarting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"


class SignalReceived(BaseException):
    """SIGINT/SIGTERM/SIGHUP, raised in the main thread. A BaseException, as KeyboardInterrupt
    is: handlers of ordinary errors (`except Exception`, e.g. the store server's, which drops
    a request that broke it and serves on) must not swallow it."""

    def __init__(self, signum):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class RestartBudget:
    """`max_restarts` failure restarts for the whole job; membership changes are free."""
    max_restarts: int

    def allows(self, restarts_used):
        return restarts_used <= self.max_restarts


@dataclass
class RunResult:
    state: AgentState
    exit_code: int
    failures: list = field(default_factory=list)     # the last failed attempt's failures
    restarts: int = 0
    history: list = field(default_factory=list)      # every state the agent passed through


class Agent:
    def __init__(self, workers, rendezvous, budget, monitor_interval=0.1,
                 log=None, sleep=time.sleep):
        self.workers, self.rendezvous, self.budget = workers, rendezvous, budget
        self.monitor_interval = monitor_interval
        self.sleep = sleep
        self.log = log or _log
        self.state = AgentState.INIT
        self.history = [AgentState.INIT]
        self.failures = []
        self.restarts = 0
        self._started = False

    def _enter(self, state):
        self.state = state
        self.history.append(state)

    def _result(self, state, exit_code):
        self._enter(state)
        return RunResult(state, exit_code, self.failures, self.restarts, self.history)

    def run(self):
        """Run the job to the end; on any exception (a signal included) stop the workers."""
        try:
            return self._loop()
        except SignalReceived as e:
            self.log(f"{e}; stopping workers")
            self._stop_workers()
            self.rendezvous.shutdown(f"an agent {e}")
            return self._result(AgentState.STOPPED, 128 + e.signum)
        except RendezvousError as e:
            self.log(str(e))
            self._stop_workers()
            return self._result(AgentState.FAILED, 1)
        except StoreError as e:          # the store died or vanished: nobody can go on
            self.log(f"lost the rendezvous store: {e}")
            self._stop_workers()
            return self._result(AgentState.FAILED, 1)
        except BaseException:
            self._stop_workers()
            self.rendezvous.shutdown("an agent crashed")
            raise

    def _stop_workers(self):
        if self._started:
            self._started = False
            self.workers.stop()

    def _loop(self):
        while True:
            self._enter(AgentState.RENDEZVOUS)
            assignment = self.rendezvous.next_round()
            self.restarts = assignment.restart_count
            self._enter(AgentState.RUNNING)
            self.workers.start(assignment)
            self._started = True
            outcome = self._monitor()
            self._stop_workers()
            if outcome is WorkerState.SUCCEEDED:
                try:
                    self.rendezvous.report_success()
                except StoreError as e:   # the work is done; only the farewell was lost
                    self.log(f"workers succeeded, but the other nodes could not be told: lost "
                             f"the rendezvous store: {e}")
                return self._result(AgentState.SUCCEEDED, 0)
            if outcome is WorkerState.FAILED:
                used = self.rendezvous.report_failure()
                allowed = self.budget.allows(used)
                verdict = (f"restarting ({used} of {self.budget.max_restarts} restarts)" if allowed
                           else f"no restarts left (--max-restarts {self.budget.max_restarts})")
                self.log(format_summary(
                    self.failures, f"phalanx run: worker group failed in attempt "
                                   f"{assignment.round}; {verdict}"))
                if not allowed:
                    self.rendezvous.shutdown(f"restart budget of {self.budget.max_restarts} spent")
                    return self._result(AgentState.FAILED, self._exit_code())
            self._enter(AgentState.RESTARTING)

    def _monitor(self):
        """Poll until the local workers end or the group must restart; returns a WorkerState
        (HEALTHY meaning: restart for a peer's reason)."""
        while True:
            status = self.workers.poll()
            if status.state is WorkerState.FAILED:
                self.failures = status.failures
                return WorkerState.FAILED
            if status.state is WorkerState.SUCCEEDED:
                return WorkerState.SUCCEEDED
            reason = self.rendezvous.restart_reason()
            if reason is not None:
                self.log(f"restarting workers: {reason}")
                return WorkerState.HEALTHY
            self.sleep(self.monitor_interval)

    def _exit_code(self):
        first = first_failure(self.failures) if self.failures else None
        code = first.exitcode if first is not None and first.exitcode else 1
        return code if code > 0 else 128 - code      # killed by signal N → 128 + N
