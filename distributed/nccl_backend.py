"""The `nccl` backend: every ProcessGroup verb over NCCL, through `cupy.cuda.nccl`.

Each rank drives one GPU, `LOCAL_RANK % device_count`. Rank 0 makes the NCCL unique id; it
reaches the other ranks through the launcher's store (`phalanx run`) or through MPI (`mpirun`).

Streams: every operation runs on the group's own communication stream, ordered after the work
already queued on the caller's current stream (an event recorded there, which the
communication stream waits for), so the caller never blocks the host to hand a buffer over.
Each verb returns an `NcclWork` holding an event recorded after the NCCL call: `wait()` makes
the caller's current stream wait for it (the host goes on, as in PyTorch), `is_completed()`
asks the event, and the arrays stay referenced until the event has passed, so CuPy's memory
pool cannot hand them out while NCCL still reads them. A barrier's `wait()` blocks the host.

Failure: the collective watchdog (`comm_queue.Watchdog`) ticks twice a second over the
operations in flight; one that has not finished after the group's timeout is reported by name
and the communicator is aborted (`ncclCommAbort` ends kernels that wait for a peer). When a rank
aborts (an uncaught exception, `abort.py`) it writes an abort key into the launcher's store
first; the other ranks see it at their next tick, abort their communicators and exit within
seconds instead of hanging in NCCL. Under mpirun, MPI_Abort brings the job down as for `mpi`.

NCCL has no tags, no receive from any source and no all-to-all verb: `send`/`recv` take an
explicit peer, run on the communication stream in issue order with the collectives (a receive
must meet its send at the same point on both ranks, as in NCCL), and all-to-all, gather and
scatter are grouped send/recv calls (ncclGroupStart/End). Data movement works on any dtype (as
bytes); reductions on the dtypes NCCL reduces, bool as uint8 (logical or/and), complex as pairs
of floats (SUM and AVG).

The module names (`nccl`, `cuda`, `xp`) are parameters of the group, so tests run its logic
with a test double of NCCL over NumPy arrays in one process (`tests/distributed/nccl_double.py`).
"""
import os
import pickle
import sys
import threading
import time

import numpy as np

from .comm_queue import COLLECTIVE_TIMEOUT_ENV, Watchdog
from .process_group import ProcessGroup, ReduceOp, Work

ABORT_KEY = "nccl_abort"
UNIQUE_ID_KEY = "nccl_uid"


class NcclWork(Work):
    """One NCCL operation in flight: complete when its event, recorded on the communication
    stream after the operation, has passed."""

    def __init__(self, group, event, desc, keep, result=None, host_wait=False):
        super().__init__()
        self._group, self._done_event, self.desc = group, event, desc
        self._keep, self._result, self._host_wait = keep, result, host_wait
        self.started = time.monotonic()

    def is_completed(self):
        if not self._event.is_set() and self._done_event.done:
            self._keep = None
            self._event.set()
        return self._event.is_set()

    def wait(self, timeout=None):
        """Order the caller's current stream after the operation (the host goes on); a
        barrier, or a `timeout`, waits on the host, up to `timeout` seconds."""
        if self._error is not None:
            raise self._error
        if self._host_wait or timeout is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.is_completed():
                if self._error is not None:
                    raise self._error
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self.desc} on {self._group!r} did not complete "
                                       f"within {timeout} s")
                time.sleep(50e-6)
        else:
            self._group._cuda.get_current_stream().wait_event(self._done_event)
        if self._error is not None:
            raise self._error
        return True

    def result(self):
        self.wait()
        return self._result


class _InFlight:
    """What the Watchdog watches: `running` is the oldest unfinished operation (desc, start)."""

    def __init__(self):
        self.works = []
        self.lock = threading.Lock()
        self.started = 0

    @property
    def running(self):
        with self.lock:
            self.works = [w for w in self.works if not w.is_completed()]
            if not self.works:
                return None
            oldest = self.works[0]
            return oldest.desc, oldest.started


