"""The `mpi` backend: every ProcessGroup verb over mpi4py.

Contiguous NumPy arrays go to MPI as they are (zero-copy, in place where the verb is). CuPy
arrays go to MPI as they are too when the MPI library is CUDA-aware (`cuda_aware()`), otherwise
through pinned host copies; either way the stream that produced them is waited for first (an
event recorded when the verb is called), since MPI knows nothing of CUDA streams.
Collectives run in issue order through the group's `CommQueue`, on its communication thread
when asynchronous; point-to-point verbs are MPI's own non-blocking requests, so a
send/recv exchange can never deadlock behind a queued collective. MPI is asked for
MPI_THREAD_MULTIPLE; with less, everything runs on the calling thread.
"""
import contextlib
import os
import sys
import threading
import time
import weakref

import msgpack
import numpy as np

from ..tensor.dtypes import BF16_NP, is_floating_np
from .comm_queue import (CALLER_WAITS, COLLECTIVE_TIMEOUT_ENV, CommQueue, Watchdog, blocking,
                         describe)
from .process_group import ProcessGroup, ReduceOp, Work
from .reduce_op import UFUNCS


def mpi():
    """mpi4py's MPI module, initialised with MPI_THREAD_MULTIPLE on first use."""
    if "mpi4py.MPI" not in sys.modules:
        try:
            import mpi4py
        except ImportError as e:
            raise RuntimeError("the mpi backend needs mpi4py: pip install 'phalanx[mpi]' "
                               "(mpi4py plus an MPI such as the `mpich` wheel)") from e
        mpi4py.rc.thread_level = "multiple"
    from mpi4py import MPI
    return MPI


_GROUPS = weakref.WeakSet()     # groups with a status channel, for departure notices


CUDA_AWARE_ENV = "PHALANX_MPI_CUDA_AWARE"   # 1/0: override what the MPI library reports
_cuda_aware = None


def cuda_aware():
    """Whether MPI can read and write device memory: $PHALANX_MPI_CUDA_AWARE if set, else
    Open MPI's MPIX_Query_cuda_support() (other MPIs: assume not, and stage)."""
    global _cuda_aware
    if _cuda_aware is None:
        text = os.environ.get(CUDA_AWARE_ENV, "")
        if text in ("0", "1"):
            _cuda_aware = text == "1"
        else:
            _cuda_aware = _query_cuda_support()
    return _cuda_aware


def _query_cuda_support():
    import ctypes
    MPI = mpi()
    try:   # the extension lives in libmpi, a dependency of mpi4py's module: dlsym finds it
        query = ctypes.CDLL(MPI.__file__).MPIX_Query_cuda_support
    except (OSError, AttributeError):
        return False
    query.restype = ctypes.c_int
    return bool(query())


def _is_device(array):
    return array is not None and type(array) is not np.ndarray


def _producer_done(arrays):
    """An event on the calling thread's current stream, which produced `arrays`: MPI may read
    them once it has passed (the job runs on another thread, with another current stream)."""
    import cupy
    event = cupy.cuda.Event(disable_timing=True)
    event.record()
    return event


def _pinned(array):
    """A pinned host copy of a device array (pinned: the copies run at full bus speed)."""
    import cupyx
    host = cupyx.empty_pinned(array.shape, array.dtype)
    with array.device:   # this (communication) thread's current device may be another
        array.get(out=host)
    return host


def _staged(fn, arrays):
    """fn(*arrays) with every device array replaced by a pinned host copy, written back
    after (and the write-back finished before the job is)."""
    hosts = [_pinned(a) if _is_device(a) else a for a in arrays]
    result = fn(*hosts)
    for a, host in zip(arrays, hosts):
        if _is_device(a):
            _write_back(a, host)
    return result


def _write_back(array, host):
    """Copy `host` into the device array and wait for it: the caller reads `array` as soon
    as the Work completes, on a stream that knows nothing of this thread's copy."""
    import cupy
    with array.device:   # this (communication) thread's current device may be another
        array.set(host)
        cupy.cuda.get_current_stream().synchronize()


# An asynchronous all-reduce (DDP's buckets during backward) is MPI's non-blocking one, waited
# for politely: MPI's blocking calls spin for their whole length, and a spinning thread takes
# the core backward needs whenever a rank has none to spare (ranks = cores), so overlap would
# hide nothing. "spin" (the same on every rank) keeps the blocking call, for ranks that own
# two cores each.
WAIT_ENV = "PHALANX_MPI_WAIT"


