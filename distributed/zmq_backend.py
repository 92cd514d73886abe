"""`ZmqProcessGroup`: CPU collectives over ZeroMQ TCP, for `phalanx run` jobs without MPI.

Each rank binds one PULL socket, publishes its address in the store and connects one PUSH socket
per peer. Every message is `[header, payload]`; the 16-byte header names the sender, the kind
(collective or point-to-point) and the collective's sequence number or the p2p tag, and messages
that arrive before they are wanted wait in a mailbox. ZeroMQ keeps each sender→receiver stream in
order, so the chunks of one collective need no numbering.

Collectives run one at a time in the order they were issued, through the group's `CommQueue`:
asynchronous ones on its communication thread, synchronous ones (`blocking`, and every
collective called with async_op=False) on the caller's thread, with no thread hand-off. Each
returns a `Work`. `submit(fn)` runs `fn` in that order too (DDP's communication hooks), and
`split` makes sub-groups through the store, under a prefix of their own. Point-to-point verbs
stay out of that queue, as MPI's do: a send goes out at once, and a receive completes when its
message is in, whoever reads the socket meanwhile, so `irecv` posted before `isend` on both
ranks cannot deadlock, and a receive never holds up the collectives behind it.

Full chunks and larger arrays travel zero-copy (ZeroMQ reads the NumPy buffer itself), smaller
messages are copied; received frames are reduced into place with NumPy ufuncs. All-reduce is a
pipelined ring: reduce-scatter then all-gather, each segment cut in chunks that are forwarded as
soon as they are reduced, so every link is busy all the time and each rank sends 2(n-1)/n of the
array, the bandwidth optimum.
"""
import atexit
import collections
import contextlib
import os
import pickle
import socket
import struct
import threading
import time
import weakref

import numpy as np
import zmq

from .comm_queue import CommQueue, blocking
from .process_group import ProcessGroup, Work
from .reduce_op import UFUNCS, ReduceOp

DEFAULT_TIMEOUT = 1800.0
CHUNK_BYTES = int(os.environ.get("PHALANX_ZMQ_CHUNK_BYTES", 1 << 20))
LINGER_SECONDS = 5.0              # how long shutdown (and exit) waits to deliver queued messages
SMALL_BYTES = 64 << 10            # up to this: all-reduce by direct exchange
# Messages below this are copied on send: a memcpy is far cheaper than the zero-copy path (a
# tracker per message, pyzmq's garbage-collector thread, waiting for ZeroMQ to let go of the
# buffer before returning), which pays only from full chunks up (benchmarks/allreduce_bw.py:
# copying wins at 1-4 MB all-reduces, zero-copy by ~10% from 16 MB, on 2 ranks).
ZERO_COPY_BYTES = int(os.environ.get("PHALANX_ZMQ_ZERO_COPY_BYTES", CHUNK_BYTES))
_HEADER = struct.Struct("<iiq")   # sender rank, kind, sequence number or tag
_COLLECTIVE, _P2P = 0, 1


def _shutdown_at_exit(ref):
    group = ref()
    if group is not None:
        group.shutdown()


class CollectiveError(RuntimeError):
    """A collective failed or timed out; the group cannot be used afterwards."""


def _local_address(store_endpoint):
    """The address peers can reach us at: loopback for a loopback store, else the interface
    that routes to the store's host (override with PHALANX_ZMQ_HOST)."""
    if os.environ.get("PHALANX_ZMQ_HOST"):
        return os.environ["PHALANX_ZMQ_HOST"]
    host = store_endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    if host in ("localhost", "127.0.0.1") or host.startswith("127."):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))              # no packet is sent; this only picks the route
        return s.getsockname()[0]


def _check_array(array, what="array"):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"the zmq backend works on NumPy arrays, got {type(array).__name__} for "
                        f"{what}; use the nccl backend for GPU arrays")
    if not array.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (shape {array.shape}, strides "
                         f"{array.strides}); pass np.ascontiguousarray(x)")
    return array.reshape(-1)


class _Sent(Work):
    """A point-to-point send: already handed to ZeroMQ; done when ZeroMQ let go of the array
    (at once for small ones, which were copied)."""

    def __init__(self, trackers):
        super().__init__()
        self._trackers = trackers

    def is_completed(self):
        return all(t.done for t in self._trackers)

    def wait(self, timeout=None):
        for t in self._trackers:
            t.wait(-1 if timeout is None else timeout)
        return True


