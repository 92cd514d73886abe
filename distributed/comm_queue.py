"""One group's operations, run one at a time in the order they were issued.

A backend posts each operation here and hands the caller the returned `Work`. A communication
thread runs posted operations in the background, so that an asynchronous all-reduce overlaps
with the caller's computation; a caller that waits on a job not yet started runs the queue
itself, up to and including its job, so a synchronous collective costs no thread hand-off.
Either way operations run strictly in issue order, which is what keeps ranks matched.

An operation that posts another operation to the same queue while it runs (a DDP communication
hook calling `all_reduce`) runs that one immediately, in place: it already holds its turn.
"""
import collections
import os
import threading
import time

from .process_group import Work

DEFAULT_COLLECTIVE_TIMEOUT = 600.0      # seconds without progress, as NCCL's watchdog
COLLECTIVE_TIMEOUT_ENV = "PHALANX_COLLECTIVE_TIMEOUT"


def default_collective_timeout():
    """The timeout of a collective that makes no progress when init_process_group() is given
    none: $PHALANX_COLLECTIVE_TIMEOUT seconds, else DEFAULT_COLLECTIVE_TIMEOUT (600 s)."""
    text = os.environ.get(COLLECTIVE_TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_COLLECTIVE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{COLLECTIVE_TIMEOUT_ENV}={text!r} is not a positive number of "
                         f"seconds; unset it for the default of {DEFAULT_COLLECTIVE_TIMEOUT:g}")
    return value


class Job(Work):
    """A posted operation. It needs no event: it completes under the queue's turn lock, so a
    waiter that holds the lock knows it is done, or runs the queue up to it."""

    def __init__(self, queue, fn, desc):  # no Work.__init__: completion is `_done`
        self._queue, self._fn, self.desc = queue, fn, desc
        self._done, self._result, self._error = False, None, None

    def is_completed(self):
        return self._done

    def wait(self, timeout=None):
        if not self._done:
            self._queue._run_until(self, timeout)
        if self._error is not None:
            raise self._error
        return True

    def result(self):
        self.wait()
        return self._result

    def __repr__(self):
        return f"<Job {describe(self.desc)} {'done' if self._done else 'pending'}>"


def describe(desc):
    """Jobs carry (verb, array) and are described only when someone asks (the watchdog)."""
    if isinstance(desc, tuple):
        verb, array = desc
        if array is None:
            return verb
        return f"{verb}(shape={tuple(array.shape)}, dtype={array.dtype})"
    return str(desc)


class _CallerWaits(threading.local):
    """`with CALLER_WAITS:` operations posted by this thread run on it, right away, after
    those posted before them: a synchronous collective then costs no thread hand-off."""

    active = False

    def __enter__(self):
        self.active = True

    def __exit__(self, *exc):
        self.active = False


CALLER_WAITS = _CallerWaits()


def blocking(verb, *args):
    """`verb(*args).result()` for a process-group verb, run on this thread right away."""
    with CALLER_WAITS:
        return verb(*args).result()


class CommQueue:
    def __init__(self, name="phalanx-comm", threaded=True):
        self.name = name
        self.threaded = threaded
        self._jobs = collections.deque()
        self._turn = threading.Lock()          # held by whoever runs a job
        self._wake = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._thread = None
        self._closed = False
        self.running = None                    # (desc, start time) of the job running now
        self.started = 0                       # jobs started so far: the running one's number

    def post(self, fn, desc="operation"):
        """Queue `fn()`; its return value is the Work's result, its exception the Work's."""
        job = Job(self, fn, desc)
        if self.inside():  # posted by a running job: its turn is ours
            return self._run(job)
        if self._closed:
            raise RuntimeError(f"{self.name}: the process group was destroyed; create a new "
                               f"one with init_process_group() / new_group()")
        if CALLER_WAITS.active or not self.threaded:
            with self._turn:
                while self._jobs:
                    self._run(self._jobs.popleft())
                return self._run(job)
        with self._wake:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return job

    def _run(self, job):
        local = self._local
        outer = getattr(local, "inside", False)   # a job's own collectives run nested
        local.inside = True
        if not outer:
            self.started += 1
            self.running = (job.desc, time.monotonic())
        try:
            job._result = job._fn()
        except BaseException as e:  # the waiter re-raises it
            job._error = e
        finally:
            job._done = True
            local.inside = outer
            if not outer:
                self.running = None
            job._fn = None
        return job

    def _run_next(self):
        if not self._jobs:
            return False
        self._run(self._jobs.popleft())
        return True

    def _run_until(self, job, timeout=None):
        if not self._turn.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"{describe(job.desc)} did not complete within {timeout} s")
        try:
            while not job._done and self._run_next():
                pass
        finally:
            self._turn.release()

    def _serve(self):
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed and not self._jobs:
                    return
            with self._turn:
                self._run_next()

    def pending(self):
        return len(self._jobs)

    def inside(self):
        """Whether the calling thread is running one of this queue's jobs."""
        return getattr(self._local, "inside", False)

    def close(self, timeout=None):
        """Finish what was posted, then stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class Watchdog:
    """One daemon thread that notices a job running longer than its queue's timeout.

    A collective that other ranks never join blocks forever inside MPI, where nothing can
    interrupt it; the watchdog reports it (`on_timeout(queue, desc, seconds)`), which aborts
    the job instead of leaving it hanging silently. Every TICK seconds it also calls each
    queue's `on_tick()`: the MPI backend answers there its peers' questions of how far it got,
    which is how a timed-out rank names the ranks that did not join.
    """

    TICK = 0.5
    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        self._watched = {}          # queue -> (timeout, on_timeout, on_tick)
        self._thread = None

    @classmethod
    def watch(cls, queue, timeout, on_timeout, on_tick=None):
        if timeout is None or timeout <= 0 or timeout == float("inf"):
            return
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            dog = cls._instance
            dog._watched[queue] = (timeout, on_timeout, on_tick)
            if dog._thread is None:
                dog._thread = threading.Thread(target=dog._loop, name="phalanx-watchdog",
                                               daemon=True)
                dog._thread.start()

    @classmethod
    def unwatch(cls, queue):
        with cls._lock:
            if cls._instance is not None:
                cls._instance._watched.pop(queue, None)

    def _loop(self):
        while True:
            with self._lock:
                watched = list(self._watched.items())
            period = min([t for _, (t, _, _) in watched] + [40.0]) / 4
            time.sleep(min(period, self.TICK))
            now = time.monotonic()
            for queue, (timeout, on_timeout, on_tick) in watched:
                if on_tick is not None:
                    on_tick()
                running = queue.running
                if running is not None and now - running[1] > timeout:
                    self.unwatch(queue)
                    on_timeout(queue, describe(running[0]), now - running[1])
