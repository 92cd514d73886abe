"""The one abstract process group every backend implements (`mpi`, `nccl`, `zmq`, `local`).

It works on raw arrays (NumPy or CuPy, contiguous), in place where the MPI verb is in place;
the tensor-level API in `collectives.py` unwraps tensors and calls it. Methods are named after
the MPI verbs they perform, and their docstrings are the contract. Every method returns a
`Work`: backends that complete eagerly return `Work.done()`; `async_op=False` callers simply
`wait()` on it.
"""
import threading

import msgpack
import numpy as np

from . import shared_memory
from .reduce_op import ReduceOp


class Work:
    """Handle of one (possibly asynchronous) collective: `wait()`, `is_completed()`."""
    polls_from_any_thread = True     # is_completed() may be called from any thread

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

    def get_future(self):
        """A `phalanx.futures.Future` of this work: its value is the list of the call's output
        tensors (empty for calls without one), as in PyTorch."""
        from ..futures import Future
        return Future._of_work(self, list(getattr(self, "outputs", None) or []))


class CallableInt(int):
    """A group's `rank` and `size`: numbers, that PyTorch code may also call as its
    ProcessGroup methods (`group.size()`, as PyTorch's own hook examples do)."""
    __slots__ = ()

    def __call__(self):
        return int(self)