class _Received(Work):
    """A point-to-point receive; it completes whenever someone waiting on it or testing it
    finds its message in the group's mailbox. Its result is the sender's rank."""

    def __init__(self, group, flat, src, tag):
        super().__init__()
        self._group, self._flat, self._src, self._tag = group, flat, src, tag

    def is_set(self):
        return self._event.is_set()

    def take(self):
        """Copy the message into place if it is in; whether this receive is complete."""
        if self._event.is_set():
            return True
        group = self._group
        key = group._p2p_key(self._src, self._tag)
        if key is None:
            return False
        box = group._mailbox[key]
        incoming = np.frombuffer(box.popleft().buffer, dtype=self._flat.dtype)
        if not box:
            del group._mailbox[key]
        if incoming.size != self._flat.size:
            self.set_error(CollectiveError(
                f"rank {group.rank}: recv(tag={key[2]}) got {incoming.size} elements of "
                f"{self._flat.dtype} from rank {key[0]} into an array of {self._flat.size}; "
                f"send and receive arrays must have the same size and dtype"))
        else:
            self._flat[...] = incoming
            self.set_result(key[0])
        return True

    def is_completed(self):
        if not self._event.is_set():
            self._group._progress(self, 0)
        return self._event.is_set()

    def wait(self, timeout=None):
        group = self._group
        limit = group.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self._event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                who = "any rank" if self._src is None else f"rank {self._src}"
                raise (CollectiveError if timeout is None else TimeoutError)(
                    f"rank {group.rank}: recv(tag={self._tag}) got nothing from {who} within "
                    f"{limit:g} s; did the peer die, or send with another tag?")
            group._progress(self, max(1, int(min(left, 0.002) * 1000)))
        return super().wait()


def _chunks(view, chunk_elems):
    return [view[i:i + chunk_elems] for i in range(0, len(view), chunk_elems)]


