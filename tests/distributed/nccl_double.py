"""A test double of `cupy.cuda.nccl` and `cupy.cuda` over host memory, for the nccl backend's
logic without a GPU: communicators of one unique id meet in this process (ranks are threads);
NCCL calls read and write the host addresses the group passes, and every call, event record
and stream wait is logged in order, so tests can check the stream ordering too.
"""
import ctypes
import itertools
import queue
import threading
import types

import numpy as np

DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64,
          6: np.float16, 7: np.float32, 8: np.float64}
SUM, PROD, MAX, MIN, AVG = range(5)


def _view(ptr, count, datatype):
    dtype = np.dtype(DTYPES[datatype])
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count)


class _World:
    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=10)
        self.slots = [None] * size
        self.mail = {}
        self.lock = threading.Lock()

    def box(self, src, dst):
        with self.lock:
            return self.mail.setdefault((src, dst), queue.Queue())


def make_nccl(version=21800, log=None, id_type=bytes):
    """A module object with NCCL's constants, get_unique_id, group calls and communicator.
    The unique id is bytes, as in CuPy 14; `id_type=tuple`: signed chars, as in CuPy 13 (the
    communicator refuses the other type, as Cython's typed argument does)."""
    worlds, lock = {}, threading.Lock()
    counter = itertools.count(1)
    log = [] if log is None else log
    grouped = threading.local()

    def get_unique_id():
        n = next(counter)
        raw = bytes((n * 7 + i) % 256 for i in range(128))
        return raw if id_type is bytes else tuple(b - 256 if b > 127 else b for b in raw)

    def groupStart():
        grouped.depth = getattr(grouped, "depth", 0) + 1
        grouped.__dict__.setdefault("calls", [])

    def groupEnd():
        grouped.depth -= 1
        if grouped.depth == 0:
            calls, grouped.calls = grouped.calls, []
            for kind, fn in sorted(calls, key=lambda c: c[0] != "send"):  # sends first
                fn()

    class NcclCommunicator:
        def __init__(self, ndev, commId, rank):
            if type(commId) is not id_type:
                raise TypeError(f"Argument 'commId' has incorrect type (expected "
                                f"{id_type.__name__}, got {type(commId).__name__})")
            with lock:
                self.world = worlds.setdefault(tuple(commId), _World(ndev))
            self.rank, self.ndev = rank, ndev
            self.aborted = self.destroyed = False
            self.async_error = None
            self.calls = []

        def _collective(self, name, mine, combine, stream):
            log.append(("nccl", name, stream))
            self.calls.append(name)
            w = self.world
            w.slots[self.rank] = mine.copy()
            w.barrier.wait()
            result = combine(w.slots)
            w.barrier.wait()
            return result

        def allReduce(self, send, recv, count, datatype, op, stream):
            a = _view(send, count, datatype)
            self.calls.append(("allReduce", datatype, op))
            out = self._collective("allReduce", a, lambda s: _reduce(s, op), stream)
            _view(recv, count, datatype)[...] = out

        def reduce(self, send, recv, count, datatype, op, root, stream):
            a = _view(send, count, datatype)
            self.calls.append(("reduce", datatype, op))
            out = self._collective("reduce", a, lambda s: _reduce(s, op), stream)
            if self.rank == root:
                _view(recv, count, datatype)[...] = out

        def broadcast(self, send, recv, count, datatype, root, stream):
            a = _view(send, count, datatype)
            out = self._collective("broadcast", a, lambda s: s[root].copy(), stream)
            _view(recv, count, datatype)[...] = out

        def allGather(self, send, recv, count, datatype, stream):
            a = _view(send, count, datatype)
            out = self._collective("allGather", a, lambda s: np.concatenate(s), stream)
            _view(recv, count * self.ndev, datatype)[...] = out

        def reduceScatter(self, send, recv, recvcount, datatype, op, stream):
            a = _view(send, recvcount * self.ndev, datatype)
            self.calls.append(("reduceScatter", datatype, op))
            out = self._collective("reduceScatter", a, lambda s: _reduce(s, op), stream)
            _view(recv, recvcount, datatype)[...] = out[self.rank * recvcount:][:recvcount]

        def send(self, buf, count, datatype, peer, stream):
            data = _view(buf, count, datatype).copy()
            log.append(("nccl", "send", stream))
            self.calls.append(("send", peer))
            self._in_group("send", lambda: self.world.box(self.rank, peer).put(data))

        def recv(self, buf, count, datatype, peer, stream):
            log.append(("nccl", "recv", stream))
            self.calls.append(("recv", peer))

            def take():
                data = self.world.box(peer, self.rank).get(timeout=10)
                _view(buf, count, datatype)[...] = data
            self._in_group("recv", take)

        def _in_group(self, kind, fn):
            if getattr(grouped, "depth", 0):
                grouped.calls.append((kind, fn))
            else:
                fn()

        def check_async_error(self):
            if self.async_error is not None:
                raise RuntimeError(self.async_error)

        def abort(self):
            self.aborted = True
            self.world.barrier.abort()

        def destroy(self):
            self.destroyed = True

    names = ["NCCL_INT8", "NCCL_UINT8", "NCCL_INT32", "NCCL_UINT32", "NCCL_INT64",
             "NCCL_UINT64", "NCCL_FLOAT16", "NCCL_FLOAT32", "NCCL_FLOAT64"]
    module = types.SimpleNamespace(
        **{name: i for i, name in enumerate(names)},
        NCCL_SUM=SUM, NCCL_PROD=PROD, NCCL_MAX=MAX, NCCL_MIN=MIN,
        get_version=lambda: version, get_unique_id=get_unique_id, groupStart=groupStart,
        groupEnd=groupEnd, NcclCommunicator=NcclCommunicator, available=True, log=log)
    if version >= 21000:
        module.NCCL_AVG = AVG
    return module


