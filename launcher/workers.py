"""Starting, watching and stopping this node's worker processes.

`LocalWorkerGroup` is the real implementation of the agent's worker interface
(`start(assignment)`, `poll()`, `stop()`); the agent's tests use a fake with the same three
methods. Each worker leads its own process group (so a stop reaches the processes it started) and
dies with the launcher (PR_SET_PDEATHSIG, set by the bootstrap, or before exec for --no-python);
should the launcher be SIGKILLed, its guardian process (guardian.py) kills those groups.
"""
import enum
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

from ..distributed import shm_files
from ..distributed.threads import THREAD_ENV_VARS, threads_per_rank
from .errors import ERROR_FILE_ENV, Failure, describe_exit, read_error_file
from .guardian import Guardian
from .logs import LogRouter, LogSource, console_streams, rank_prefix

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")


@dataclass
class WorkerSpec:
    """What to run on this node, and how; the same for every attempt."""
    entrypoint: list                  # [script, *args], [module, *args] with module=True, or a command
    nproc_per_node: int
    module: bool = False
    no_python: bool = False
    python: str = sys.executable
    run_id: str = "none"
    log_dir: str = ""                 # error files (always) and tee'd logs go under it
    tee: int = 0                      # 1: stdout, 2: stderr, 3: both copied to per-rank files
    local_ranks_filter: frozenset = None   # local ranks shown on the console (None: all)
    heartbeat_timeout: float = 0.0    # liveness: a rank silent this long is dead; 0: off
    progress_timeout: float = 0.0     # a rank whose progress counter is still this long; 0: off
    grace_period: float = 5.0         # SIGTERM → SIGKILL
    show_host: bool = False           # prefix lines with the host name (multi-node jobs)
    extra_env: dict = field(default_factory=dict)


class WorkerState(enum.Enum):
    HEALTHY = "healthy"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class GroupStatus:
    state: WorkerState
    failures: list = field(default_factory=list)


@dataclass
class Worker:
    local_rank: int
    rank: int
    process: subprocess.Popen
    error_file: str