def _nccl_types(nccl):
    """numpy dtype -> NCCL datatype for the dtypes NCCL reduces."""
    names = {"int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
             "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64",
             "float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
             "bfloat16": "NCCL_BFLOAT16"}
    return {dtype: getattr(nccl, name) for dtype, name in names.items() if hasattr(nccl, name)}


def _pointer(array):
    """The address of an array's first element: device memory for CuPy arrays; host memory
    for NumPy arrays, which only the test double's communicator accepts."""
    data = array.data
    return data.ptr if hasattr(data, "ptr") else array.ctypes.data


class NcclProcessGroup(ProcessGroup):
    backend = "nccl"
    device_types = ("cuda",)
    shares_host_memory = False      # buffers live on the GPU: no shared-memory fast path

    def __init__(self, comm, rank, size, *, nccl, cuda, xp, ranks=None, timeout=None,
                 store=None, prefix="nccl", mpi_comm=None):
        super().__init__(rank, size, ranks)
        self.comm, self.timeout = comm, timeout
        self._nccl, self._cuda, self._xp = nccl, cuda, xp
        self._store, self._prefix, self._mpi_comm = store, prefix, mpi_comm
        self._types = _nccl_types(nccl)
        self._ops = {ReduceOp.SUM: nccl.NCCL_SUM, ReduceOp.PRODUCT: nccl.NCCL_PROD,
                     ReduceOp.MAX: nccl.NCCL_MAX, ReduceOp.MIN: nccl.NCCL_MIN}
        # ncclAvg arrived in NCCL 2.10; before it, AVG is SUM then a division on the stream
        self._avg = getattr(nccl, "NCCL_AVG", None) if nccl.get_version() >= 21000 else None
        self._stream = cuda.Stream(non_blocking=True)
        self._in_flight = _InFlight()
        self._splits = 0
        self._aborted = False
        self._closed = False
        Watchdog.watch(self._in_flight, timeout, self._on_timeout, self._on_tick)

    # --- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, environment, timeout):
        """The world's group: pick this rank's GPU, share rank 0's unique id, init NCCL."""
        from ..tensor.backend import cupy
        try:
            cp = cupy()
        except RuntimeError as e:
            raise RuntimeError(f"backend 'nccl' needs an NVIDIA GPU and CuPy: {e} Without a "
                               f"GPU, leave backend=None (or 'mpi') to use a CPU backend") \
                from None
        from cupy.cuda import nccl
        if not getattr(nccl, "available", False):
            raise RuntimeError("backend 'nccl': CuPy finds no NCCL library. Install it (pip "
                               "install nvidia-nccl-cu12, or cu13 for CUDA 13) or use "
                               "backend='mpi', which moves CuPy arrays over MPI")
        count = cp.cuda.runtime.getDeviceCount()
        device = environment.local_rank % count
        cp.cuda.Device(device).use()
        if environment.local_world_size > count:
            raise RuntimeError(
                f"backend 'nccl': {environment.local_world_size} ranks on this node share "
                f"{count} GPU(s), and NCCL refuses two ranks on one GPU. Start at most {count} "
                f"rank(s) per node, or use backend='mpi' for more ranks than GPUs")
        store, mpi_comm = None, None
        if environment.world_size == 1:
            uid = nccl.get_unique_id()
        elif environment.store_endpoint:
            from .store import Store
            store = Store.from_env()
            uid = _share_through_store(store, _run_prefix(), environment.rank, nccl)
        elif environment.under_mpi:
            from .mpi_backend import mpi
            mpi_comm = mpi().COMM_WORLD
            uid = mpi_comm.bcast(nccl.get_unique_id() if environment.rank == 0 else None, 0)
        else:
            raise RuntimeError(f"backend 'nccl' with {environment.world_size} ranks needs "
                               f"`phalanx run` (its store) or mpirun to share NCCL's unique id")
        comm = _communicator(nccl, environment.world_size, uid, environment.rank)
        return cls(comm, environment.rank, environment.world_size, nccl=nccl, cuda=cp.cuda,
                   xp=cp, timeout=timeout, store=store, prefix=_run_prefix(),
                   mpi_comm=mpi_comm)

    # --- issuing ---------------------------------------------------------------------------
    def _issue(self, verb, calls, keep, array=None, result=None, host_wait=False,
               after=None):
        """Run `calls()` (NCCL calls on the communication stream) ordered after the caller's
        current stream; `after(stream)`: array work on that stream once they are done."""
        if self._closed:
            raise RuntimeError(f"{self!r} was destroyed; create a new group with "
                               f"init_process_group() / new_group()")
        cuda = self._cuda
        ready = cuda.Event(disable_timing=True)
        ready.record(cuda.get_current_stream())
        self._stream.wait_event(ready)
        calls()
        if after is not None:
            with self._stream:
                after()
        done = cuda.Event(disable_timing=True)
        done.record(self._stream)
        desc = (verb, array)
        work = NcclWork(self, done, desc, keep, result, host_wait)
        with self._in_flight.lock:
            works = self._in_flight.works
            while works and works[0].is_completed():   # bounded without a watchdog, too
                works.pop(0)
            self._in_flight.started += 1
            works.append(work)
        return work

    def _grouped(self, fn):
        """fn() between ncclGroupStart and ncclGroupEnd."""
        def run():
            self._nccl.groupStart()
            try:
                fn()
            finally:
                self._nccl.groupEnd()
        return run

    def _type(self, dtype, verb):
        dtype = np.dtype(dtype)
        name = dtype.name
        if name not in self._types:
            raise TypeError(f"{verb}: NCCL cannot reduce dtype {dtype} (it reduces "
                            f"{', '.join(self._types)}); cast the tensor first")
        return self._types[name]

    def _reducible(self, array, op, verb):
        """(array to hand NCCL, NCCL datatype, NCCL op, array work after the call or None)."""
        op = ReduceOp(op)
        flat = array.reshape(-1)
        if array.dtype == np.bool_:       # logical or / and, as the mpi backend's LOR/LAND
            op = ReduceOp.MAX if op in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.MAX) \
                else ReduceOp.MIN
            flat = flat.view(np.uint8)
        elif array.dtype.kind == "c":
            if op not in (ReduceOp.SUM, ReduceOp.AVG):
                raise TypeError(f"{verb}: {op.name} of complex arrays ({array.dtype}) is not "
                                f"defined; use SUM or AVG")
            flat = flat.view(np.dtype(f"f{array.dtype.itemsize // 2}"))
        nccl_type = self._type(flat.dtype, verb)
        after = None
        if op is ReduceOp.AVG:
            if self._avg is not None and flat.dtype.kind == "f":
                return flat, nccl_type, self._avg, None
            if flat.dtype.kind == "f":
                def after():
                    flat[...] /= self.size
            else:                          # integers: floor, as the mpi backend does
                def after():
                    flat[...] //= self.size
            op = ReduceOp.SUM
        return flat, nccl_type, self._ops[op], after

    @staticmethod
    def _bytes(array):
        return array.reshape(-1).view(np.uint8)

    def _check_stacked(self, stacked, one, verb, name):
        if stacked is None or tuple(stacked.shape) != (self.size, *one.shape) \
                or stacked.dtype != one.dtype:
            got = None if stacked is None else (tuple(stacked.shape), stacked.dtype)
            raise ValueError(f"{verb}: `{name}` must have shape {(self.size, *one.shape)} and "
                             f"dtype {one.dtype} (group size first), got {got}")

    # --- collectives ------------------------------------------------------------------------
    def allreduce(self, array, op=ReduceOp.SUM):
        flat, dtype, nccl_op, after = self._reducible(array, op, "all_reduce")
        s = self._stream.ptr
        return self._issue("all_reduce", lambda: self.comm.allReduce(
            _pointer(flat), _pointer(flat), flat.size, dtype, nccl_op, s), array, array,
            after=after)

    def broadcast(self, array, root=0):
        raw = self._bytes(array)
        s = self._stream.ptr
        return self._issue("broadcast", lambda: self.comm.broadcast(
            _pointer(raw), _pointer(raw), raw.size, self._types["uint8"], root, s), array, array)

    def reduce(self, array, root=0, op=ReduceOp.SUM):
        flat, dtype, nccl_op, after = self._reducible(array, op, "reduce")
        s = self._stream.ptr
        return self._issue("reduce", lambda: self.comm.reduce(
            _pointer(flat), _pointer(flat), flat.size, dtype, nccl_op, root, s), array, array,
            after=after if self.rank == root else None)

    def allgather(self, out, array):
        self._check_stacked(out, array, "all_gather", "out")
        send, recv = self._bytes(array), self._bytes(out)
        s = self._stream.ptr
        return self._issue("all_gather", lambda: self.comm.allGather(
            _pointer(send), _pointer(recv), send.size, self._types["uint8"], s),
            (out, array), array)

    def reduce_scatter(self, out, array, op=ReduceOp.SUM):
        self._check_stacked(array, out, "reduce_scatter", "array")
        send, dtype, nccl_op, _ = self._reducible(array, op, "reduce_scatter")
        recv, _, _, after = self._reducible(out, op, "reduce_scatter")
        s = self._stream.ptr
        return self._issue("reduce_scatter", lambda: self.comm.reduceScatter(
            _pointer(send), _pointer(recv), recv.size, dtype, nccl_op, s), (out, array), out,
            after=after)

    def alltoall(self, out, array):
        if tuple(out.shape) != tuple(array.shape) or out.dtype != array.dtype \
                or array.shape[0] != self.size:
            raise ValueError(f"all_to_all: `array` and `out` must both have shape (group size "
                             f"{self.size}, ...) and one dtype, got {tuple(array.shape)} "
                             f"{array.dtype} and {tuple(out.shape)} {out.dtype}")
        send, recv = self._bytes(array), self._bytes(out)
        block = send.size // self.size
        return self._exchange("all_to_all", [(j, send[j * block:(j + 1) * block],
                                              recv[j * block:(j + 1) * block])
                                             for j in range(self.size)], (out, array), array)

    def alltoallv(self, out, out_counts, array, in_counts):
        sends, recvs = _blocks(array, in_counts), _blocks(out, out_counts)
        return self._exchange("all_to_all", [(j, self._bytes(sends[j]), self._bytes(recvs[j]))
                                             for j in range(self.size)], (out, array), array)

    def gather(self, out, array, root=0):
        if self.rank == root:
            self._check_stacked(out, array, "gather", "out")
            recv = self._bytes(out)
            block = recv.size // self.size
            pairs = [(j, self._bytes(array) if j == root else None,
                      recv[j * block:(j + 1) * block]) for j in range(self.size)]
        else:
            pairs = [(root, self._bytes(array), None)]
        return self._exchange("gather", pairs, (out, array), array)

    def scatter(self, out, array, root=0):
        if self.rank == root:
            self._check_stacked(array, out, "scatter", "array")
            send = self._bytes(array)
            block = send.size // self.size
            pairs = [(j, send[j * block:(j + 1) * block],
                      self._bytes(out) if j == root else None) for j in range(self.size)]
        else:
            pairs = [(root, None, self._bytes(out))]
        return self._exchange("scatter", pairs, (out, array), out)

    def _exchange(self, verb, pairs, keep, array):
        """Grouped send/recv: (peer, bytes to send or None, bytes to receive into or None)."""
        s = self._stream.ptr
        u8 = self._types["uint8"]

        def calls():
            for peer, send, recv in pairs:
                if peer == self.rank:              # our own block: a copy on the stream
                    if send is not None and recv is not None and send.size:
                        with self._stream:
                            recv[...] = send
                    continue
                if send is not None and send.size:
                    self.comm.send(_pointer(send), send.size, u8, peer, s)
                if recv is not None and recv.size:
                    self.comm.recv(_pointer(recv), recv.size, u8, peer, s)
        return self._issue(verb, self._grouped(calls), keep, array)

    def barrier(self):
        token = self._xp.zeros(1, np.int32)
        s = self._stream.ptr
        return self._issue("barrier", lambda: self.comm.allReduce(
            _pointer(token), _pointer(token), 1, self._types["int32"], self._ops[ReduceOp.SUM],
            s), token, host_wait=True)

    # --- point to point ---------------------------------------------------------------------
    def _peer(self, peer, verb):
        if peer is None:
            raise ValueError(f"{verb}: NCCL receives only from a named rank; pass src=")
        return peer

    @staticmethod
    def _tag(tag, verb):
        if tag not in (0, None):
            raise NotImplementedError(f"{verb}(tag={tag}): NCCL has no message tags; messages "
                                      f"between two ranks match in the order they are posted. "
                                      f"Drop the tag, or use backend='mpi'")

    def send(self, array, dst, tag=0):
        self._tag(tag, "send")
        raw = self._bytes(array)
        s, u8 = self._stream.ptr, self._types["uint8"]
        return self._issue("send", self._grouped(lambda: self.comm.send(
            _pointer(raw), raw.size, u8, self._peer(dst, "send"), s)), array, array)

    def recv(self, array, src, tag=0):
        self._tag(tag, "recv")
        src = self._peer(src, "recv")
        raw = self._bytes(array)
        s, u8 = self._stream.ptr, self._types["uint8"]
        return self._issue("recv", self._grouped(lambda: self.comm.recv(
            _pointer(raw), raw.size, u8, src, s)), array, array, result=src)

    # --- objects, groups --------------------------------------------------------------------
    def _allgather_bytes(self, data):
        """Every rank's bytes, in rank order, through two all-gathers on the device."""
        xp = self._xp
        length = xp.asarray([len(data)], dtype=np.int64)
        lengths = xp.zeros((self.size, 1), np.int64)
        self.allgather(lengths, length).wait(self._host_timeout())
        lengths = [int(n) for n in _to_host(lengths).reshape(-1)]
        padded = np.zeros(max(lengths), np.uint8)
        padded[:len(data)] = np.frombuffer(data, np.uint8)
        everyone = xp.zeros((self.size, padded.size), np.uint8)
        self.allgather(everyone, xp.asarray(padded)).wait(self._host_timeout())
        everyone = _to_host(everyone)
        return [everyone[r, :lengths[r]].tobytes() for r in range(self.size)]

    def _host_timeout(self):
        return self.timeout if self.timeout else None

    def allgather_object(self, obj):
        return [pickle.loads(b) for b in self._allgather_bytes(pickle.dumps(obj))]

    def broadcast_object(self, obj, root=0):
        return self.allgather_object(obj if self.rank == root else None)[root]

    def allgather_plain(self, obj):
        import msgpack
        return [msgpack.unpackb(b, raw=False, strict_map_key=False)
                for b in self._allgather_bytes(msgpack.packb(obj, use_bin_type=True))]

    def split(self, ranks):
        """A new communicator of `ranks`: its first member makes the unique id, which reaches
        the others through this group."""
        ranks = list(ranks)
        self._splits += 1
        uid = self._nccl.get_unique_id() if self.rank == ranks[0] else None
        uid = self.broadcast_plain(None if uid is None else list(uid), root=ranks[0])
        if self.rank not in ranks:
            return None
        comm = _communicator(self._nccl, len(ranks), uid, ranks.index(self.rank))
        return NcclProcessGroup(comm, ranks.index(self.rank), len(ranks), nccl=self._nccl,
                                cuda=self._cuda, xp=self._xp,
                                ranks=[self.ranks[r] for r in ranks], timeout=self.timeout,
                                store=self._store, prefix=f"{self._prefix}/split{self._splits}",
                                mpi_comm=self._mpi_comm)

    # --- failure ----------------------------------------------------------------------------
    def _on_tick(self):
        """Watchdog tick: an asynchronous NCCL error, or another rank's abort, aborts here."""
        if self._aborted or self._closed:
            return
        try:
            self.comm.check_async_error()
        except Exception as e:
            self._fail(f"NCCL reported an asynchronous error on {self!r}: {e}")
            return
        if self._store is not None:
            try:
                if self._store.check([f"{self._prefix}/{ABORT_KEY}"]):
                    who = self._store.get(f"{self._prefix}/{ABORT_KEY}", timeout=1.0)
                    self._fail(f"rank {who.decode(errors='replace')} aborted the job; this "
                               f"rank aborts its NCCL communicator and exits (see that rank's "
                               f"output for why)")
            except Exception:             # a store that is gone: the launcher tears down
                pass

    def _on_timeout(self, queue, desc, seconds):
        self._fail(f"{desc} (operation #{queue.started} of {self!r}) has not completed after "
                   f"{seconds:.0f} s (timeout {self.timeout:.0f} s): some rank did not call "
                   f"the same collective. Run with PHALANX_DEBUG=1 to check every collective's "
                   f"arguments; raise init_process_group(timeout=...) or "
                   f"{COLLECTIVE_TIMEOUT_ENV} if a step is really this slow")

    def _fail(self, message):
        """Abort the communicator, fail every operation in flight with `message`, then take
        this rank down (the caller may be blocked in a CUDA call that will never return)."""
        error = RuntimeError(f"[rank {self.ranks[self.rank]}] phalanx.distributed: {message}")
        sys.stderr.write(f"{error}. Aborting.\n")
        sys.stderr.flush()
        self._abort_comm()
        with self._in_flight.lock:
            for work in self._in_flight.works:
                work.set_error(error)
        self.abort(1)

    def _abort_comm(self):
        if not self._aborted:
            self._aborted = True
            Watchdog.unwatch(self._in_flight)
            try:
                self.comm.abort()
            except Exception:
                pass

    def abort(self, errorcode=1):
        """Tell the other ranks through the store, abort NCCL, and exit; under mpirun through
        MPI_Abort, as the mpi backend does."""
        if self._store is not None:
            try:
                self._store.set(f"{self._prefix}/{ABORT_KEY}", str(self.ranks[self.rank]))
            except Exception:
                pass
        self._abort_comm()
        self._exit(errorcode)

    def _exit(self, errorcode):
        sys.stdout.flush()
        sys.stderr.flush()
        if self._mpi_comm is not None:
            time.sleep(0.5)             # let mpiexec pass on the last words
            self._mpi_comm.Abort(errorcode)
        os._exit(errorcode)

    def shutdown(self):
        if self._closed:
            return
        self._closed = True
        Watchdog.unwatch(self._in_flight)
        if not self._aborted:
            self._stream.synchronize()
            self.comm.destroy()


