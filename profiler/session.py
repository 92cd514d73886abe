"""`profile`, `record_function`, `schedule` and trace handlers, with PyTorch's names.

    with px.profiler.profile(record_shapes=True) as prof:
        with px.profiler.record_function("train_step"):
            loss_fn(model(x), y).backward()
            opt.step()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10))
    prof.export_chrome_trace("trace.json")

While a profile records, op forwards are timed at the one dispatch point (an interceptor in
`autograd/dispatch.py`), each graph node's backward through the engine's observer point
(`autograd.engine.observe_nodes`), and the optimizer, the DataLoader and DDP's buckets through
`recorder` (see there). When no profile is attached none of this costs more than one test.

`profile_memory=True` traces allocations with `tracemalloc` while a window records (and only
then): each span keeps the bytes held at its start and end, so an event's `cpu_memory_usage`
is what it allocated less what it freed, its children's included, and `self_cpu_memory_usage`
the same less its children's. `with_flops=True` estimates the FLOPs of the ops PyTorch counts
(`flops.py`).
"""
import contextlib
import enum
import functools
import os
import socket
import sys
import time

from ..autograd import dispatch, engine
from . import flops, recorder
from .events import build_events, chrome_trace, write_json


class ProfilerActivity(enum.Enum):
    CPU = "CPU"
    CUDA = "CUDA"


def supported_activities():
    return {ProfilerActivity.CPU}


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def schedule(*, wait, warmup, active, repeat=0, skip_first=0):
    """PyTorch's profiling schedule: after `skip_first` steps, cycles of `wait` idle steps,
    `warmup` steps (not kept), `active` recorded steps (the last one saves: `on_trace_ready`
    runs), `repeat` times (0: until the profile ends). Returns step number -> ProfilerAction."""
    for name, value in (("wait", wait), ("warmup", warmup), ("active", active),
                        ("repeat", repeat), ("skip_first", skip_first)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"schedule: {name} must be a non-negative int, got {value!r}")
    if active < 1:
        raise ValueError(f"schedule: active must be at least 1, got {active}")
    cycle = wait + warmup + active

    def schedule_fn(step):
        if step < 0:
            raise ValueError(f"schedule: step must be >= 0, got {step}")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if repeat > 0 and step // cycle >= repeat:
            return ProfilerAction.NONE
        pos = step % cycle
        if pos < wait:
            return ProfilerAction.NONE
        if pos < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if pos < cycle - 1 else ProfilerAction.RECORD_AND_SAVE
    return schedule_fn


def _record_all(step):
    return ProfilerAction.RECORD


_RECORDING = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
_attached = None   # the profile started now (profiles do not nest)