class ZmqProcessGroup(ProcessGroup):
    backend = "zmq"

    @classmethod
    def from_store(cls, store, rank, size, timeout=DEFAULT_TIMEOUT, prefix=None):
        """Join the group: publish our address under `prefix` in `store`, then connect to the
        `size - 1` peers. The prefix defaults to one per launcher attempt (run id and round), so
        a restarted group never meets the addresses of the previous one."""
        if prefix is None:
            prefix = (f"zmq_pg/{os.environ.get('PHALANX_RUN_ID', 'none')}/"
                      f"{os.environ.get('PHALANX_RDZV_ROUND', '0')}")
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
        self._ctx = zmq.Context()
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.setsockopt(zmq.LINGER, 0)
        host = _local_address(store.endpoint)
        port = self._pull.bind_to_random_port(f"tcp://{host}")
        store.set(f"{prefix}/addr/{rank}", f"tcp://{host}:{port}")
        keys = [f"{prefix}/addr/{r}" for r in range(size)]
        store.wait(keys, timeout=self.timeout)
        self._push = []
        for r in range(size):
            sock = None
            if r != rank:
                sock = self._ctx.socket(zmq.PUSH)
                sock.setsockopt(zmq.SNDHWM, 0)
                # messages still queued at shutdown (a peer's last barrier message) must go out
                sock.setsockopt(zmq.LINGER, int(LINGER_SECONDS * 1000))
                sock.connect(store.get(keys[r]).decode())
            self._push.append(sock)
        self._mailbox = collections.defaultdict(collections.deque)
        self._seq = 0
        self._trackers = []
        self._send_lock = threading.Lock()    # point-to-point sends come from the caller
        self._receives = []                   # point-to-point receives not yet matched
        self._broken = None
        self._queue = CommQueue(f"phalanx-zmq-{prefix}-{rank}")
        self._closed = False
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    # -- running operations in issue order ------------------------------------------------------
    def _submit(self, fn, *args):
        return self._queue.post(lambda: self._guarded(fn, args), fn.__name__.lstrip("_"))

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

    def submit(self, fn):
        return self._queue.post(fn, getattr(fn, "__qualname__", "submitted function"))

    def _next_seq(self):
        self._seq += 1
        return self._seq

    def _send(self, dst, kind, key, buf, trackers=None):
        header = _HEADER.pack(self.rank, kind, key)
        sock = self._push[dst]
        with self._send_lock:
            if isinstance(buf, np.ndarray) and buf.nbytes >= ZERO_COPY_BYTES:
                sock.send(header, zmq.SNDMORE)
                # zero-copy: ZeroMQ reads the array itself; the tracker says when it is done
                tracker = sock.send(memoryview(buf).cast("B"), copy=False, track=True)
                (self._trackers if trackers is None else trackers).append(tracker)
            else:
                sock.send_multipart([header, buf])

    def _flush_sends(self):
        """Wait until ZeroMQ let go of every zero-copy buffer, so callers may reuse their arrays."""
        for tracker in self._trackers:
            while not tracker.done:
                tracker.wait(1.0)
        self._trackers.clear()

    def _recv(self, src, kind, key, what):
        """The next payload `src` sent with (kind, key), as a zmq Frame (zero-copy)."""
        box = self._mailbox[(src, kind, key)]
        deadline = time.monotonic() + self.timeout
        while not box:
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = sorted((s, k, n, len(b)) for (s, k, n), b in self._mailbox.items() if b)
                raise CollectiveError(
                    f"rank {self.rank}: {what} (#{key}) got nothing from rank {src} within "
                    f"{self.timeout:g} s; did rank {src} die or call a different collective? "
                    f"Messages waiting here (sender, kind, number, count): {waiting}")
            self._collect(int(min(left, 1.0) * 1000) + 1)
        payload = box.popleft()
        if not box:
            del self._mailbox[(src, kind, key)]
        return payload

    def _collect(self, wait_ms):
        """Move what has arrived (waiting up to `wait_ms` for the first) into the mailbox."""
        if self._pull.poll(wait_ms):
            while True:
                try:
                    header, payload = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return
                sender, kind, key = _HEADER.unpack(header.bytes)
                self._mailbox[(sender, kind, key)].append(payload)

    def _recv_into(self, dst_view, src, kind, key, what, ufunc=None):
        frame = self._recv(src, kind, key, what)
        incoming = np.frombuffer(frame.buffer, dtype=dst_view.dtype)
        if incoming.size != dst_view.size:
            raise CollectiveError(
                f"rank {self.rank}: {what} received {incoming.size} elements of {dst_view.dtype} "
                f"from rank {src} where {dst_view.size} were expected; do all ranks pass arrays "
                f"of the same shape and dtype?")
        if ufunc is None:
            dst_view[...] = incoming
        else:
            ufunc(dst_view, incoming, out=dst_view)

    # -- collectives ----------------------------------------------------------------------------
    def allreduce(self, array, op=ReduceOp.SUM):
        flat = _check_array(array)
        ufunc = self._ufunc(op, flat.dtype)
        shared = self._shared.find(array)
        if shared is not None:      # a comm_buffer: a pass over memory this host's ranks share
            return self._submit(shared.allreduce, array, op)
        return self._submit(self._allreduce, flat, ufunc, op)

    def _allreduce(self, flat, ufunc, op):
        seq = self._next_seq()
        if self.size > 1 and flat.size:
            if flat.nbytes <= SMALL_BYTES:
                self._exchange_reduce(flat, ufunc, seq)
            else:
                segments = np.array_split(flat, self.size)
                self._ring(segments, seq, self.size - 1, self.size - 1, ufunc, "all-reduce")
        if op is ReduceOp.AVG:
            np.divide(flat, self.size, out=flat)

    def _exchange_reduce(self, flat, ufunc, seq):
        """Small arrays: everyone sends to everyone (one latency), reduced in rank order so that
        every rank computes bit-identical results."""
        mine = flat.copy()
        for r in range(self.size):
            if r != self.rank:
                self._send(r, _COLLECTIVE, seq, mine)
        for r in range(self.size):
            if r == self.rank:
                part = mine
            else:
                part = np.frombuffer(self._recv(r, _COLLECTIVE, seq, "all-reduce").buffer,
                                     dtype=flat.dtype)
            if r == 0:
                flat[...] = part
            else:
                ufunc(flat, part, out=flat)

    def _ring(self, segments, seq, reduce_steps, copy_steps, ufunc, what):
        """Pass segments around the ring: we start by sending segment `rank`; at step t we
        receive segment (rank - t - 1) from the left, reduce it in (the first `reduce_steps`
        steps) or copy it, and forward each chunk to the right as soon as it is ready."""
        n, rank = self.size, self.rank
        left, right = (rank - 1) % n, (rank + 1) % n
        chunk = max(1, CHUNK_BYTES // segments[0].itemsize)
        for c in _chunks(segments[rank], chunk):
            self._send(right, _COLLECTIVE, seq, c)
        total = reduce_steps + copy_steps
        for t in range(total):
            for c in _chunks(segments[(rank - t - 1) % n], chunk):
                self._recv_into(c, left, _COLLECTIVE, seq, what, ufunc if t < reduce_steps else None)
                if t < total - 1:
                    self._send(right, _COLLECTIVE, seq, c)

    def broadcast(self, array, root=0):
        return self._submit(self._broadcast, _check_array(array), root)

    def _broadcast(self, flat, root):
        """A pipelined chain root → root+1 → …: each chunk is forwarded as soon as it lands."""
        seq = self._next_seq()
        n = self.size
        if n == 1 or not flat.size:
            return
        pos = (self.rank - root) % n
        left, right = (self.rank - 1) % n, (self.rank + 1) % n
        for c in _chunks(flat, max(1, CHUNK_BYTES // flat.itemsize)):
            if pos:
                self._recv_into(c, left, _COLLECTIVE, seq, "broadcast")
            if pos < n - 1:
                self._send(right, _COLLECTIVE, seq, c)

    def reduce(self, array, root=0, op=ReduceOp.SUM):
        # A ring reduce-scatter plus a gather moves as much data as the all-reduce ring does.
        return self.allreduce(array, op)

    def allgather(self, out, array):
        self._check_stacked(out, array, "allgather", "out")
        _check_array(array)
        return self._submit(self._allgather, out, array)

    def _allgather(self, out, array):
        seq = self._next_seq()
        out[self.rank] = array
        segments = [o.reshape(-1) for o in out]
        if self.size > 1 and array.size:
            self._ring(segments, seq, 0, self.size - 1, None, "allgather")

    def reduce_scatter(self, out, array, op=ReduceOp.SUM):
        self._check_stacked(array, out, "reduce_scatter", "array")
        _check_array(out, "out")
        return self._submit(self._reduce_scatter, out, array, self._ufunc(op, array.dtype), op)

    def _reduce_scatter(self, out, array, ufunc, op):
        seq = self._next_seq()
        n = self.size
        work = np.array(array, copy=True)
        # after n-1 reduce steps rank r holds segment r+1 complete: label blocks so it is ours
        segments = [work[(j - 1) % n].reshape(-1) for j in range(n)]
        if n > 1 and out.size:
            self._ring(segments, seq, n - 1, 0, ufunc, "reduce_scatter")
        out[...] = work[self.rank]
        if op is ReduceOp.AVG:
            np.divide(out, n, out=out)

    def gather(self, out, array, root=0):
        _check_array(array)
        if self.rank == root:
            self._check_stacked(out, array, "gather", "out")
        return self._submit(self._gather, out, array, root)

    def _gather(self, out, array, root):
        seq = self._next_seq()
        if self.rank != root:
            self._send(root, _COLLECTIVE, seq, array)
            return
        for r in range(self.size):
            if r == root:
                out[r] = array
            else:
                self._recv_into(out[r].reshape(-1), r, _COLLECTIVE, seq, "gather")

    def scatter(self, out, array, root=0):
        _check_array(out, "out")
        if self.rank == root:
            self._check_stacked(array, out, "scatter", "array")
        return self._submit(self._scatter, out, array, root)

    def _scatter(self, out, array, root):
        seq = self._next_seq()
        if self.rank == root:
            for r in range(self.size):
                if r != root:
                    self._send(r, _COLLECTIVE, seq, np.ascontiguousarray(array[r]))
            out[...] = array[root]
        else:
            self._recv_into(out.reshape(-1), root, _COLLECTIVE, seq, "scatter")

    def alltoall(self, out, array):
        self._check_stacked(array, out[0], "alltoall", "array")
        _check_array(out, "out")
        return self._submit(self._alltoall, out, array)

    def _alltoall(self, out, array):
        seq = self._next_seq()
        for r in range(self.size):
            if r != self.rank:
                self._send(r, _COLLECTIVE, seq, np.ascontiguousarray(array[r]))
        out[self.rank] = array[self.rank]
        for r in range(self.size):
            if r != self.rank:
                self._recv_into(out[r].reshape(-1), r, _COLLECTIVE, seq, "alltoall")

    def barrier(self):
        return self._submit(self._barrier)

    def barrier_now(self, spin):
        blocking(self._submit, self._barrier)

    def _barrier(self):
        seq = self._next_seq()
        for r in range(self.size):
            if r != self.rank:
                self._send(r, _COLLECTIVE, seq, b"")
        for r in range(self.size):
            if r != self.rank:
                self._recv(r, _COLLECTIVE, seq, "barrier")

    # -- point to point: outside the queue of collectives -------------------------------------
    def send(self, array, dst, tag=0):
        _check_array(array)
        self._check_p2p(dst, "send to")
        trackers = []
        self._send(dst, _P2P, tag, array, trackers)
        return _Sent(trackers)

    def recv(self, array, src, tag=0):
        flat = _check_array(array)
        if src is not None:
            self._check_p2p(src, "receive from")
        receive = _Received(self, flat, src, tag)
        self._receives.append(receive)
        return receive

    def _check_p2p(self, peer, verb):
        if self._broken is not None:
            raise CollectiveError(f"rank {self.rank}: the process group is broken by an "
                                  f"earlier failure: {self._broken}")
        if not 0 <= peer < self.size or peer == self.rank:
            raise ValueError(f"rank {self.rank} cannot {verb} rank {peer}: peers are the other "
                             f"ranks of the group, 0..{self.size - 1}")

    def _progress(self, receive, wait_ms):
        """Match the messages that are in to the pending receives, reading the socket up to
        `wait_ms` if `receive` is still pending. Receives are matched in the order they were
        posted, as MPI's are. The queue's turn keeps collectives off the socket and mailbox
        meanwhile (a collective that runs this, from a comm hook, already holds it)."""
        turn = contextlib.nullcontext() if self._queue.inside() else self._queue._turn
        with turn:
            self._match()
            if not receive.is_set():
                self._collect(wait_ms)
                self._match()

    def _match(self):
        done = [r for r in list(self._receives) if r.take()]
        for r in done:
            self._receives.remove(r)

    def _p2p_key(self, src, tag):
        """The mailbox key of the next message from `src` with `tag` (None: any), or None."""
        if src is not None and tag is not None:
            return (src, _P2P, tag) if self._mailbox.get((src, _P2P, tag)) else None
        return next((k for k, box in self._mailbox.items() if box and k[1] == _P2P
                     and (src is None or k[0] == src) and (tag is None or k[2] == tag)), None)

    # -- object collectives (pickle, as in PyTorch) -------------------------------------------
    def allgather_object(self, obj):
        return blocking(self._submit, self._allgather_object, pickle.dumps(obj))

    def _allgather_object(self, data):
        seq = self._next_seq()
        for r in range(self.size):
            if r != self.rank:
                self._send(r, _COLLECTIVE, seq, data)
        return [pickle.loads(data) if r == self.rank else
                pickle.loads(self._recv(r, _COLLECTIVE, seq, "allgather_object").bytes)
                for r in range(self.size)]

    def broadcast_object(self, obj, root=0):
        data = pickle.dumps(obj) if self.rank == root else None
        return blocking(self._submit, self._broadcast_object, data, root)

    def _broadcast_object(self, data, root):
        seq = self._next_seq()
        if self.rank == root:
            for r in range(self.size):
                if r != root:
                    self._send(r, _COLLECTIVE, seq, data)
            return pickle.loads(data)
        return pickle.loads(self._recv(root, _COLLECTIVE, seq, "broadcast_object").bytes)

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
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(errorcode)

    def shutdown(self):
        """Finish queued operations, deliver queued messages (up to LINGER_SECONDS), close."""
        if self._closed:
            return
        self._closed = True
        self._shared.close()
        self._queue.close(self.timeout)
        for sock in self._push:
            if sock is not None:      # a broken group's peers may be gone: do not wait for them
                sock.close(0 if self._broken is not None else None)
        self._pull.close(0)
        self._ctx.term()

    # -- helpers ----------------------------------------------------------------------------------
    def _ufunc(self, op, dtype):
        op = ReduceOp(op)
        if op is ReduceOp.AVG and not np.issubdtype(dtype, np.inexact):
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