def worker_env(spec, assignment, local_rank, error_file, heartbeat_endpoint):
    """The environment of one worker: torchrun's variables plus the store and heartbeat ones."""
    env = dict(os.environ)
    env.update(spec.extra_env)
    threads = str(threads_per_rank(spec.nproc_per_node))
    for name in THREAD_ENV_VARS:
        env.setdefault(name, threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update({
        "RANK": str(assignment.rank_offset + local_rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(assignment.world_size),
        "LOCAL_WORLD_SIZE": str(spec.nproc_per_node),
        "GROUP_RANK": str(assignment.group_rank),
        "GROUP_WORLD_SIZE": str(assignment.nnodes),
        "RESTART_COUNT": str(assignment.restart_count),
        "TORCHELASTIC_RESTART_COUNT": str(assignment.restart_count),
        "ROLE_RANK": str(assignment.rank_offset + local_rank),     # one role: ranks as RANK
        "ROLE_WORLD_SIZE": str(assignment.world_size),
        "MASTER_ADDR": assignment.master_addr,
        "MASTER_PORT": str(assignment.master_port),
        "PHALANX_STORE_ENDPOINT": assignment.store_endpoint,
        "PHALANX_STORE_TOKEN": assignment.store_token,
        "PHALANX_RUN_ID": spec.run_id,
        "PHALANX_RDZV_ROUND": str(assignment.round),
        "PHALANX_AGENT_PID": str(os.getpid()),
        ERROR_FILE_ENV: error_file,
    })
    if heartbeat_endpoint:
        env["PHALANX_HEARTBEAT_ENDPOINT"] = heartbeat_endpoint
        beat_every = spec.heartbeat_timeout / 10 if spec.heartbeat_timeout else 1.0
        env["PHALANX_HEARTBEAT_INTERVAL"] = str(min(1.0, max(0.05, beat_every)))
    return env


def _die_with_parent():  # runs in the child between fork and exec (--no-python only)
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG


class LocalWorkerGroup:
    def __init__(self, spec, heartbeat=None):
        self.spec = spec
        self.heartbeat = heartbeat          # a launcher.monitor.HeartbeatMonitor, or None
        self.workers = []
        self._router = None
        self._guardian = None               # made at the first start (see guardian.py)

    def command(self):
        spec = self.spec
        if spec.no_python:
            return list(spec.entrypoint)
        head = [spec.python, BOOTSTRAP] + (["-m"] if spec.module else [])
        return head + list(spec.entrypoint)

    def start(self, assignment):
        spec = self.spec
        attempt_dir = os.path.join(spec.log_dir, f"attempt_{assignment.round}")
        stdout, stderr = console_streams()
        sources, self.workers = [], []
        if self._guardian is None:
            self._guardian = Guardian()
        for local_rank in range(spec.nproc_per_node):
            rank = assignment.rank_offset + local_rank
            rank_dir = os.path.join(attempt_dir, str(rank))
            os.makedirs(rank_dir, exist_ok=True)
            error_file = os.path.join(rank_dir, "error.json")
            env = worker_env(spec, assignment, local_rank, error_file,
                             self.heartbeat.endpoint if self.heartbeat else None)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                process = subprocess.Popen(
                    self.command(), env=env, stdin=subprocess.DEVNULL, stdout=out_w,
                    stderr=err_w, start_new_session=True,
                    preexec_fn=_die_with_parent if spec.no_python else None)
            finally:
                os.close(out_w)
                os.close(err_w)
            self._guardian.watch(process.pid)      # its process group: start_new_session
            self.workers.append(Worker(local_rank, rank, process, error_file))
            shown = spec.local_ranks_filter is None or local_rank in spec.local_ranks_filter
            prefix = rank_prefix(rank, os.uname().nodename if spec.show_host else None)
            for fd, console, bit, name in ((out_r, stdout, 1, "stdout"), (err_r, stderr, 2, "stderr")):
                tee = open(os.path.join(rank_dir, f"{name}.log"), "ab") if spec.tee & bit else None
                sources.append(LogSource(fd, prefix, console if shown else None, tee))
        self._router = LogRouter(sources)
        if self.heartbeat:
            self.heartbeat.expect({w.local_rank: w.process.pid for w in self.workers})

    @property
    def pids(self):
        return [w.process.pid for w in self.workers]

    def poll(self):
        failures = []
        for w in self.workers:
            code = w.process.poll()
            if code is not None and code != 0:
                failures.append(Failure(w.rank, w.local_rank, describe_exit(code), code,
                                        w.process.pid, error=read_error_file(w.error_file)))
        # hung ranks too, also when a peer already failed: the one that waited for a hung rank
        # (and gave up) is not the cause
        failures += self._hung()
        if failures:
            return GroupStatus(WorkerState.FAILED, failures)
        if all(w.process.poll() == 0 for w in self.workers):
            return GroupStatus(WorkerState.SUCCEEDED)
        return GroupStatus(WorkerState.HEALTHY)

    def _hung(self):
        """Failures of running workers the heartbeat monitor declares dead or stuck."""
        if not self.heartbeat:
            return []
        spec, failures = self.spec, []
        dead = set(self.heartbeat.dead())
        for local_rank in sorted(dead | set(self.heartbeat.stuck())):
            w = self.workers[local_rank]
            if w.process.poll() is not None:
                continue
            if local_rank in dead:
                since = self.heartbeat.last_beat(local_rank)
                reason = (f"sent no heartbeat for {spec.heartbeat_timeout:g} s" if since
                          is not None else f"sent no heartbeat in the {spec.heartbeat_timeout:g} "
                          f"s since it started")
                reason += f" ({_process_state(w.process.pid)}; --heartbeat-timeout)"
            else:
                reason = (f"no progress for {spec.progress_timeout:g} s (hung? raise "
                          f"--progress-timeout if steps are slower)")
            failures.append(Failure(w.rank, local_rank, reason, None, w.process.pid, hung=True))
        return failures

    def stop(self, grace=None):
        """SIGTERM every worker's process group, SIGKILL what is left after `grace` seconds.
        A stopped worker (SIGSTOP) cannot act on SIGTERM: it gets SIGKILL and SIGCONT at once."""
        grace = self.spec.grace_period if grace is None else grace
        stragglers = []
        for w in self.workers:
            try:
                stragglers += psutil.Process(w.process.pid).children(recursive=True)
            except psutil.Error:
                pass
        running = []
        for w in self.workers:
            if w.process.poll() is not None:
                continue
            if _is_stopped(w.process.pid):
                _signal_group(w.process.pid, signal.SIGKILL)
                _signal_group(w.process.pid, signal.SIGCONT)
            else:
                running.append(w)
        for w in running:
            _signal_group(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(w.process.poll() is None for w in running):
            time.sleep(0.01)
        self._signal_all(signal.SIGKILL)
        for p in stragglers:             # descendants that left the process group
            try:
                p.kill()
            except psutil.Error:
                pass
        for w in self.workers:
            w.process.wait()
            self._guardian.forget(w.process.pid)
        # shared-memory files a rank made and was killed before unlinking (DDP bucket setup)
        shm_files.remove_orphans(self.spec.run_id, pids=self.pids)
        if self._router is not None:
            self._router.join(timeout=2)
            self._router = None

    def close(self):
        """The launcher is done with this node's workers (all stopped)."""
        if self._guardian is not None:
            self._guardian.close()

    def _signal_all(self, sig):
        for w in self.workers:
            _signal_group(w.process.pid, sig)


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_stopped(pid):
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def _process_state(pid):
    """What the process is doing, as `ps` would say, for a failure message."""
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return "process gone"
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return "process stopped: SIGSTOP, a debugger or ^Z"
    return f"process {status}"
