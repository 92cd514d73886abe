"""Buffers that ranks on one host map together, all-reduced by loads and stores, not messages.

DDP's gradient buckets live here: where all ranks of the group share a host, an all-reduce
costs each rank one pass over its 1/n share of every rank's buffer, where MPI or a TCP ring
copies the data through its own buffers several times (7 MB on 2 ranks: 0.13 ms here, 1.6 ms
through MPICH). Where the group spans hosts that each run the same number L > 1 of its ranks,
the all-reduce is hierarchical: each rank reduces its 1/L share on its host, all-reduces that
share with its counterparts on the other hosts through the backend (L such all-reduces run at
once, each over 1/L of the data), and copies the result back to its host's buffers.

`SharedBuffer.create` is collective over one host's ranks. The host's first rank creates a file
in /dev/shm with room for one buffer per rank and reserves its memory (a tmpfs too small for it
fails here, not with a SIGBUS later); every rank maps it and says whether it could, and unless
all could (in containers with a /dev/shm of their own, say) the group falls back to private
memory and the backend's own all-reduce. Then the file is unlinked: the memory lives exactly
as long as the arrays that view it.

On a host, between two barriers: rank r owns the r-th chunk of every buffer; it reduces that
chunk of all ranks' buffers into its own, in cache-sized blocks, and copies each reduced block
into the other ranks' buffers. Each element is computed once, so every rank ends with
bit-identical values. The barriers are the backend's (`barrier_now`: MPI's spins where every
rank has a core of its own, and waits without spinning where ranks share cores).
"""
import mmap
import os
import socket
import weakref

import numpy as np

from ..tensor.dtypes import is_floating_np
from . import shm_files
from .reduce_op import UFUNCS, ReduceOp

DIRECTORY = "/dev/shm"
BLOCK_BYTES = 256 << 10            # a block of every rank's chunk stays in cache while reduced
_ALIGN = 64


def enabled():
    """PHALANX_SHARED_MEMORY=0 turns the shared-memory path off (everything goes through the
    backend's own collectives)."""
    return os.environ.get("PHALANX_SHARED_MEMORY", "1") != "0" and os.path.isdir(DIRECTORY)