def _wait_politely(request, spins=100, nap=20e-6):
    """Drive `request` to completion: a few tight tests (a short wait costs no sleep), then
    tests between naps that give the core back. MPI moves data only inside a test, so each
    nap delays the transfer: the thread asks the kernel for naps as short as asked (its
    default timer slack of 50 us would nearly triple a 20 us nap)."""
    _precise_naps()
    while not request.Test():
        if spins:
            spins -= 1
        else:
            time.sleep(nap)


_naps = threading.local()


def _precise_naps():
    if not getattr(_naps, "precise", False):
        _naps.precise = True
        try:
            import ctypes
            ctypes.CDLL(None).prctl(29, 1000)       # PR_SET_TIMERSLACK: 1 us, this thread
        except (OSError, AttributeError):
            pass


def _bound(fn, arrays):
    """A job calling fn(*arrays): directly for NumPy arrays; for device arrays after their
    producing stream, directly (CUDA-aware MPI) or through pinned host copies."""
    if not any(_is_device(a) for a in arrays):
        return lambda: fn(*arrays)
    ready = _producer_done(arrays)
    if cuda_aware():
        return lambda: ready.synchronize() or fn(*arrays)
    return lambda: ready.synchronize() or _staged(fn, arrays)


def _p2p_buffer(array, receiving):
    """(buffer MPI uses, write-back or None) for a send or receive, after the producing
    stream has finished with `array`."""
    if not _is_device(array):
        return array, None
    _producer_done([array]).synchronize()
    if cuda_aware():
        return array, None
    host = _pinned(array)
    return host, (lambda: _write_back(array, host)) if receiving else None


_BOOL = np.dtype(np.bool_)
_BF16_OPS = {}      # ReduceOp -> MPI op on bfloat16, made on first use (see `_bf16_op`)


def _bf16_op(op):
    """An MPI reduction on bfloat16 values, which MPI has no type for: their bits travel as
    uint16 and this op combines them as bfloat16 (per element, like NCCL's bfloat16)."""
    if op not in _BF16_OPS:
        ufunc = UFUNCS[op]

        def combine(inbuf, inoutbuf, datatype):
            into = np.frombuffer(inoutbuf, BF16_NP)
            ufunc(into, np.frombuffer(inbuf, BF16_NP), out=into)
        _BF16_OPS[op] = mpi().Op.Create(combine, commute=True)
    return _BF16_OPS[op]


class _Request(Work):
    """A non-blocking MPI send/recv; its result is the peer's rank in the group."""

    def __init__(self, request, keep, after=None):
        super().__init__()
        self._request, self._keep, self._after = request, keep, after
        self._lock = threading.Lock()

    def _finish(self, status):
        if self._after is not None:
            self._after()
        self._keep = self._after = None
        self.set_result(status.Get_source())

    @property
    def polls_from_any_thread(self):    # MPI_Test on another thread needs THREAD_MULTIPLE
        return mpi().Query_thread() >= mpi().THREAD_MULTIPLE

    def is_completed(self):
        with self._lock:
            if not self._event.is_set():
                status = mpi().Status()
                if self._request.Test(status):
                    self._finish(status)
        return self._event.is_set()

    def wait(self, timeout=None):
        if timeout is None:
            with self._lock:
                if not self._event.is_set():
                    status = mpi().Status()
                    self._request.Wait(status)
                    self._finish(status)
        else:
            deadline = time.monotonic() + timeout
            while not self.is_completed():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"point-to-point operation did not complete within "
                                       f"{timeout} s; is the peer posting the matching "
                                       f"send/recv?")
                time.sleep(1e-4)
        return super().wait()