def _reduce(slots, op):
    stack = np.stack(slots)
    if op == SUM:
        return stack.sum(0, dtype=stack.dtype)
    if op == PROD:
        return stack.prod(0, dtype=stack.dtype)
    if op == MAX:
        return stack.max(0)
    if op == MIN:
        return stack.min(0)
    if op == AVG:
        return (stack.sum(0, dtype=stack.dtype) / len(slots)).astype(stack.dtype)
    raise ValueError(op)


def make_cuda(log):
    """Streams and events that log what they do; an event is done unless `stuck` is set."""
    ptrs = itertools.count(1000)
    state = types.SimpleNamespace(stuck=False)

    class Stream:
        def __init__(self, non_blocking=False):
            self.ptr = next(ptrs)
            self.waited = []

        def wait_event(self, event):
            log.append(("wait", self.ptr, event.id))
            self.waited.append(event)

        def synchronize(self):
            pass

        def __enter__(self):
            log.append(("enter", self.ptr))
            return self

        def __exit__(self, *exc):
            log.append(("exit", self.ptr))

    current = Stream()
    ids = itertools.count(1)

    class Event:
        def __init__(self, disable_timing=False):
            self.id = next(ids)

        def record(self, stream=None):
            log.append(("record", (stream or current).ptr, self.id))

        @property
        def done(self):
            return not state.stuck

        def synchronize(self):
            pass

    return types.SimpleNamespace(Stream=Stream, Event=Event, get_current_stream=lambda: current,
                                 current=current, state=state)


class FakeStore:
    """The store calls the backend makes (set, get, check), on a dict shared by the ranks."""

    def __init__(self):
        self.data, self.lock = {}, threading.Lock()

    def set(self, key, value):
        with self.lock:
            self.data[key] = value.encode() if isinstance(value, str) else bytes(value)

    def get(self, key, timeout=None):
        with self.lock:
            return self.data[key]

    def check(self, keys):
        with self.lock:
            return all(k in self.data for k in keys)