class profile:
    """Record a timeline of the block (or of the steps `schedule` selects).

    `activities` may list `ProfilerActivity.CPU` only: spans are host-side (a GPU op's span is
    its launch). `on_trace_ready(prof)` runs when a recorded window ends (each
    RECORD_AND_SAVE step of the schedule, or the end of the block). `record_shapes` keeps each
    op's input shapes; `with_stack` the user's source lines that called it (frames outside
    Phalanx).

    `profile_memory` gives each event the host memory it allocated less what it freed
    (`cpu_memory_usage`; `self_cpu_memory_usage` without its children's), as `tracemalloc`
    sees it: NumPy arrays, and the Python objects around them (a few hundred bytes an op).
    Memory allocated or freed while no span is open becomes a `[memory]` event, as in PyTorch.
    The measure is process-wide (another thread's allocations count where they happen) and
    host-only (CuPy's device memory is not in it). `with_flops` estimates FLOPs for matrix
    products, convolutions and elementwise mul/add as PyTorch does (`flops.py`) and, as in
    PyTorch, records input shapes. `with_modules` is not supported."""

    def __init__(self, activities=None, schedule=None, on_trace_ready=None, record_shapes=False,
                 profile_memory=False, with_stack=False, with_flops=False, with_modules=False):
        activities = set(activities) if activities is not None else supported_activities()
        if ProfilerActivity.CUDA in activities:
            raise NotImplementedError(
                "ProfilerActivity.CUDA: Phalanx's profiler records host-side spans only (a GPU "
                "op's span is its launch; profile_memory measures host memory, not the "
                "device's); pass activities=[ProfilerActivity.CPU], and use Nsight Systems for "
                "kernel timing")
        if not activities:
            raise ValueError("profile: activities is empty; pass [ProfilerActivity.CPU]")
        if with_modules:
            raise NotImplementedError("profile(with_modules=True) is not supported by "
                                      "Phalanx's profiler; leave it False")
        self.activities = activities
        self.schedule = schedule if schedule is not None else _record_all
        self.on_trace_ready = on_trace_ready
        self.record_shapes = record_shapes or with_flops    # as PyTorch: FLOPs need the shapes
        self.profile_memory = profile_memory
        self.with_flops = with_flops
        self.with_stack = with_stack
        self.step_num = 0
        self.current_action = ProfilerAction.NONE
        self._events = None            # the last window's EventList
        self._window = None            # (wall clock ns, perf counter ns) at the window start
        self._hooks = None
        self._step_start = self._step_held = None
        self._started = False

    # ---- starting, stepping, stopping -------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        global _attached
        if _attached is not None:
            raise RuntimeError("a profiler is already running in this process; profiles do "
                               "not nest (stop the other one first)")
        _attached = self
        self._started = True
        recorder.enabled = True
        self.current_action = self.schedule(self.step_num)
        if self.current_action in _RECORDING:
            self._begin_window()

    def step(self):
        """Mark the end of a step (a training iteration): the schedule may start, end or save
        a recorded window here."""
        if not self._started:
            raise RuntimeError("profile.step() called outside the profile (call start() or "
                               "use it as a context manager)")
        before = self.current_action
        if before in _RECORDING:
            recorder.record(f"ProfilerStep#{self.step_num}", "step", self._step_start,
                            recorder.now(), held_at_start=self._step_held)
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        after = self.current_action
        if before in _RECORDING and (before is ProfilerAction.RECORD_AND_SAVE
                                     or after not in _RECORDING):
            self._end_window(save=True)
        if after in _RECORDING and not recorder.recording:
            self._begin_window()
        self._step_start, self._step_held = recorder.now(), recorder.held()

    def stop(self):
        global _attached
        if not self._started:
            return
        try:
            if recorder.recording:
                self._end_window(save=True)
        finally:
            self._started = False
            recorder.enabled = False
            recorder.measure_memory(False)
            _attached = None

    def _begin_window(self):
        recorder.take()                 # drop anything left from a window not saved
        if self.profile_memory:
            recorder.measure_memory(True)
        self._hooks = contextlib.ExitStack()
        self._hooks.enter_context(dispatch.intercept(_op_timer(
            self.record_shapes, self.with_stack, self.with_flops, self.profile_memory)))
        self._hooks.callback(engine.observe_nodes(_node_timer(self.profile_memory,
                                                                    self.with_flops)).remove)
        # the window starts once the hooks are set: their memory is not the program's
        self._window = (time.time_ns(), recorder.now(), recorder.held())
        self._step_start, self._step_held = self._window[1], self._window[2]
        recorder.recording = True

    def _end_window(self, save):
        held = (self._window[2], recorder.held()) if self.profile_memory else None
        recorder.recording = False
        recorder.measure_memory(False)
        self._hooks.close()
        raw, threads = recorder.take()
        self._thread_names = dict(threads.values())
        self._events = build_events(raw, threads, self._window[1], held=held,
                                    with_flops=self.with_flops)
        if save and self.on_trace_ready is not None and self._events:
            self.on_trace_ready(self)

    # ---- what was recorded -----------------------------------------------------------------
    def events(self):
        """The spans of the last recorded window (`FunctionEvent`s, by start time)."""
        if self._events is None:
            raise RuntimeError("the profile has recorded nothing yet: events exist once a "
                               "recorded window ends (the end of the `with` block, or a "
                               "RECORD_AND_SAVE step of the schedule)")
        return self._events

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        """Per op (and per input shapes / stack when asked): count, times, and memory and FLOPs
        when profiled (summed), for `.table()`."""
        if group_by_input_shape and not self.record_shapes:
            raise ValueError("group_by_input_shape=True needs profile(record_shapes=True)")
        if group_by_stack_n and not self.with_stack:
            raise ValueError("group_by_stack_n needs profile(with_stack=True)")
        return self.events().key_averages(group_by_input_shape, group_by_stack_n)

    def chrome_trace(self, pid=None, process_name=None, thread_suffix="", other=None):
        """The last window as a Chrome-trace JSON object."""
        pid = os.getpid() if pid is None else pid
        return chrome_trace(self.events(), self._window[0] / 1e3, pid,
                            process_name or f"phalanx (pid {os.getpid()})",
                            self._thread_names, thread_suffix, other)

    def export_chrome_trace(self, path):
        """Write the last window as Chrome-trace JSON (gzip if `path` ends in .gz): open it in
        https://ui.perfetto.dev or chrome://tracing."""
        write_json(self.chrome_trace(), path)

    def export_stacks(self, path, metric="self_cpu_time_total"):
        """Write the ops' call stacks with their self time (µs) in the folded format that
        flamegraph.pl and speedscope read: `outer;...;inner value` per line (needs
        `with_stack=True`)."""
        if metric not in ("self_cpu_time_total", "self_cuda_time_total",
                          "self_device_time_total"):
            raise ValueError(f"metric should be one of: self_cpu_time_total, "
                             f"self_cuda_time_total, self_device_time_total; got {metric!r}")
        if not self.with_stack:
            raise RuntimeError("export_stacks needs the stacks: profile with with_stack=True")
        safe = str.maketrans(" ;\t\n", "____")
        with open(path, "w") as f:
            for e in self.events():
                # no device times are recorded here: those metrics are zero for every span
                value = int(e.self_cpu_time_total) if metric == "self_cpu_time_total" else 0
                if e.stack and value > 0:
                    frames = ";".join(frame.translate(safe) for frame in reversed(e.stack))
                    f.write(f"{frames} {value}\n")


