"""`phalanx.cuda.Stream` / `Event` on several GPUs, checked on the CPU through a stand-in for
CuPy that enforces CuPy's and CUDA's rules: a stream becomes current only while its GPU is
current (CuPy's `check_stream_device_match`), and an event is recorded only on a stream of the
GPU it was made on (CUDA). PyTorch's semantics: `with stream(s)` makes s's GPU current too, an
event is made on the GPU of its first stream, an event never recorded is complete.
"""
import types

import pytest

from phalanx import cuda
from phalanx.cuda import _state

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(60)]


def _fake_cupy():
    state = types.SimpleNamespace(device=0, streams={0: [], 1: []}, log=[])

    class Device:
        def __init__(self, idx):
            self.idx = idx

        def __enter__(self):
            self.prev, state.device = state.device, self.idx

        def __exit__(self, *exc):
            state.device = self.prev

    class Stream:
        null = None

        def __init__(self, non_blocking=False, priority=None):
            self.device_id, self.ptr = state.device, id(self)

        def __enter__(self):
            if self.device_id not in (-1, state.device):
                raise RuntimeError("The device where the stream is created and the current "
                                   "device differ")
            state.streams[state.device].append(self)

        def __exit__(self, *exc):
            state.streams[state.device].pop()

        def wait_event(self, event):
            state.log.append(("wait", self.ptr, event))

    Stream.null = Stream()
    Stream.null.device_id = -1

    class Event:
        def __init__(self, block=False, disable_timing=False):
            self.device_id, self.done = state.device, True

        def record(self, stream):
            if stream.device_id not in (-1, self.device_id):
                raise RuntimeError("cudaErrorInvalidResourceHandle")
            state.log.append(("record", stream.ptr, self))

    def current_stream():
        stack = state.streams[state.device]
        return stack[-1] if stack else Stream.null

    runtime = types.SimpleNamespace(getDevice=lambda: state.device, getDeviceCount=lambda: 2)
    cp = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=Device, Stream=Stream, Event=Event, runtime=runtime,
        get_current_stream=current_stream))
    return cp, state


@pytest.fixture
def fake(monkeypatch):
    cp, state = _fake_cupy()
    monkeypatch.setattr(_state, "_probe", [(cp, None)])
    monkeypatch.setattr(_state.backend, "cupy", lambda: cp)
    return state


def test_with_stream_makes_its_gpu_current_and_restores(fake):
    s1 = cuda.Stream(device=1)
    assert fake.device == 0
    with cuda.stream(s1):
        assert fake.device == 1
        assert cuda.current_stream().cupy_stream is s1.cupy_stream
        with cuda.stream(s1):                   # re-entered
            assert fake.device == 1
        assert fake.device == 1
    assert fake.device == 0 and fake.streams == {0: [], 1: []}


def test_an_event_is_made_on_the_gpu_of_its_first_stream(fake):
    s1 = cuda.Stream(device=1)
    e = cuda.Event()
    assert e.query()                            # never recorded: complete, as in PyTorch
    e.wait()                                    # nothing to wait for
    s1.wait_event(e)
    assert fake.log == []
    e.record(s1)                                # on GPU 1 while GPU 0 is current
    assert e.cupy_event.device_id == 1
    s0 = cuda.current_stream()
    s0.wait_event(e)
    assert fake.log[-1] == ("wait", s0.cupy_stream.ptr, e.cupy_event)
    with pytest.raises(RuntimeError, match="recorded first"):
        e.elapsed_time(cuda.Event(enable_timing=True))


def test_wait_stream_orders_one_stream_after_another_on_two_gpus(fake):
    s0, s1 = cuda.Stream(device=0), cuda.Stream(device=1)
    s0.wait_stream(s1)
    kinds = [entry[0] for entry in fake.log]
    assert kinds == ["record", "wait"]
    assert fake.log[0][1] == s1.cupy_stream.ptr and fake.log[1][1] == s0.cupy_stream.ptr
