"""`Stream`, `Event` and the `stream(...)` context over CuPy's streams and events."""
from ._state import device_index, require


class Stream:
    """A CUDA stream on `device` (default: the current GPU). `priority` < 0 is higher."""

    def __init__(self, device=None, priority=0, _cupy_stream=None):
        cp = require("phalanx.cuda.Stream")
        self.device_index = device_index(device, "phalanx.cuda.Stream")
        self._entered = []           # the GPU contexts entered by `with stream:`
        if _cupy_stream is not None:
            self.cupy_stream = _cupy_stream
        else:
            with cp.cuda.Device(self.device_index):
                self.cupy_stream = cp.cuda.Stream(non_blocking=True, priority=priority)

    def synchronize(self):
        self.cupy_stream.synchronize()

    def query(self):
        return self.cupy_stream.done

    def wait_event(self, event):
        if event.cupy_event is not None:     # an event never recorded: nothing to wait for
            self.cupy_stream.wait_event(event.cupy_event)

    def wait_stream(self, stream):
        self.wait_event(stream.record_event())

    def record_event(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def __enter__(self):
        # as in PyTorch, the stream's GPU becomes current too (CuPy refuses to make a stream
        # of another GPU current)
        gpu = require("phalanx.cuda.stream").cuda.Device(self.device_index)
        gpu.__enter__()
        self._entered.append(gpu)
        self.cupy_stream.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            return self.cupy_stream.__exit__(*exc)
        finally:
            self._entered.pop().__exit__(*exc)

    def __eq__(self, other):
        return isinstance(other, Stream) and self.cupy_stream.ptr == other.cupy_stream.ptr

    def __hash__(self):
        return hash(self.cupy_stream.ptr)

    def __repr__(self):
        return f"<phalanx.cuda.Stream device=cuda:{self.device_index} " \
               f"cuda_stream={self.cupy_stream.ptr:#x}>"


class Event:
    """A CUDA event: `record()` on a stream, then `wait()`, `synchronize()` or
    `elapsed_time(end)` (milliseconds, needs enable_timing=True)."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        require("phalanx.cuda.Event")
        if interprocess:
            raise NotImplementedError("phalanx.cuda.Event(interprocess=True)")
        self._flags = {"block": blocking, "disable_timing": not enable_timing}
        self.cupy_event = None       # made by the first record(), on the stream's GPU

    def record(self, stream=None):
        """Record on `stream` (default: the current stream). As in PyTorch the CUDA event is
        made on the GPU of the first stream it is recorded on: CUDA refuses to record an
        event on a stream of another GPU."""
        stream = stream or current_stream()
        if self.cupy_event is None:
            cp = require("phalanx.cuda.Event")
            with cp.cuda.Device(stream.device_index):
                self.cupy_event = cp.cuda.Event(**self._flags)
        self.cupy_event.record(stream.cupy_stream)

    def wait(self, stream=None):
        """Make `stream` (default: the current one) wait for the work recorded; an event
        never recorded has nothing to wait for."""
        if self.cupy_event is not None:
            (stream or current_stream()).wait_event(self)

    def query(self):
        return self.cupy_event is None or self.cupy_event.done

    def synchronize(self):
        if self.cupy_event is not None:
            self.cupy_event.synchronize()

    def elapsed_time(self, end_event):
        cp = require("phalanx.cuda.Event.elapsed_time")
        if self.cupy_event is None or end_event.cupy_event is None:
            raise RuntimeError("elapsed_time: both events must be recorded first "
                               "(event.record())")
        return cp.cuda.get_elapsed_time(self.cupy_event, end_event.cupy_event)


def current_stream(device=None):
    cp = require("phalanx.cuda.current_stream()")
    idx = device_index(device, "phalanx.cuda.current_stream()")
    with cp.cuda.Device(idx):
        return Stream(idx, _cupy_stream=cp.cuda.get_current_stream())


def default_stream(device=None):
    cp = require("phalanx.cuda.default_stream()")
    idx = device_index(device, "phalanx.cuda.default_stream()")
    return Stream(idx, _cupy_stream=cp.cuda.Stream.null)


class StreamContext:
    """`with phalanx.cuda.stream(s):` queues GPU work on `s`; `stream(None)` does nothing."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        if self.stream is not None:
            self.stream.__enter__()
        return self.stream

    def __exit__(self, *exc):
        if self.stream is not None:
            self.stream.__exit__(*exc)
        return False


def stream(stream):
    return StreamContext(stream)
