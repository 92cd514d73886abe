"""Where spans are recorded: the flag every instrumented point reads, and the event buffer.

This module imports nothing from Phalanx, so that any layer (the engine excepted: it offers an
observer point instead, `autograd.engine.observe_nodes`) may call into it. Instrumented code
pays one test of `enabled` while no profiler is attached:

    if recorder.enabled:
        ...                                  # a span, through the helpers below

`enabled` is True while a `profile` is entered (even between recording windows, so that its
step counting sees optimizer steps); `recording` is True while spans are kept. A span is
(name, category, thread id, start ns, end ns, args): appended to one list from any thread (a
list append is atomic), with `time.perf_counter_ns` clocks and `threading.get_ident` thread ids
(Linux's native thread id costs a system call; `take` maps one to the other).

While a profile measures memory (`profile_memory=True`), a span's args also hold
`HELD: (bytes held at its start, at its end)`: what `tracemalloc` traces (NumPy reports its
arrays to it), less what the profiler allocated for its own records, which a recording point
counts as its own (`keep_own`) so that they show in no span.
"""
import functools
import itertools
import threading
import time
import tracemalloc

enabled = False        # a profile is attached: instrumented points call in here
recording = False      # spans are being kept

now = time.perf_counter_ns
thread_id = threading.get_ident   # cheap; the trace shows native ids (see take)
_events = []
_threads = {}          # ident -> (native id, name) of threads that recorded through `record`
step_listeners = []    # called after every optimizer step while enabled
_flows = itertools.count(1)

HELD = "_held"         # private keys of a span's args, taken out by `events.build_events`
FLOPS = "_flops"
memory = False         # memory is measured: see `held`
traced_memory = tracemalloc.get_traced_memory     # (bytes now, peak)
_own = 0               # bytes the profiler allocated for its records since memory was measured
_own_lock = threading.Lock()
_started_tracing = False


def measure_memory(on):
    """Start (on=True) or stop measuring memory. tracemalloc traces meanwhile: it is started
    here unless it already traces, and then stopped again here."""
    global memory, _own, _started_tracing
    if on and not memory:
        _started_tracing = not tracemalloc.is_tracing()
        if _started_tracing:
            tracemalloc.start()
        _own = 0
    elif not on and memory and _started_tracing:
        tracemalloc.stop()
    memory = on


def held(mark=None):
    """The bytes the program holds at the traced count `mark` (now if None): tracemalloc's,
    less the profiler's own; None while memory is not measured."""
    if not memory:
        return None
    return (traced_memory()[0] if mark is None else mark) - _own


def keep_own(mark):
    """What was allocated since the traced count `mark` is the profiler's (a record it keeps)."""
    global _own
    with _own_lock:                    # recording points run on several threads
        _own += traced_memory()[0] - mark


def record(name, cat, start, end, args=None, held_at_start=None):
    """Keep one finished span (no-op unless recording); `held_at_start`: `held()` at its start.
    The op and node timers append to `_events` themselves: they run for every op, and their
    threads are alive at `take()`."""
    if recording:
        mark = traced_memory()[0] if memory and held_at_start is not None else None
        if mark is not None:
            args = {**(args or {}), HELD: (held_at_start, held(mark))}
        tid = thread_id()
        if tid not in _threads:        # a communication thread may end before take()
            _threads[tid] = (threading.get_native_id(), threading.current_thread().name)
        _events.append((name, cat, tid, start, end, args))
        if mark is not None:
            keep_own(mark)


def take():
    """The spans kept so far, and {thread ident: (native id, name)} of their threads; the
    buffer starts afresh."""
    global _events
    events, _events = _events, []
    threads = dict(_threads)
    _threads.clear()                   # a thread's ident may be reused once it ended
    threads.update((t.ident, (t.native_id, t.name)) for t in threading.enumerate())
    return events, threads


class span:
    """`with span(name, cat, args):` records the block as one span while recording."""

    __slots__ = ("name", "cat", "args", "start", "held")

    def __init__(self, name, cat="user_annotation", args=None):
        self.name, self.cat, self.args = name, cat, args

    def __enter__(self):
        self.start = now()
        self.held = held()
        return self

    def __exit__(self, *exc):
        record(self.name, self.cat, self.start, now(), self.args, self.held)
        return False


def traced(cat):
    """Decorator: while enabled, each call of the method is a span named after its class
    and method, as PyTorch names them (`enumerate(DataLoader)#_SingleProcessIter.__next__`)."""
    def wrap(method):
        name = f"enumerate(DataLoader)#{method.__qualname__}" if cat == "dataloader" \
            else method.__qualname__

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            if not enabled:
                return method(*args, **kwargs)
            with span(name, cat):
                return method(*args, **kwargs)
        return wrapper
    return wrap


def optimizer_step(optimizer, step, args, kwargs):
    """`step(optimizer, *args, **kwargs)` as a span named as PyTorch names it; then the step
    listeners (a profile started from the environment counts steps through them)."""
    with span(f"Optimizer.step#{type(optimizer).__name__}.step", "optimizer"):
        out = step(optimizer, *args, **kwargs)
    for listener in list(step_listeners):
        listener()
    return out


def trace_collective(name, submit, verb, args, info):
    """Wrap an asynchronous collective `verb(*args)` (which returns a Work) so that its run is
    a span on the thread that runs it, and its launch and its wait are spans on the caller's.

    Returns (launch, ()) to call in place of (verb, args): `launch()` posts the collective
    through `submit(fn)` (a process group's `submit`: the collective, issued from inside the
    posted job, runs there and then) and returns a Work whose `result()` is timed. The launch
    and the run share a flow id (`flow_out` / `flow_in` in their args): the trace draws an arrow
    from one to the other."""
    flow = next(_flows)

    def run():
        start, at_start = now(), held()
        try:
            return verb(*args).result()
        finally:
            record(name, "comm", start, now(), dict(info, flow_in=flow), at_start)

    def launch():
        start, at_start = now(), held()
        work = submit(run)
        record(name + ".launch", "comm", start, now(), dict(info, flow_out=flow), at_start)
        return _TimedWork(work, name + ".wait", info)
    return launch, ()


class _TimedWork:
    """A Work whose `wait()`/`result()` are recorded as a span."""

    def __init__(self, work, name, info):
        self._work, self._name, self._info = work, name, info

    def is_completed(self):
        return self._work.is_completed()

    def wait(self, timeout=None):
        with span(self._name, "comm", self._info):
            return self._work.wait(timeout)

    def result(self):
        with span(self._name, "comm", self._info):
            return self._work.result()
