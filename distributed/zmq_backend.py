"""`ZmqProcessGroup`: CPU collectives over ZeroMQ TCP, for `phalanx run` jobs without MPI.

Three layers, one file each:
- `zmq_transport.py`: the sockets, their authentication by the job token, and the framing
  (`[msgpack header, raw payload]`, bounded frames and queues);
- `zmq_mailbox.py`: messages that arrived before they were wanted, point-to-point matching;
- `rings.py`: the algorithms (rings, chains, exchanges), written against a small `link`
  interface that another message transport could provide as well.
This file is the process group itself: it checks arguments, describes each collective, and
runs collectives through the group's `CommQueue`, one at a time in the order they were
issued: asynchronous ones on its communication thread, synchronous ones (`blocking`, and every
collective called with async_op=False) on the caller's thread, with no thread hand-off. Each
returns a `Work`. `submit(fn)` runs `fn` in that order too (DDP's communication hooks), and
`split` makes sub-groups through the store, under a prefix of their own. Point-to-point verbs
stay out of that queue, as MPI's do: a send goes out at once, and a receive completes when its
message is in, whoever reads the socket meanwhile, so `irecv` posted before `isend` on both
ranks cannot deadlock, and a receive never holds up the collectives behind it.

Every message of a collective carries its description (verb, reduce op, dtype, shape, root)
in its header, so a rank that calls the collective differently is found with no extra round
trip: the rank that sees it raises `CollectiveMismatchError` naming both ranks and both values,
and tells the other ranks, which raise it too. The library's own messages are never pickled;
the object collectives (`allgather_object`, `broadcast_object`) pickle as PyTorch's do, and
their bytes come only from peers that proved they hold the job token.
"""
import atexit
import contextlib
import os
import pickle
import sys
import weakref

import msgpack
import numpy as np

from ..tensor.dtypes import is_floating_np
from . import rings
from .comm_queue import DEFAULT_COLLECTIVE_TIMEOUT, CommQueue, blocking
from .debug import CollectiveMismatchError
from .process_group import ProcessGroup
from .reduce_op import UFUNCS, ReduceOp
from .zmq_mailbox import CollectiveError, Mailbox, Sent, p2p_description
from .zmq_transport import (CHUNK_BYTES, COLLECTIVE, ERROR, LINGER_SECONDS, P2P, Transport,
                            pack_header)

DEFAULT_TIMEOUT = DEFAULT_COLLECTIVE_TIMEOUT
BROKEN_LINGER_SECONDS = 1.0

__all__ = ["ZmqProcessGroup", "CollectiveError", "CollectiveMismatchError"]


def _shutdown_at_exit(ref):
    group = ref()
    if group is not None:
        group.shutdown()


def _check_array(array, what="array"):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"the zmq backend works on NumPy arrays, got {type(array).__name__} for "
                        f"{what}; use the nccl backend for GPU arrays")
    if not array.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (shape {array.shape}, strides "
                         f"{array.strides}); pass np.ascontiguousarray(x)")
    return array.reshape(-1)


def _describe(verb, array=None, op=None, **fields):
    """A collective's description, as every one of its messages carries it."""
    description = {"verb": verb}
    if op is not None:
        description["op"] = op.name
    if array is not None:
        description.update(dtype=_dtype_name(array.dtype), shape=list(array.shape))
    description.update(fields)
    return description


_DTYPE_NAMES = {}