class ProcessGroup:
    """A set of ranks that run collectives together: the contract every backend implements.

    `rank` and `size` are positions within this group; `ranks` maps them to global ranks.
    Arrays are NumPy or CuPy arrays, C-contiguous, with the same dtype and shape on every rank
    unless the verb says otherwise; a verb writes its results in place into the arrays it is
    given. Every rank of the group calls the collectives in the same order; each returns a
    `Work` at once (backends that complete eagerly return `Work.done()`), and the arrays it was
    given belong to it until that `Work` completes. A backend that finds ranks disagreeing on a
    collective's dtype or shape raises `CollectiveMismatchError` rather than returning garbage
    where it can tell at no extra cost (debug mode checks every backend, `debug.py`).
    Backends register by name in `world.py`; DDP, SyncBatchNorm and ZeRO use only this contract.
    """

    backend = "abstract"
    shares_host_memory = True   # False for backends whose buffers live on a device (nccl)
    device_types = ("cpu",)     # whose arrays the verbs take (get_backend_config says so)

    def __init__(self, rank, size, ranks=None):
        self.rank = CallableInt(rank)
        self.size = CallableInt(size)
        self.ranks = list(ranks) if ranks is not None else list(range(size))
        self._shared = shared_memory.Registry()

    def comm_buffer(self, count, dtype, xp):
        """A zeroed flat array of `count` elements of `dtype` (an array of module `xp`) that
        this group all-reduces fastest, for buffers reduced over and over (DDP's buckets).
        Collective. It lies in memory that the group's ranks on one host map together, and
        `allreduce` on it is a pass over that memory (across hosts: per host, see
        shared_memory.py); backends ask `shared_buffer(array)` and call its `allreduce`.
        This is the one place that decides: host (NumPy) buffers of host-memory backends
        only; device arrays never take this path."""
        if xp is np and self.shares_host_memory and self.size > 1 and count > 0 \
                and shared_memory.enabled():
            made = shared_memory.create(self, count, dtype)
            if made is not None:
                self._shared.add(*made)
                return made[0]
        return xp.zeros(count, dtype=dtype)

    def shared_buffer(self, array):
        """The shared-memory segment behind `array` when it is one of this group's host
        comm_buffers, else None (always None for device arrays)."""
        if type(array) is not np.ndarray:
            return None
        return self._shared.find(array)

    def reduces_locally(self, array):
        """Whether all-reducing `array` (a comm_buffer) is this rank's own computation over
        shared memory, with no transport to wait on: overlapping it with computation gains
        nothing."""
        shared = self.shared_buffer(array)
        return shared is not None and shared.across is None

    def allreduce(self, array, op=ReduceOp.SUM) -> Work:
        """Reduce `array` over the ranks with `op`, in place on every rank."""
        raise NotImplementedError

    def broadcast(self, array, root=0) -> Work:
        """Copy root's `array` into `array` on every rank."""
        raise NotImplementedError

    def reduce(self, array, root=0, op=ReduceOp.SUM) -> Work:
        """Reduce into root's `array`; other ranks' arrays are left unspecified."""
        raise NotImplementedError

    def allgather(self, out, array) -> Work:
        """`out` is (size, *array.shape); out[i] receives rank i's array."""
        raise NotImplementedError

    def reduce_scatter(self, out, array, op=ReduceOp.SUM) -> Work:
        """`array` is (size, *out.shape); rank i's `out` receives the reduction of every
        rank's array[i]."""
        raise NotImplementedError

    def gather(self, out, array, root=0) -> Work:
        """On root, `out` is (size, *array.shape) and out[i] receives rank i's array;
        elsewhere `out` is None."""
        raise NotImplementedError

    def scatter(self, out, array, root=0) -> Work:
        """On root, `array` is (size, *out.shape); rank i's `out` receives root's array[i].
        Elsewhere `array` is None."""
        raise NotImplementedError

    def alltoall(self, out, array) -> Work:
        """`array` and `out` are (size, ...); rank i's array[j] lands in rank j's out[i]."""
        raise NotImplementedError

    def barrier(self) -> Work:
        """Complete once every rank of the group has called it."""
        raise NotImplementedError

    def barrier_now(self, spin):
        """A barrier on the calling thread, also from inside a running collective
        (shared-memory all-reduces); `spin`: every rank has a core of its own, so waiting may
        busy-poll."""
        self.barrier().wait()

    def send(self, array, dst, tag=0) -> Work:
        """Send `array` to rank `dst`, outside the order of the collectives (as MPI's isend);
        `array` must stay unchanged until the Work completes."""
        raise NotImplementedError

    def recv(self, array, src, tag=0) -> Work:
        """Receive into `array` a message of its size and dtype from rank `src` (None: any)
        with `tag` (None: any); receives match in the order they were posted. The completed
        Work's result is the sender's rank."""
        raise NotImplementedError

    def alltoallv(self, out, out_counts, array, in_counts) -> Work:
        """Uneven all-to-all of flat arrays: rank i's array[sum(in_counts[:j]):][:in_counts[j]]
        lands in rank j's out[sum(out_counts[:i]):][:out_counts[i]]. This default pads every
        block to the largest one and calls `alltoall`; backends with a native verb override
        it."""
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

    def split(self, ranks) -> "ProcessGroup":
        """A new group of this group's members `ranks` (positions in this group), like
        MPI_Comm_split: every member of this group calls it, in the same order; non-members
        get None."""
        raise NotImplementedError(f"backend {self.backend!r} cannot create subgroups; "
                                  f"new_group() works on the mpi and zmq backends")

    def submit(self, fn) -> Work:
        """Run `fn()` after every operation issued on this group before it, in the same order
        on every rank (DDP's communication hooks run this way); collectives that `fn` issues
        on this group run immediately inside it. The default runs it now: right for eager
        backends."""
        work = Work()
        try:
            work.set_result(fn())
        except Exception as e:
            work.set_error(e)
        return work

    def allgather_object(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order (PyTorch's object collectives pickle;
        a backend unpickles only what comes from ranks of its job)."""
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        """Root's picklable `obj` on every rank."""
        raise NotImplementedError

    def allgather_plain(self, obj) -> list:
        """Every rank's `obj`, in rank order, for the library's own control data: msgpack
        types only (None, bool, int, float, str, bytes, lists, dicts; tuples come back as
        lists), never pickled, so nothing a peer sends is executed. This default moves the
        msgpack bytes with `allgather`; backends may send them directly."""
        data = np.frombuffer(msgpack.packb(obj, use_bin_type=True), np.uint8)
        lengths = np.zeros((self.size, 1), np.int64)
        self.allgather(lengths, np.array([data.size], np.int64)).wait()
        padded = np.zeros(int(lengths.max()), np.uint8)
        padded[:data.size] = data
        everyone = np.zeros((self.size, padded.size), np.uint8)
        self.allgather(everyone, padded).wait()
        return [msgpack.unpackb(everyone[r, :lengths[r, 0]].tobytes(), raw=False,
                                strict_map_key=False) for r in range(self.size)]

    def broadcast_plain(self, obj, root=0):
        """Root's `obj` (msgpack types, as `allgather_plain`) on every rank."""
        return self.allgather_plain(obj if self.rank == root else None)[root]

    def abort(self, errorcode=1):
        """Bring every rank down now (used when a rank dies with an uncaught exception)."""
        raise NotImplementedError

    def shutdown(self):
        """Finish what was issued, release the group's resources; the group is unusable
        afterwards. Called by destroy_process_group and at exit."""

    def __repr__(self):
        return f"<{type(self).__name__} backend={self.backend} rank={self.rank} size={self.size}>"


def _offsets(counts):
    out, total = [], 0
    for c in counts:
        out.append(total)
        total += c
    return out