def _op_timer(record_shapes, with_stack, with_flops, profile_memory):
    """The interceptor that times each op's forward (lean: it runs for every op, and keeps the
    op's class: `build_events` names it); with what was asked for, its input shapes, stack,
    FLOPs and the memory held at its start and end."""
    now, thread_id, events = recorder.now, recorder.thread_id, recorder._events
    traced_memory, held, keep_own = recorder.traced_memory, recorder.held, recorder.keep_own

    def on_op(cls, args, kwargs, proceed):
        start = now()
        out = proceed(args, kwargs)
        events.append((cls, "cpu_op", thread_id(), start, now(), None))
        return out

    def describe(cls, args):
        info = {}
        if record_shapes:
            info["Input Dims"] = [getattr(getattr(a, "_data", None), "shape", ()) for a in args]
        if with_stack:
            info["stack"] = _user_stack()
        if with_flops:
            info[recorder.FLOPS] = flops.count(cls, args)
        return info

    def on_op_detailed(cls, args, kwargs, proceed):
        start = now()
        out = proceed(args, kwargs)
        end = now()
        events.append((cls, "cpu_op", thread_id(), start, end, describe(cls, args)))
        return out

    def on_op_measured(cls, args, kwargs, proceed):
        start, at_start = now(), held()
        out = proceed(args, kwargs)
        mark = traced_memory()[0]      # what is allocated from here on is the record's
        end = now()
        info = describe(cls, args)
        info[recorder.HELD] = (at_start, held(mark))
        events.append((cls, "cpu_op", thread_id(), start, end, info))
        keep_own(mark)
        return out
    if profile_memory:
        return on_op_measured
    return on_op_detailed if record_shapes or with_stack or with_flops else on_op


def _node_timer(profile_memory, with_flops):
    """The engine observer that times each node's backward (its memory and the FLOPs of
    GEMMs it runs on arrays, when asked)."""
    now, thread_id, events = recorder.now, recorder.thread_id, recorder._events
    traced_memory, held, keep_own = recorder.traced_memory, recorder.held, recorder.keep_own

    def on_node(node, run):
        start = now()
        out = run()
        events.append((node.fn, "backward", thread_id(), start, now(), None))
        return out

    def on_node_detailed(node, run):
        start, at_start = now(), held()
        work = flops.count_backward(node) if with_flops else None   # before run frees it
        out = run()
        mark = traced_memory()[0] if profile_memory else None
        end = now()
        info = {}
        if work:
            info[recorder.FLOPS] = work
        if profile_memory:
            info[recorder.HELD] = (at_start, held(mark))
        events.append((node.fn, "backward", thread_id(), start, end, info or None))
        if profile_memory:
            keep_own(mark)
        return out
    return on_node_detailed if profile_memory or with_flops else on_node


def _user_stack(limit=5):
    """The innermost `limit` frames outside Phalanx's modules, as `file(line): function`."""
    frames, frame = [], sys._getframe(2)
    while frame is not None and len(frames) < limit:
        module = frame.f_globals.get("__name__", "")
        if module != "phalanx" and not module.startswith("phalanx."):
            frames.append(f"{frame.f_code.co_filename}({frame.f_lineno}): "
                          f"{frame.f_code.co_name}")
        frame = frame.f_back
    return frames


class record_function:
    """Label a block (`with record_function("name"):`) or every call of a function
    (`@record_function("name")`) as one span on the timeline; free when no profile records.
    `args` is a string kept with the span."""

    def __init__(self, name, args=None):
        if not isinstance(name, str):
            raise TypeError(f"record_function: name must be a str, got {type(name).__name__}")
        self.name, self.args = name, args
        self._start = self._held = None

    def __enter__(self):
        self._start = recorder.now()
        self._held = recorder.held() if recorder.memory else None
        return self

    def __exit__(self, *exc):
        if recorder.recording:
            recorder.record(self.name, "user_annotation", self._start, recorder.now(),
                            {"args": self.args} if self.args is not None else None, self._held)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with record_function(self.name, self.args):   # one span object per call
                return fn(*args, **kwargs)
        return wrapper


def tensorboard_trace_handler(dir_name, worker_name=None, use_gzip=False):
    """An `on_trace_ready` that writes each window to
    `dir_name/{worker_name}.{time in ms}.pt.trace.json[.gz]` (worker_name: host_pid)."""
    worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"

    def handler(prof):
        os.makedirs(dir_name, exist_ok=True)
        stamp = time.time_ns() // 1_000_000
        while True:                       # two windows saved in one millisecond
            path = os.path.join(dir_name, f"{worker}.{stamp}.pt.trace.json" +
                                (".gz" if use_gzip else ""))
            if not os.path.exists(path):
                break
            stamp += 1
        prof.export_chrome_trace(path)
    return handler