def host_id():
    """What tells hosts apart: the host name and the kernel's boot id."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def create(group, count, dtype):
    """(this rank's zeroed view, SharedBuffer) for an all-reduce over `group`, or None where
    shared memory cannot serve it. Every rank of `group` calls it with the same arguments."""
    registry = group._shared
    if registry.layout is Registry.UNKNOWN:
        registry.layout = _layout(group)
    if registry.layout is None:
        return None
    host, across = registry.layout
    made = SharedBuffer.create(host, count, dtype, across)
    if across is not None and not all(group.allgather_plain(made is not None)):
        return None                          # some host could not: nobody uses it
    return made


def _layout(group):
    """(the group's ranks on this host, this rank's counterparts on the other hosts or None on
    a single host), or None where the hosts run different numbers of the group's ranks or one
    each (nothing to share). Collective; made once per group."""
    hosts = group.allgather_plain(host_id())
    members = {}
    for rank, host in enumerate(hosts):
        members.setdefault(host, []).append(rank)
    if len(members) == 1:
        return group, None
    per_host = sorted(members.values())
    local = len(per_host[0])
    if local == 1 or any(len(m) != local for m in per_host):
        return None
    # every rank makes every split, in the same order; each gets its own two groups back
    mine = [group.split(m) for m in per_host] + \
        [group.split([m[i] for m in per_host]) for i in range(local)]
    host, across = [g for g in mine if g is not None]
    return host, across


class SharedBuffer:
    """The views of one shared buffer held by the other ranks on this host, and the all-reduce
    over all of them. The caller owns this rank's view (`create` returns it); the registry in
    the process group maps it back here for as long as it lives."""

    def __init__(self, host, others, count, dtype, own_cores, across=None):
        self.host = host                     # the group of the ranks that map the buffer
        self.others = others                 # the other ranks' views, in rank order
        self.across = across                 # this rank's counterparts on other hosts, if any
        self.own_cores = own_cores           # every rank has a core to itself: waits may spin
        rank, size = host.rank, host.size
        self.start, self.stop = count * rank // size, count * (rank + 1) // size
        self.block = max(1, BLOCK_BYTES // np.dtype(dtype).itemsize)

    @classmethod
    def create(cls, host, count, dtype, across=None):
        """(this rank's zeroed view, SharedBuffer), or None where the ranks of `host` cannot
        share memory. Every rank of `host` calls it with the same count and dtype."""
        dtype = np.dtype(dtype)
        stride = -(-count * dtype.itemsize // _ALIGN) * _ALIGN
        path = None
        if host.rank == 0:
            path = _reserve(stride * host.size)
        path = host.broadcast_plain(path, 0)
        if path is None:
            return None
        mapping = _map(path)
        reports = host.allgather_plain([mapping is not None, _cores()])
        if host.rank == 0:
            os.unlink(path)                  # every rank has it mapped, or gave up
        if not all(mapped for mapped, _ in reports):
            return None
        cores = set().union(*(c for _, c in reports))
        views = [np.frombuffer(mapping, dtype, count, offset=k * stride)
                 for k in range(host.size)]
        mine = views.pop(host.rank)
        return mine, cls(host, views, count, dtype, len(cores) >= host.size, across)

    def allreduce(self, mine, op):
        """Reduce every rank's buffer with `op`, in place on all of them. The first barrier
        waits until every rank's data is written, the second until every rank is done reading
        and writing the others'."""
        op = ReduceOp(op)
        ufunc = UFUNCS[op]
        self.host.barrier_now(self.own_cores)
        if self.across is None:
            self._pass(mine, ufunc, self.host.size if op is ReduceOp.AVG else None, copy=True)
        else:
            from .comm_queue import blocking    # here: comm_queue imports process_group
            self._pass(mine, ufunc)
            blocking(self.across.allreduce, mine[self.start:self.stop],
                     ReduceOp.SUM if op is ReduceOp.AVG else op)
            total = self.host.size * self.across.size
            self._pass(mine, None, total if op is ReduceOp.AVG else None, copy=True)
        self.host.barrier_now(self.own_cores)

    def _pass(self, mine, ufunc=None, divisor=None, copy=False):
        """One blocked pass over this rank's share of the buffers: reduce the other ranks'
        into this one's with `ufunc`, divide by `divisor`, copy the result into the others'
        (each step where asked)."""
        for lo in range(self.start, self.stop, self.block):
            hi = min(lo + self.block, self.stop)
            acc = mine[lo:hi]
            if ufunc is not None:
                for view in self.others:
                    ufunc(acc, view[lo:hi], out=acc)
            if divisor is not None:
                _average(acc, divisor)
            if copy:
                for view in self.others:
                    view[lo:hi] = acc


def _cores():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _average(a, n):
    if is_floating_np(a.dtype):
        a *= 1 / n                           # in cache: multiplying is cheap, dividing is not
    else:
        a //= n


def _reserve(nbytes):
    """Create and reserve a file of `nbytes` in DIRECTORY; its path, or None if that failed."""
    path = os.path.join(DIRECTORY, shm_files.file_name())   # names its maker, for cleanup
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
    """This rank's shared buffers of one group, found again from the array a collective gets,
    and the group's layout over hosts (made when the first buffer is)."""

    UNKNOWN = object()

    def __init__(self):
        self._buffers = {}
        self.layout = Registry.UNKNOWN

    def close(self):
        """Shut down the sub-groups the layout made (when the group itself shuts down)."""
        layout, self.layout = self.layout, Registry.UNKNOWN
        if layout not in (None, Registry.UNKNOWN) and layout[1] is not None:
            for sub in layout:
                sub.shutdown()

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