class MpiProcessGroup(ProcessGroup):
    backend = "mpi"
    device_types = ("cpu", "cuda")     # CuPy arrays directly (CUDA-aware MPI) or staged

    def __init__(self, comm, ranks=None, timeout=None):
        super().__init__(comm.Get_rank(), comm.Get_size(), ranks)
        MPI = mpi()
        self.comm = comm
        self.timeout = timeout
        threaded = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self._queue = CommQueue(f"phalanx-mpi-comm-{id(self):x}", threaded=threaded)
        self._p2p_turn = contextlib.nullcontext() if threaded else self._queue._turn
        # a side channel on which the watchdog threads ask each other how far they got; it
        # needs a second thread in MPI, so only with MPI_THREAD_MULTIPLE
        self._status = comm.Dup() if threaded and timeout and self.size > 1 else None
        self._answers = []                   # answers in flight: their buffers stay alive
        self._status_lock = threading.Lock()  # the watchdog thread vs. shutdown's Free
        self._departed = {}                  # rank here -> when it said it is exiting
        if self._status is not None:
            _GROUPS.add(self)
        Watchdog.watch(self._queue, timeout, self._on_timeout,
                       self._answer_peers if self._status is not None else None)
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.PRODUCT: MPI.PROD}
        self._bool_ops = {ReduceOp.SUM: MPI.LOR, ReduceOp.AVG: MPI.LOR, ReduceOp.MAX: MPI.LOR,
                          ReduceOp.MIN: MPI.LAND, ReduceOp.PRODUCT: MPI.LAND}
        self._bool = MPI.C_BOOL
        self._in_place = MPI.IN_PLACE

    @classmethod
    def world(cls, timeout=None):
        """The group of every process mpirun started, on a private copy of COMM_WORLD."""
        MPI = mpi()
        return cls(MPI.COMM_WORLD.Dup(), None, timeout)

    # --- helpers --------------------------------------------------------------------------
    def _post(self, verb, fn, *arrays):
        """Queue fn(*arrays) (arrays on the host); `verb` and arrays[-1] describe it.

        An asynchronous collective first waits, without spinning, until every rank has
        reached it (`_arrive`): MPI waits by busy-polling, and a communication thread spinning
        for a late peer would steal a core from the computation it is meant to overlap. The
        choice is made where the collective is issued, so every rank makes the same one.
        """
        job = _bound(fn, arrays)
        desc = (verb, arrays[-1] if arrays else None)
        if not self._asynchronous():
            return self._queue.post(job, desc)
        return self._queue.post(lambda: self._arrive() or job(), desc)

    def _asynchronous(self):
        """Whether a collective issued now runs beside the caller's computation. Every rank
        decides the same, as MPI's blocking and non-blocking collectives do not match."""
        return not (CALLER_WAITS.active or self.size == 1 or self._queue.inside())

    def _arrive(self):
        _wait_politely(self.comm.Ibarrier())

    def _buf(self, a):
        if a.dtype is _BOOL:
            return [a, self._bool]
        return a.view(np.uint16) if a.dtype == BF16_NP else a   # (bfloat16: see _bf16_op)

    def _op(self, op, dtype):
        if dtype == BF16_NP:
            return _bf16_op(ReduceOp.SUM if op is ReduceOp.AVG else op)
        return (self._bool_ops if dtype is _BOOL else self._ops)[op]

    def _average(self, a):
        if is_floating_np(a.dtype):
            a /= self.size
        else:
            a //= self.size

    def _on_timeout(self, queue, desc, seconds):
        number = queue.started
        try:
            with self._status_lock:
                missing = self._missing_ranks(number, desc)
        except Exception as e:       # the report must not stop the abort
            missing = f"(could not ask the other ranks: {e!r})"
        sys.stderr.write(
            f"[rank {self.ranks[self.rank]}] phalanx.distributed: {desc} (collective #{number} "
            f"of {self!r}) has not completed after {seconds:.0f} s (timeout "
            f"{self.timeout:.0f} s). {missing} Run with PHALANX_DEBUG=1 to check every "
            f"collective's arguments; raise init_process_group(timeout=...) or "
            f"{COLLECTIVE_TIMEOUT_ENV} if a step is really this slow. Aborting the job.\n")
        sys.stderr.flush()
        self.abort(1)

    # --- who did not join: the status side channel ------------------------------------------
    _QUERY, _ANSWER, _EXITING = 1, 2, 3
    DEPARTURE_GRACE = 2.0        # s: a collective still waiting this long for a departed rank

    def _answer_peers(self):
        """Watchdog tick: tell every rank that asked how far this one got on this group, and
        take note of ranks that announced their exit."""
        with self._status_lock:
            if self._status is None:
                return
            self._answer_peers_locked()
            self._hear_departures_locked()
        self._check_departures()

    def announce_exit(self, wait=1.0):
        """Tell the other ranks this process is exiting (called at exit when its status is
        unknown, as after `raise SystemExit(3)`): a rank that waits for it in a collective then
        aborts the job instead of waiting forever, while this one finalizes."""
        with self._status_lock:
            if self._status is None:
                return
            MPI = mpi()
            sends = [self._status.Isend([b"bye", MPI.BYTE], r, self._EXITING)
                     for r in range(self.size) if r != self.rank]
            deadline = time.monotonic() + wait
            while not all(r.Test() for r in sends) and time.monotonic() < deadline:
                time.sleep(0.001)

    def _hear_departures_locked(self):
        try:
            MPI = mpi()
            status = MPI.Status()
            while self._status.Iprobe(MPI.ANY_SOURCE, self._EXITING, status):
                src = status.Get_source()
                self._status.Recv([bytearray(status.Get_count(MPI.BYTE)), MPI.BYTE], src,
                                  self._EXITING)
                self._departed.setdefault(src, time.monotonic())
        except Exception:
            pass

    def _check_departures(self):
        """Abort if a collective of any group waits for a rank that announced its exit."""
        now = time.monotonic()
        for src, when in list(self._departed.items()):
            gone = self.ranks[src]
            for group in list(_GROUPS):
                running = group._queue.running
                if group._status is None or gone not in group.ranks or running is None:
                    continue
                if now - when > self.DEPARTURE_GRACE and now - running[1] > self.DEPARTURE_GRACE:
                    sys.stderr.write(
                        f"[rank {self.ranks[self.rank]}] phalanx.distributed: rank {gone} exited "
                        f"while this rank waits for it in {describe(running[0])} on {group!r}; "
                        f"aborting the job (see rank {gone}'s output for why it exited).\n")
                    sys.stderr.flush()
                    self.abort(1)

    def _answer_peers_locked(self):
        try:
            MPI = mpi()
            status = MPI.Status()
            while self._status.Iprobe(MPI.ANY_SOURCE, self._QUERY, status):
                src = status.Get_source()
                self._status.Recv([bytearray(status.Get_count(MPI.BYTE)), MPI.BYTE], src,
                                  self._QUERY)
                running = self._queue.running
                answer = msgpack.packb([self._queue.started,
                                        None if running is None else describe(running[0])])
                self._answers.append((self._status.Isend([answer, MPI.BYTE], src,
                                                         self._ANSWER), answer))
            self._answers = [(r, b) for r, b in self._answers if not r.Test()]
        except Exception:            # never take the watchdog thread down
            pass

    def _missing_ranks(self, number, desc, wait=3.0):
        """Ask every other rank how far it got; a sentence naming those that did not join
        collective #`number`, and why as far as can be told."""
        if self._status is None:
            return ("The other ranks cannot be asked where they are (MPI without "
                    "MPI_THREAD_MULTIPLE); some rank did not call the same collective.")
        MPI = mpi()
        peers = [r for r in range(self.size) if r != self.rank]
        asks = [self._status.Isend([b"?", MPI.BYTE], r, self._QUERY) for r in peers]
        answers, status = {}, MPI.Status()
        deadline = time.monotonic() + wait
        while len(answers) < len(peers) and time.monotonic() < deadline:
            self._answer_peers_locked()  # peers that timed out too ask us meanwhile
            if self._status.Iprobe(MPI.ANY_SOURCE, self._ANSWER, status):
                src = status.Get_source()
                buf = bytearray(status.Get_count(MPI.BYTE))
                self._status.Recv([buf, MPI.BYTE], src, self._ANSWER)
                answers[src] = msgpack.unpackb(bytes(buf))
            else:
                time.sleep(0.01)
        for request in asks:
            if not request.Test():
                request.Cancel()
        notes = []
        for r in peers:
            name = f"rank {self.ranks[r]}"
            if r not in answers:
                notes.append(f"{name} did not answer in {wait:g} s (stopped, or stuck in code "
                             f"that never releases the interpreter)")
                continue
            started, running = answers[r]
            doing = f"in {running}" if running else "idle"
            if started < number:
                notes.append(f"{name} has not called it (it is {doing} after {started} "
                             f"collective(s) on this group)")
            elif started == number and running != desc:
                notes.append(f"{name} is {doing} as its collective #{number}")
            elif started > number:
                notes.append(f"{name} is past it, at collective #{started}")
        if not notes:
            return "Every rank is in it too: a transport failure?"
        return "Ranks that did not join: " + "; ".join(notes) + "."

    # --- collectives ------------------------------------------------------------------------
    def allreduce(self, array, op=ReduceOp.SUM):
        shared = self.shared_buffer(array)
        if shared is not None:      # a comm_buffer: a pass over memory this host's ranks share
            return self._post("all_reduce", lambda a: shared.allreduce(a, op), array)
        mop = self._op(op, array.dtype)

        polite = self._asynchronous() and os.environ.get(WAIT_ENV) != "spin"

        def run(a):
            if polite:
                _wait_politely(self.comm.Iallreduce(self._in_place, self._buf(a), mop))
            else:
                self.comm.Allreduce(self._in_place, self._buf(a), mop)
            if op is ReduceOp.AVG:
                self._average(a)
        return self._post("all_reduce", run, array)

    def broadcast(self, array, root=0):
        return self._post("broadcast", lambda a: self.comm.Bcast(self._buf(a), root), array)

    def reduce(self, array, root=0, op=ReduceOp.SUM):
        mop = self._op(op, array.dtype)

        def run(a):
            if self.rank == root:
                self.comm.Reduce(self._in_place, self._buf(a), mop, root)
                if op is ReduceOp.AVG:
                    self._average(a)
            else:
                self.comm.Reduce(self._buf(a), None, mop, root)
        return self._post("reduce", run, array)

    def allgather(self, out, array):
        return self._post("all_gather", lambda o, a: self.comm.Allgather(self._buf(a),
                                                                          self._buf(o)),
                          out, array)

    def reduce_scatter(self, out, array, op=ReduceOp.SUM):
        mop = self._op(op, array.dtype)

        def run(o, a):
            self.comm.Reduce_scatter_block(self._buf(a), self._buf(o), mop)
            if op is ReduceOp.AVG:
                self._average(o)
        return self._post("reduce_scatter", run, out, array)

    def gather(self, out, array, root=0):
        def run(o, a):
            self.comm.Gather(self._buf(a), self._buf(o) if self.rank == root else None, root)
        return self._post("gather", run, out, array)

    def scatter(self, out, array, root=0):
        def run(a, o):
            self.comm.Scatter(self._buf(a) if self.rank == root else None, self._buf(o), root)
        return self._post("scatter", run, array, out)

    def alltoall(self, out, array):
        return self._post("all_to_all", lambda o, a: self.comm.Alltoall(self._buf(a),
                                                                         self._buf(o)),
                          out, array)

    def alltoallv(self, out, out_counts, array, in_counts):
        def spec(a, counts):
            counts = [int(c) for c in counts]
            return [a, (counts, None), self._bool] if a.dtype is _BOOL else \
                [self._buf(a), (counts, None)]
        return self._post("all_to_all",
                          lambda o, a: self.comm.Alltoallv(spec(a, in_counts),
                                                           spec(o, out_counts)),
                          out, array)

    def barrier(self):
        return self._post("barrier", self.comm.Barrier)

    def barrier_now(self, spin):
        (self.comm.Barrier if spin else self._arrive)()

    # --- point to point ----------------------------------------------------------------------
    def send(self, array, dst, tag=0):
        host, _ = _p2p_buffer(array, receiving=False)
        with self._p2p_turn:
            request = self.comm.Isend(self._buf(host), dst, tag)
        return _Request(request, keep=host)

    def recv(self, array, src, tag=0):
        MPI = mpi()
        host, back = _p2p_buffer(array, receiving=True)
        with self._p2p_turn:
            request = self.comm.Irecv(self._buf(host), MPI.ANY_SOURCE if src is None else src,
                                      MPI.ANY_TAG if tag is None else tag)
        return _Request(request, keep=host, after=back)

    # --- objects, groups, lifetime ------------------------------------------------------------
    def allgather_object(self, obj):
        return blocking(self._post, "all_gather_object", lambda: self.comm.allgather(obj))

    def broadcast_object(self, obj, root=0):
        return blocking(self._post, "broadcast_object", lambda: self.comm.bcast(obj, root))

    def split(self, ranks):
        MPI = mpi()
        ranks = list(ranks)
        member = self.rank in ranks
        color = 0 if member else MPI.UNDEFINED
        key = ranks.index(self.rank) if member else 0
        comm = blocking(self._post, "new_group", lambda: self.comm.Split(color, key))
        if comm == MPI.COMM_NULL:
            return None
        return MpiProcessGroup(comm, [self.ranks[r] for r in ranks], self.timeout)

    def submit(self, fn):
        return self._queue.post(fn, getattr(fn, "__qualname__", "submitted function"))

    def abort(self, errorcode=1):
        sys.stderr.flush()
        sys.stdout.flush()
        # mpiexec forwards our output through a proxy that MPI_Abort tears down: give it a
        # moment to pass the last words (a traceback, a timeout report) on to the user
        time.sleep(0.5)
        mpi().COMM_WORLD.Abort(errorcode)
        os._exit(errorcode)  # not reached

    def shutdown(self):
        self._shared.close()
        Watchdog.unwatch(self._queue)
        with self._status_lock:
            if self._status is not None:
                for request, _ in self._answers:
                    request.Wait()
                self._status.Free()
                self._status = None
        try:
            blocking(self._post, "destroy", self.comm.Free)
        finally:
            self._queue.close()