def _blocks(array, counts):
    out, start = [], 0
    for c in counts:
        out.append(array[start:start + int(c)])
        start += int(c)
    return out


def _to_host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _run_prefix():
    return (f"nccl/{os.environ.get('PHALANX_RUN_ID', 'none')}/"
            f"{os.environ.get('PHALANX_RDZV_ROUND', '0')}")


def _share_through_store(store, prefix, rank, nccl):
    """Rank 0's NCCL unique id, on every rank, through the launcher's store."""
    key = f"{prefix}/{UNIQUE_ID_KEY}"
    if rank == 0:
        uid = nccl.get_unique_id()
        store.set(key, bytes(b & 0xFF for b in uid))
        return uid
    return store.get(key)


def _communicator(nccl, size, uid, rank):
    """`nccl.NcclCommunicator` of the unique id `uid` (its bytes, or ints as signed or
    unsigned chars). CuPy 14 takes the id as bytes, as its get_unique_id returns it; CuPy 13
    as a tuple of signed chars. Cython refuses the other type before NCCL is called."""
    raw = bytes(b & 0xFF for b in uid)
    try:
        return nccl.NcclCommunicator(size, raw, rank)
    except TypeError:
        return nccl.NcclCommunicator(size, tuple(b - 256 if b > 127 else b for b in raw), rank)
