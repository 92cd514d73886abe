"""`spawn(fn, args, nprocs)`: run `fn(i, *args)` in `nprocs` fresh processes, as
`torch.multiprocessing.spawn` does.

When any child fails, the others are terminated and the parent raises: a child that raised
gives `ProcessRaisedException` carrying the child's traceback; one that exited non-zero or
died by a signal gives `ProcessExitedException`. `join=False` returns the `ProcessContext` to
join later.

Each child also finds the variables a launcher would give it: `RANK` = `LOCAL_RANK` = i,
`WORLD_SIZE` = `LOCAL_WORLD_SIZE` = nprocs, and a rendezvous store served by the parent
(`PHALANX_STORE_ENDPOINT`/`_TOKEN`). So the DDP tutorial's
`dist.init_process_group("gloo", rank=rank, world_size=world_size)` inside `fn` connects the
children over the ZeroMQ backend with no launcher. (Its `MASTER_ADDR`/`MASTER_PORT` are not
needed: the store is the parent's.) A parent that was itself started by a launcher (`RANK`
set) or under MPI passes its environment on unchanged.
"""
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
import traceback
import uuid
import warnings

from ..distributed import env as _env
from ..distributed.store import ENDPOINT_ENV, TOKEN_ENV, StoreServer

GRACE_PERIOD = 5.0   # seconds a terminated child gets before it is killed


class ProcessException(Exception):
    def __init__(self, msg, error_index, pid):
        super().__init__(msg)
        self.msg, self.error_index, self.pid = msg, error_index, pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """A child raised; the message ends with its traceback."""


class ProcessExitedException(ProcessException):
    """A child exited with a non-zero code or was killed by a signal."""

    def __init__(self, msg, error_index, error_pid, exit_code, signal_name=None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code, self.signal_name = exit_code, signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code,
                            self.signal_name)


def _die_with_parent():
    """Ask Linux to send SIGINT to this child when the parent dies (no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGINT, 0, 0, 0)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _wrap(fn, i, args, error_file, env):
    """The child's entry point: set the rank environment, run fn, report a traceback."""
    _die_with_parent()
    os.environ.update(env)
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass   # the parent terminated us (SIGINT); it reports the failure that caused it
    except Exception:
        with open(error_file, "w") as f:
            f.write(traceback.format_exc())
        sys.exit(1)


def _rank_environment(nprocs):
    """The launcher variables children get, and the store serving them (None when the parent
    already runs under a launcher or MPI and its environment is passed on)."""
    if "RANK" in os.environ or any(k in os.environ for k in _env.MPI_MARKERS):
        return {}, None
    server = StoreServer("127.0.0.1", 0).start()
    common = {"WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs),
              ENDPOINT_ENV: server.endpoint, TOKEN_ENV: server.token,
              "PHALANX_RUN_ID": f"spawn-{uuid.uuid4().hex[:12]}", "PHALANX_RDZV_ROUND": "0"}
    return common, server


class ProcessContext:
    def __init__(self, processes, error_files, store=None, error_dir=None):
        self.processes = processes
        self.error_files = error_files
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}
        self._store, self._error_dir = store, error_dir

    def pids(self):
        return [int(p.pid) for p in self.processes]

    def join(self, timeout=None, grace_period=None):
        """Wait up to `timeout` seconds for the children. True when all have finished
        successfully, False while some still run; raises as soon as one has failed (after
        terminating the others)."""
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(list(self.sentinels), timeout=timeout)
        failed = None
        for sentinel in ready:
            index = self.sentinels.pop(sentinel)
            process = self.processes[index]
            process.join()
            if process.exitcode != 0:
                failed = index
                break
        if failed is None:
            if not self.sentinels:
                self._release()
                return True
            return False
        self._terminate_others(GRACE_PERIOD if grace_period is None else grace_period)
        self._release(keep_errors=True)
        self._raise_for(failed)

    def _terminate_others(self, grace_period):
        alive = [p for p in self.processes if p.is_alive()]
        for p in alive:
            p.terminate()
        deadline = time.monotonic() + grace_period
        for p in alive:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in alive:
            if p.is_alive():
                p.kill()
                p.join()
        self.sentinels.clear()

    def _raise_for(self, index):
        process = self.processes[index]
        error_file = self.error_files[index]
        trace = None
        if os.path.exists(error_file):
            with open(error_file) as f:
                trace = f.read()
        self._remove_error_files()
        if trace is None:
            code = process.exitcode
            if code < 0:
                name = signal.Signals(-code).name
                raise ProcessExitedException(f"process {index} terminated with signal {name}",
                                             index, process.pid, code, name)
            raise ProcessExitedException(f"process {index} terminated with exit code {code}",
                                         index, process.pid, code)
        raise ProcessRaisedException(
            f"\n\n-- Process {index} terminated with the following error:\n{trace}",
            index, process.pid)

    def _release(self, keep_errors=False):
        if self._store is not None:
            self._store.close()
            self._store = None
        if not keep_errors:
            self._remove_error_files()

    def _remove_error_files(self):
        for path in self.error_files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self._error_dir is not None:
            try:
                os.rmdir(self._error_dir)
            except OSError:
                pass
            self._error_dir = None


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Start `nprocs` processes running `fn(i, *args)` with the given start method."""
    if not isinstance(nprocs, int) or isinstance(nprocs, bool) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive integer, got {nprocs!r}")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple (the arguments after the process index), got "
                        f"{type(args).__name__}; write args=(x,) for one argument")
    ctx = multiprocessing.get_context(start_method)
    common, store = _rank_environment(nprocs)
    error_dir = tempfile.mkdtemp(prefix="phalanx-spawn-")
    processes, error_files = [], []
    try:
        for i in range(nprocs):
            error_file = os.path.join(error_dir, f"error-{i}.txt")
            env = dict(common, RANK=str(i), LOCAL_RANK=str(i)) if common else {}
            process = ctx.Process(target=_wrap, args=(fn, i, args, error_file, env),
                                  daemon=daemon)
            process.start()
            processes.append(process)
            error_files.append(error_file)
    except BaseException:
        for p in processes:
            p.kill()
            p.join()
        if store is not None:
            store.close()
        raise
    context = ProcessContext(processes, error_files, store, error_dir)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Run `fn(i, *args)` for i in range(nprocs), each in a fresh process (start method
    'spawn'). With `join=True` wait for all and raise if any failed; otherwise return the
    `ProcessContext`."""
    if start_method != "spawn":
        warnings.warn(f"This method only supports start_method=spawn (got: {start_method}).\n"
                      f"To use a different start_method use:\n\t\t "
                      f"phalanx.multiprocessing.start_processes(...)", FutureWarning,
                      stacklevel=2)
    return start_processes(fn, args, nprocs, join, daemon, start_method="spawn")