def _dtype_name(dtype):
    """str(dtype), which NumPy computes anew each time (microseconds, on every collective)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def _show(description):
    fields = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                       for k, v in description.items() if k != "verb")
    return f"{description.get('verb')}({fields})"


class _Link:
    """The messages of one collective (number `seq`), for the algorithms in `rings.py`."""

    def __init__(self, group, seq, description):
        self.rank, self.size = group.rank, group.size
        self._group, self._seq, self._description = group, seq, description
        self._header = pack_header(COLLECTIVE, seq, description)

    @staticmethod
    def chunk_elems(itemsize):
        return max(1, CHUNK_BYTES // itemsize)

    def send(self, dst, flat):
        self._group._transport.send(dst, self._header, [flat], self._group._trackers)

    def recv(self, src, count, dtype):
        group = self._group
        description, payload = group._mailbox.wait_for(src, self._seq,
                                                       self._description["verb"])
        if description != self._description:
            group._mismatch(self._seq, src, description, self._description)
        nbytes = count * dtype.itemsize
        if len(payload) != nbytes:
            raise CollectiveError(
                f"rank {group.rank}: {_show(self._description)} (#{self._seq}) received "
                f"{len(payload)} bytes from rank {src} where {count} elements of {dtype} "
                f"({nbytes} bytes) were expected")
        if not count:
            return np.empty(0, dtype)
        return np.frombuffer(payload.buffer, dtype=dtype)


class ZmqProcessGroup(ProcessGroup):
    backend = "zmq"
    _default_groups = 0     # groups made under the default prefix in this process

    @classmethod
    def from_store(cls, store, rank, size, timeout=DEFAULT_TIMEOUT, prefix=None):
        """Join the group: publish our address under `prefix` in `store`, then connect to the
        `size - 1` peers. The prefix defaults to one per launcher attempt (run id and round)
        and per group made so in this process (every rank makes them in the same order), so a
        restarted group, or one made again after `destroy_process_group()`, never meets the
        addresses of the previous one."""
        if prefix is None:
            ZmqProcessGroup._default_groups += 1
            prefix = (f"zmq_pg/{os.environ.get('PHALANX_RUN_ID', 'none')}/"
                      f"{os.environ.get('PHALANX_RDZV_ROUND', '0')}/"
                      f"{ZmqProcessGroup._default_groups}")
        return cls(store, rank, size, timeout=timeout, prefix=prefix)

    def __init__(self, store, rank, size, timeout=DEFAULT_TIMEOUT, prefix="zmq_pg", ranks=None):
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is outside a group of size {size}")
        super().__init__(rank, size, ranks)
        self.timeout = float(timeout)
        self._store, self._prefix, self._splits = store, prefix, 0
        if store.add(f"{prefix}/members", 1) > size:     # two groups under one prefix would
            raise ValueError(                             # cross-wire their ranks silently
                f"rank {rank}: the store prefix {prefix!r} is already used by another group of "
                f"{size} ranks; give every ZmqProcessGroup a prefix of its own")
        self._transport = Transport(store, rank, size, prefix, self.timeout)
        self._queue = CommQueue(f"phalanx-zmq-{prefix}-{rank}")
        self._mailbox = Mailbox(self._transport, self.timeout, self._turn)
        self._seq = 0
        self._trackers = []
        self._broken = None
        self._closed = False
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    # -- running operations in issue order ------------------------------------------------------
    def _submit(self, fn, *args):
        return self._queue.post(lambda: self._guarded(fn, args), fn.__name__.lstrip("_"))

    def _collective(self, description, algorithm, *args):
        """Post `algorithm(link, *args)` as the group's next collective."""
        def run():
            self._seq += 1
            try:
                return algorithm(_Link(self, self._seq, description), *args)
            finally:
                self._mailbox.finished = self._seq
        run.__name__ = description["verb"]
        return self._submit(run)

    def _guarded(self, fn, args):
        """Run one operation; the first failure breaks the group (ranks are out of step)."""
        if self._broken is not None:
            raise CollectiveError(f"rank {self.rank}: the process group is broken by an "
                                  f"earlier failure: {self._broken}")
        try:
            result = fn(*args)
            self._flush_sends()
            return result
        except BaseException as e:
            self._broken = e
            raise

    def _turn(self):
        """What keeps collectives off the mailbox (a collective that asks already holds it)."""
        return contextlib.nullcontext() if self._queue.inside() else self._queue._turn

    def submit(self, fn):
        return self._queue.post(fn, getattr(fn, "__qualname__", "submitted function"))

    def _flush_sends(self):
        """Wait until ZeroMQ let go of every zero-copy buffer, so callers may reuse their arrays."""
        for tracker in self._trackers:
            while not tracker.done:
                tracker.wait(1.0)
        self._trackers.clear()

    def _mismatch(self, seq, src, theirs, mine):
        """Rank `src` calls collective `seq` differently: tell every peer, then raise."""
        text = (f"collective #{seq} does not match across the ranks of the zmq group: rank "
                f"{self.ranks[self.rank]} calls {_show(mine)}, rank {self.ranks[src]} calls "
                f"{_show(theirs)}. Every rank must call the same collectives in the same order "
                f"with the same shapes and dtypes (check rank-dependent branches and uneven "
                f"data shards).")
        header = pack_header(ERROR, seq, {})
        for r in range(self.size):
            if r != self.rank:
                self._transport.send(r, header, [text.encode()], [])
        raise CollectiveMismatchError(f"rank {self.ranks[self.rank]}: {text}")

    # -- collectives ----------------------------------------------------------------------------
    def allreduce(self, array, op=ReduceOp.SUM):
        flat, op = _check_array(array), ReduceOp(op)
        ufunc = self._ufunc(op, flat.dtype)
        shared = self._shared.find(array)
        if shared is not None:      # a comm_buffer: a pass over memory this host's ranks share
            return self._submit(shared.allreduce, array, op)
        return self._reduction(_describe("all_reduce", array, op), flat, ufunc, op)

    def reduce(self, array, root=0, op=ReduceOp.SUM):
        # A ring reduce-scatter plus a gather moves as much data as the all-reduce ring does.
        flat, op = _check_array(array), ReduceOp(op)
        return self._reduction(_describe("reduce", array, op, root=root), flat,
                               self._ufunc(op, flat.dtype), op)

    def _reduction(self, description, flat, ufunc, op):
        def reduce(link):
            rings.allreduce(link, flat, ufunc)
            if op is ReduceOp.AVG:
                np.divide(flat, self.size, out=flat)
        return self._collective(description, reduce)

    def broadcast(self, array, root=0):
        return self._collective(_describe("broadcast", array, root=root), rings.broadcast,
                                _check_array(array), root)

    def allgather(self, out, array):
        self._check_stacked(out, array, "allgather", "out")
        _check_array(array)
        return self._collective(_describe("all_gather", array), rings.allgather, out, array)

    def reduce_scatter(self, out, array, op=ReduceOp.SUM):
        self._check_stacked(array, out, "reduce_scatter", "array")
        _check_array(out, "out")
        op = ReduceOp(op)
        ufunc = self._ufunc(op, array.dtype)

        def reduce_scatter(link):
            rings.reduce_scatter(link, out, array, ufunc)
            if op is ReduceOp.AVG:
                np.divide(out, self.size, out=out)
        return self._collective(_describe("reduce_scatter", out, op),
                                reduce_scatter)

    def gather(self, out, array, root=0):
        _check_array(array)
        if self.rank == root:
            self._check_stacked(out, array, "gather", "out")
        return self._collective(_describe("gather", array, root=root), rings.gather, out,
                                array, root)

    def scatter(self, out, array, root=0):
        _check_array(out, "out")
        if self.rank == root:
            self._check_stacked(array, out, "scatter", "array")
        return self._collective(_describe("scatter", out, root=root), rings.scatter, out, array,
                                root)

    def alltoall(self, out, array):
        self._check_stacked(array, out[0], "alltoall", "array")
        _check_array(out, "out")
        return self._collective(_describe("all_to_all", array), rings.alltoall, out, array)

    def barrier(self):
        return self._collective(_describe("barrier"), rings.barrier)

    def barrier_now(self, spin):
        blocking(self.barrier)

    # -- point to point: outside the queue of collectives -------------------------------------
    def send(self, array, dst, tag=0):
        flat = _check_array(array)
        self._check_p2p(dst, "send to")
        trackers = []
        header = pack_header(P2P, int(tag), p2p_description(flat))
        self._transport.send(dst, header, rings.chunks(flat.view(np.uint8), CHUNK_BYTES),
                             trackers)
        return Sent(trackers)

    def recv(self, array, src, tag=0):
        flat = _check_array(array)
        if src is not None:
            self._check_p2p(src, "receive from")
        return self._mailbox.post_receive(flat, src, tag)

    def _check_p2p(self, peer, verb):
        if self._broken is not None:
            raise CollectiveError(f"rank {self.rank}: the process group is broken by an "
                                  f"earlier failure: {self._broken}")
        if not 0 <= peer < self.size or peer == self.rank:
            raise ValueError(f"rank {self.rank} cannot {verb} rank {peer}: peers are the other "
                             f"ranks of the group, 0..{self.size - 1}")

    # -- Python objects: pickle (as PyTorch) for the user's, msgpack for the library's ---------
    def allgather_object(self, obj):
        return [pickle.loads(b) for b in self._allgather_bytes("all_gather_object",
                                                                pickle.dumps(obj))]

    def broadcast_object(self, obj, root=0):
        data = pickle.dumps(obj) if self.rank == root else b""
        return pickle.loads(self._broadcast_bytes("broadcast_object", data, root))

    def allgather_plain(self, obj):
        return [msgpack.unpackb(b, raw=False, strict_map_key=False)
                for b in self._allgather_bytes("all_gather_plain",
                                               msgpack.packb(obj, use_bin_type=True))]

    def broadcast_plain(self, obj, root=0):
        data = msgpack.packb(obj, use_bin_type=True) if self.rank == root else b""
        return msgpack.unpackb(self._broadcast_bytes("broadcast_plain", data, root), raw=False,
                               strict_map_key=False)

    def _allgather_bytes(self, verb, data):
        return blocking(self._collective, _describe(verb), rings.allgather_bytes, data)

    def _broadcast_bytes(self, verb, data, root):
        return blocking(self._collective, _describe(verb, root=root), rings.broadcast_bytes,
                        data, root)

    # -- sub-groups ---------------------------------------------------------------------------
    def split(self, ranks):
        """A group of this group's members `ranks` (positions here); None on non-members.
        Every member of this group calls it, in the same order, so the n-th split has the same
        store prefix everywhere; members meet there as `from_store` ranks do."""
        ranks = list(ranks)
        self._splits += 1
        if self.rank not in ranks:
            return None
        return ZmqProcessGroup(self._store, ranks.index(self.rank), len(ranks),
                               timeout=self.timeout, prefix=f"{self._prefix}/split{self._splits}",
                               ranks=[self.ranks[r] for r in ranks])

    # -- lifetime ---------------------------------------------------------------------------------
    def abort(self, errorcode=1):
        """Exit this rank now; the launcher sees it and stops every other rank."""
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(errorcode)

    def shutdown(self):
        """Finish queued operations, deliver queued messages (up to the transport's linger),
        close."""
        if self._closed:
            return
        self._closed = True
        self._shared.close()
        self._queue.close(self.timeout)
        # messages still queued (a peer's last barrier message, the news of a mismatch) must
        # go out, but a broken group's peers may be gone: do not wait long for them
        self._transport.close(LINGER_SECONDS if self._broken is None else BROKEN_LINGER_SECONDS)

    # -- helpers ----------------------------------------------------------------------------------
    def _ufunc(self, op, dtype):
        op = ReduceOp(op)
        if op is ReduceOp.AVG and not is_floating_np(dtype):
            raise TypeError(f"ReduceOp.AVG needs a floating dtype, got {dtype}; use SUM and "
                            f"divide, or cast to float")
        return UFUNCS[op]

    def _check_stacked(self, stacked, one, verb, name):
        if stacked is None or tuple(stacked.shape) != (self.size, *one.shape) \
                or stacked.dtype != one.dtype:
            got = None if stacked is None else (tuple(stacked.shape), stacked.dtype)
            raise ValueError(f"{verb}: `{name}` must have shape {(self.size, *one.shape)} and "
                             f"dtype {one.dtype} (group size first), got {got}")
        _check_array(stacked, name)
