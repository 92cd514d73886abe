"""Buffers that every rank on one host maps, all-reduced by loads and stores instead of messages.

DDP's gradient buckets live here when all ranks of the group share a host: an all-reduce then
costs each rank one pass over its 1/n share of every rank's buffer, where MPI or a TCP ring
copies the data through its own buffers several times (7 MB on 2 ranks: 0.13 ms here, 1.6 ms
through MPICH).

`SharedBuffer.create` is collective. Rank 0 creates a file in /dev/shm with room for one buffer
per rank and reserves its memory (a tmpfs too small for it fails here, not with a SIGBUS later);
every rank maps it and says whether it could, and unless all could (ranks on other hosts, or in
containers with a /dev/shm of their own) the group falls back to private memory. Then the file
is unlinked: the memory lives exactly as long as the arrays that view it.

All-reduce, between two barriers of the group: rank r owns the r-th chunk of every buffer; it
reduces that chunk of all ranks' buffers into its own, in cache-sized blocks, and copies each
reduced block into the other ranks' buffers. Each element is computed once, so every rank ends
with bit-identical values. The barriers are the backend's (MPI's spins where every rank has a
core of its own, and waits without spinning where ranks share cores).
"""
import mmap
import os
import secrets
import weakref

import numpy as np

from .reduce_op import UFUNCS, ReduceOp

DIRECTORY = "/dev/shm"
BLOCK_BYTES = 256 << 10            # a block of every rank's chunk stays in cache while reduced
_ALIGN = 64


def enabled():
    """PHALANX_SHARED_MEMORY=0 turns the shared-memory path off (everything goes through the
    backend's own collectives)."""
    return os.environ.get("PHALANX_SHARED_MEMORY", "1") != "0" and os.path.isdir(DIRECTORY)


class SharedBuffer:
    """The other ranks' views of one shared buffer, and the all-reduce over all of them. The
    caller owns this rank's view (`create` returns it); the registry in the process group maps
    it back here for as long as it lives."""

    def __init__(self, others, rank, size, count, dtype, own_cores):
        self.others = others                 # the other ranks' views, in rank order
        self.size = size
        self.own_cores = own_cores           # every rank has a core to itself: waits may spin
        self.start, self.stop = count * rank // size, count * (rank + 1) // size
        self.block = max(1, BLOCK_BYTES // np.dtype(dtype).itemsize)

    @classmethod
    def create(cls, group, count, dtype):
        """(this rank's zeroed view, SharedBuffer), or None where the ranks cannot share
        memory. Every rank of `group` calls it with the same count and dtype."""
        dtype = np.dtype(dtype)
        stride = -(-count * dtype.itemsize // _ALIGN) * _ALIGN
        path = None
        if group.rank == 0:
            path = _reserve(stride * group.size)
        path = group.broadcast_object(path, 0)
        if path is None:
            return None
        mapping = _map(path)
        reports = group.allgather_object((mapping is not None, _cores()))
        if group.rank == 0:
            os.unlink(path)                  # every rank has it mapped, or gave up
        if not all(mapped for mapped, _ in reports):
            return None
        cores = set().union(*(c for _, c in reports))
        views = [np.frombuffer(mapping, dtype, count, offset=k * stride)
                 for k in range(group.size)]
        mine = views.pop(group.rank)
        return mine, cls(views, group.rank, group.size, count, dtype,
                         own_cores=len(cores) >= group.size)

    def allreduce(self, mine, op, barrier):
        """Reduce every rank's buffer with `op`, in place on all of them; `barrier()` is the
        group's (the first waits until every rank's data is written, the second until every
        rank is done reading and writing the others')."""
        op = ReduceOp(op)
        ufunc = UFUNCS[op]
        barrier()
        for lo in range(self.start, self.stop, self.block):
            hi = min(lo + self.block, self.stop)
            acc = mine[lo:hi]
            for view in self.others:
                ufunc(acc, view[lo:hi], out=acc)
            if op is ReduceOp.AVG:
                _average(acc, self.size)
            for view in self.others:
                view[lo:hi] = acc
        barrier()


def _cores():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _average(a, n):
    if a.dtype.kind in "fc":
        a *= 1 / n                           # in cache: multiplying is cheap, dividing is not
    else:
        a //= n


def _reserve(nbytes):
    """Create and reserve a file of `nbytes` in DIRECTORY; its path, or None if that failed."""
    path = os.path.join(DIRECTORY, f"phalanx-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, nbytes)
        return path
    except OSError:                          # no room: private memory instead
        os.unlink(path)
        return None
    finally:
        os.close(fd)


def _map(path):
    """The file at `path` mapped shared, or None if this rank cannot (another host's or
    container's /dev/shm does not have it)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        return mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        return None
    finally:
        os.close(fd)


class Registry:
    """This rank's shared buffers of one group, found again from the array a collective gets."""

    def __init__(self):
        self._buffers = {}

    def add(self, mine, shared):
        key = _key(mine)
        self._buffers[key] = shared
        weakref.finalize(mine, self._buffers.pop, key, None)

    def find(self, array):
        """The SharedBuffer whose this-rank view is exactly `array`, else None."""
        if not self._buffers or type(array) is not np.ndarray:
            return None
        return self._buffers.get(_key(array))


def _key(array):
    return array.__array_interface__["data"][0], array.size, array.dtype.str
