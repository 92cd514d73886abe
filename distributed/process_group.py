"""The one abstract process group every backend implements (`mpi`, `nccl`, `zmq`, `local`).

It works on raw arrays (NumPy or CuPy, contiguous), in place where the MPI verb is in place;
the tensor-level API in `collectives.py` unwraps tensors and calls it. Methods are named after
the MPI verbs they perform. Every method returns a `Work`: backends that complete eagerly
return `Work.done()`; `async_op=False` callers simply `wait()` on it.
"""
import threading

import numpy as np

from . import shared_memory
from .reduce_op import ReduceOp


class Work:
    """Handle of one (possibly asynchronous) collective: `wait()`, `is_completed()`."""

    def __init__(self):
        self._event = threading.Event()
        self._error = None
        self._result = None

    @classmethod
    def done(cls, result=None):
        w = cls()
        w._result = result
        w._event.set()
        return w

    def set_result(self, result=None):
        self._result = result
        self._event.set()

    def set_error(self, exc):
        self._error = exc
        self._event.set()

    def is_completed(self):
        return self._event.is_set()

    def wait(self, timeout=None):
        if not self._event.wait(timeout):
            raise TimeoutError(f"collective did not complete within {timeout} s")
        if self._error is not None:
            raise self._error
        return True

    def result(self):
        self.wait()
        return self._result


class ProcessGroup:
    """A set of ranks that run collectives together.

    `rank` and `size` are positions within this group; `ranks` maps them to global ranks.
    Arrays are contiguous and have the same dtype and shape on every rank unless the verb says
    otherwise (all_gather inputs, all_to_all splits).
    """

    backend = "abstract"

    def __init__(self, rank, size, ranks=None):
        self.rank = rank
        self.size = size
        self.ranks = list(ranks) if ranks is not None else list(range(size))
        self._shared = shared_memory.Registry()

    # a zeroed flat array of `count` elements of `dtype` (an array of module `xp`) that this
    # group all-reduces fastest, for buffers reduced over and over (DDP's buckets). Collective.
    # It lies in memory that the group's ranks on one host map together, and `allreduce` on it
    # is a pass over that memory (across hosts: per host, shared_memory.py); backends check
    # `_shared.find(array)` and call its `allreduce`.
    def comm_buffer(self, count, dtype, xp):
        if xp is np and self.size > 1 and count > 0 and shared_memory.enabled():
            made = shared_memory.create(self, count, dtype)
            if made is not None:
                self._shared.add(*made)
                return made[0]
        return xp.zeros(count, dtype=dtype)

    # whether all-reducing `array` (a comm_buffer) is this rank's own computation over shared
    # memory, with no transport to wait on: overlapping it with computation gains nothing
    def reduces_locally(self, array):
        shared = self._shared.find(array)
        return shared is not None and shared.across is None

    # in-place on `array` on every rank
    def allreduce(self, array, op=ReduceOp.SUM) -> Work:
        raise NotImplementedError

    # in-place on `array`: root's values reach every rank
    def broadcast(self, array, root=0) -> Work:
        raise NotImplementedError

    # in-place on root's `array`; other ranks' arrays are left unspecified
    def reduce(self, array, root=0, op=ReduceOp.SUM) -> Work:
        raise NotImplementedError

    # `out` is (size, *array.shape); out[i] receives rank i's array
    def allgather(self, out, array) -> Work:
        raise NotImplementedError

    # `array` is (size, *out.shape); rank i receives the reduction of every rank's array[i]
    def reduce_scatter(self, out, array, op=ReduceOp.SUM) -> Work:
        raise NotImplementedError

    # on root, `out` is (size, *array.shape); elsewhere out is None
    def gather(self, out, array, root=0) -> Work:
        raise NotImplementedError

    # on root, `array` is (size, *out.shape); every rank receives its slice in `out`
    def scatter(self, out, array, root=0) -> Work:
        raise NotImplementedError

    # `array` and `out` are (size, ...); rank i's array[j] lands in rank j's out[i]
    def alltoall(self, out, array) -> Work:
        raise NotImplementedError

    def barrier(self) -> Work:
        raise NotImplementedError

    # a barrier on the calling thread, also from inside a running collective (shared-memory
    # all-reduces); `spin`: every rank has a core of its own, so waiting may busy-poll
    def barrier_now(self, spin):
        self.barrier().wait()

    def send(self, array, dst, tag=0) -> Work:
        raise NotImplementedError

    def recv(self, array, src, tag=0) -> Work:
        raise NotImplementedError

    # flat arrays, uneven all-to-all: rank i's array[sum(in_counts[:j]):][:in_counts[j]] lands in
    # rank j's out[sum(out_counts[:i]):][:out_counts[i]]. This default pads every block to the
    # largest one and calls `alltoall`; backends with a native verb override it.
    def alltoallv(self, out, out_counts, array, in_counts) -> Work:
        from ..tensor.backend import array_module
        xp = array_module(array)
        longest = xp.asarray([max(list(in_counts) + list(out_counts) + [0])], dtype=xp.int64)
        self.allreduce(longest, ReduceOp.MAX).wait()
        n = int(longest[0])
        send = xp.zeros((self.size, n), dtype=array.dtype)
        recv = xp.empty((self.size, n), dtype=out.dtype)
        for j, off in enumerate(_offsets(in_counts)):
            send[j, :in_counts[j]] = array[off:off + in_counts[j]]
        self.alltoall(recv, send).wait()
        for i, off in enumerate(_offsets(out_counts)):
            out[off:off + out_counts[i]] = recv[i, :out_counts[i]]
        return Work.done()

    # a new group of this group's members `ranks` (positions in this group), like
    # MPI_Comm_split: every member of this group calls it; non-members get None
    def split(self, ranks) -> "ProcessGroup":
        raise NotImplementedError(f"backend {self.backend!r} cannot create subgroups; "
                                  f"new_group() works on the mpi and zmq backends")

    # run `fn()` after every operation issued on this group before it, in the same order on
    # every rank (DDP's communication hooks run this way); collectives that `fn` issues on this
    # group run immediately inside it. The default runs it now: right for eager backends.
    def submit(self, fn) -> Work:
        work = Work()
        try:
            work.set_result(fn())
        except Exception as e:
            work.set_error(e)
        return work

    # picklable Python objects (object collectives); returns the list of every rank's object
    def allgather_object(self, obj) -> list:
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        raise NotImplementedError

    def abort(self, errorcode=1):
        """Bring every rank down now (used when a rank dies with an uncaught exception)."""
        raise NotImplementedError

    def shutdown(self):
        pass

    def __repr__(self):
        return f"<{type(self).__name__} backend={self.backend} rank={self.rank} size={self.size}>"


def _offsets(counts):
    out, total = [], 0
    for c in counts:
        out.append(total)
        total += c
    return out
