"""The nccl backend's logic on a test double of NCCL over host memory (`nccl_double.py`): op
and dtype mapping, AVG, buffers, stream ordering, Work completion, the abort paths, backend
choice, and that device groups never take the shared-memory path. A real GPU runs the same
backend in tests/gpu/ (benchmarks/gpu_check.sh)."""
import threading
import time

import numpy as np
import pytest

from phalanx.distributed import process_group, shared_memory, world
from phalanx.distributed.comm_queue import Watchdog
from phalanx.distributed.env import Environment
from phalanx.distributed.nccl_backend import ABORT_KEY, NcclProcessGroup
from phalanx.distributed.reduce_op import ReduceOp

from .nccl_double import AVG, MAX, MIN, SUM, FakeStore, make_cuda, make_nccl


class Group(NcclProcessGroup):
    """Exits are recorded instead of taken."""

    exited = None

    def _exit(self, errorcode):
        self.exited = errorcode


def make_groups(size, version=21800, timeout=None, store=None):
    log = []
    nccl, cuda = make_nccl(version, log), make_cuda(log)
    uid = nccl.get_unique_id()
    groups = [None] * size

    def build(r):
        groups[r] = Group(nccl.NcclCommunicator(size, uid, r), r, size, nccl=nccl, cuda=cuda,
                          xp=np, timeout=timeout, store=store, prefix="nccl/test")
    for r in range(size):
        build(r)
    return groups, nccl, cuda, log


def on_ranks(groups, fn):
    """fn(group) on one thread per rank; their results in rank order."""
    results, errors = [None] * len(groups), []

    def run(r):
        try:
            results[r] = fn(groups[r])
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    if errors:
        raise errors[0]
    return results


@pytest.fixture(autouse=True)
def _no_leftover_watch():
    yield
    with Watchdog._lock:
        if Watchdog._instance is not None:
            for q in [q for q in Watchdog._instance._watched if hasattr(q, "works")]:
                Watchdog._instance._watched.pop(q, None)


@pytest.mark.parametrize("op, nccl_op", [(ReduceOp.SUM, SUM), (ReduceOp.MAX, MAX),
                                         (ReduceOp.MIN, MIN), (ReduceOp.AVG, AVG)])
def test_all_reduce_ops_two_ranks(op, nccl_op):
    groups, *_ = make_groups(2)
    data = [np.array([1.0, 5.0, -2.0], np.float32), np.array([3.0, 1.0, 4.0], np.float32)]
    out = on_ranks(groups, lambda g: (g.allreduce(a := data[g.rank].copy(), op).wait(), a)[1])
    expected = {ReduceOp.SUM: data[0] + data[1], ReduceOp.MAX: np.maximum(*data),
                ReduceOp.MIN: np.minimum(*data), ReduceOp.AVG: (data[0] + data[1]) / 2}[op]
    for a in out:
        np.testing.assert_allclose(a, expected)
    assert groups[0].comm.calls[0] == ("allReduce", 7, nccl_op)     # float32, op code


def test_avg_without_ncclavg_sums_then_divides_on_the_comm_stream():
    groups, nccl, cuda, log = make_groups(2, version=20900)
    assert not hasattr(nccl, "NCCL_AVG")
    floats = on_ranks(groups, lambda g: (g.allreduce(a := np.full(4, g.rank + 1.0), ReduceOp.AVG)
                                         .wait(), a)[1])
    ints = on_ranks(groups, lambda g: (g.allreduce(a := np.array([g.rank + 2], np.int64),
                                                   ReduceOp.AVG).wait(), a)[1])
    np.testing.assert_array_equal(floats[0], np.full(4, 1.5))
    assert ints[0][0] == 2 and ints[1][0] == 2             # (2 + 3) // 2, as the mpi backend
    assert groups[0].comm.calls[0] == ("allReduce", 8, SUM)
    stream = groups[0]._stream.ptr
    assert ("enter", stream) in log                        # the division ran on that stream


def test_bool_and_complex_reductions():
    groups, *_ = make_groups(2)
    flags = [np.array([True, False, False]), np.array([False, False, True])]
    anyof = on_ranks(groups, lambda g: (g.allreduce(a := flags[g.rank].copy()).wait(), a)[1])
    allof = on_ranks(groups, lambda g: (g.allreduce(a := flags[g.rank] | [1, 0, 0],
                                                    ReduceOp.MIN).wait(), a)[1])
    np.testing.assert_array_equal(anyof[1], [True, False, True])
    np.testing.assert_array_equal(allof[0], [True, False, False])
    z = on_ranks(groups, lambda g: (g.allreduce(a := np.array([1 + 2j, g.rank * 1j],
                                                              np.complex64)).wait(), a)[1])
    np.testing.assert_allclose(z[0], [2 + 4j, 1j])
    with pytest.raises(TypeError, match="complex"):
        groups[0].allreduce(np.zeros(2, np.complex64), ReduceOp.MAX)
    with pytest.raises(TypeError, match="cast the tensor"):
        groups[0].allreduce(np.zeros(2, np.int16))


def test_data_movement_verbs_two_ranks():
    groups, *_ = make_groups(2)

    def verbs(g):
        r = g.rank
        b = np.array([r * 10, r * 10 + 1], np.int16)        # any dtype moves, as bytes
        g.broadcast(b, root=1).wait()
        gathered = np.zeros((2, 3), np.float64)
        g.allgather(gathered, np.full(3, r + 0.5)).wait()
        rs = np.zeros(2, np.float32)
        g.reduce_scatter(rs, np.arange(4, dtype=np.float32).reshape(2, 2) * (r + 1)).wait()
        a2a = np.zeros((2, 2), np.int32)
        g.alltoall(a2a, np.array([[r * 100, r * 100 + 1], [r * 100 + 2, r * 100 + 3]],
                                 np.int32)).wait()
        red = np.array([r + 1.0])
        g.reduce(red, root=0, op=ReduceOp.PRODUCT).wait()
        got = np.zeros((2, 2), np.uint8) if r == 0 else None
        g.gather(got, np.array([r, r + 5], np.uint8), root=0).wait()
        part = np.zeros(2, np.float32)
        g.scatter(part, np.arange(4, dtype=np.float32).reshape(2, 2) if r == 1 else None,
                  root=1).wait()
        v = np.zeros(3, np.int64)
        g.alltoallv(v, [1, 2] if r == 0 else [2, 1],
                    np.array([r, r, r], np.int64), [1, 2] if r == 0 else [2, 1]).wait()
        g.barrier().wait()
        return b, gathered, rs, a2a, red, got, part, v

    (b0, g0, rs0, a0, red0, got0, p0, v0), (b1, g1, rs1, a1, red1, _, p1, v1) = \
        on_ranks(groups, verbs)
    np.testing.assert_array_equal(b0, [10, 11])
    np.testing.assert_array_equal(g1, [[0.5] * 3, [1.5] * 3])
    np.testing.assert_array_equal(rs0, [0, 3])           # row 0 of (1x + 2x)
    np.testing.assert_array_equal(rs1, [6, 9])
    np.testing.assert_array_equal(a0, [[0, 1], [100, 101]])
    np.testing.assert_array_equal(a1, [[2, 3], [102, 103]])
    assert red0[0] == 2.0
    np.testing.assert_array_equal(got0, [[0, 5], [1, 6]])
    np.testing.assert_array_equal(p0, [0, 1])
    np.testing.assert_array_equal(p1, [2, 3])
    np.testing.assert_array_equal(v0, [0, 1, 1])
    np.testing.assert_array_equal(v1, [0, 0, 1])


def test_send_recv_and_object_collectives():
    groups, *_ = make_groups(2)

    def exchange(g):
        if g.rank == 0:
            g.send(np.array([7, 8, 9], np.float32), dst=1).wait()
            return None
        got = np.zeros(3, np.float32)
        work = g.recv(got, src=0)
        assert work.result() == 0
        return got
    assert list(on_ranks(groups, exchange)[1]) == [7, 8, 9]
    objs = on_ranks(groups, lambda g: g.allgather_object({"rank": g.rank, "x": [1] * g.rank}))
    assert objs[0] == [{"rank": 0, "x": []}, {"rank": 1, "x": [1]}]
    assert on_ranks(groups, lambda g: g.broadcast_plain(["from", g.rank], root=1)) == \
        [["from", 1]] * 2
    with pytest.raises(NotImplementedError, match="tags"):
        groups[0].send(np.zeros(1), dst=1, tag=3)
    with pytest.raises(ValueError, match="src="):
        groups[0].recv(np.zeros(1), src=None)


def test_split_makes_a_communicator_of_the_members():
    groups, *_ = make_groups(2)
    subs = on_ranks(groups, lambda g: g.split([1]))
    assert subs[0] is None and subs[1].size == 1 and subs[1].ranks == [1]
    a = np.array([3.0])
    subs[1].allreduce(a).wait()
    assert a[0] == 3.0


def test_comm_stream_waits_for_the_producer_and_work_completes_by_event():
    groups, nccl, cuda, log = make_groups(1)
    g = groups[0]
    a = np.ones(5, np.float32)
    work = g.allreduce(a)
    current, comm_stream = cuda.current.ptr, g._stream.ptr
    recorded = next(e for e in log if e[0] == "record" and e[1] == current)
    waited = log.index(("wait", comm_stream, recorded[2]))
    nccl_call = log.index(("nccl", "allReduce", comm_stream))
    done = next(i for i, e in enumerate(log) if e[0] == "record" and e[1] == comm_stream)
    assert log.index(recorded) < waited < nccl_call < done       # producer -> NCCL -> event
    assert work.is_completed() and work._keep is None            # buffer released when done
    work.wait()
    assert cuda.current.waited[-1].id == log[done][2]            # the caller's stream waits


def test_unfinished_work_holds_its_buffers_and_times_out_on_the_host():
    groups, nccl, cuda, log = make_groups(1)
    cuda.state.stuck = True
    a = np.ones(3)
    work = groups[0].allreduce(a)
    assert not work.is_completed() and work._keep is a
    work.wait()                                  # device-side wait: the host goes on
    with pytest.raises(TimeoutError, match="all_reduce"):
        work.wait(timeout=0.05)
    with pytest.raises(TimeoutError, match="barrier"):
        groups[0].barrier().wait(timeout=0.05)   # a barrier's wait is on the host


def test_watchdog_names_the_stuck_collective_and_aborts(capsys):
    groups, nccl, cuda, log = make_groups(1, timeout=0.3)
    g = groups[0]
    cuda.state.stuck = True
    work = g.allreduce(np.ones((2, 3), np.float32))
    deadline = time.monotonic() + 5
    while g.exited is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert g.exited == 1 and g.comm.aborted
    with pytest.raises(RuntimeError, match=r"all_reduce\(shape=\(2, 3\), dtype=float32\)"):
        work.wait()
    assert "has not completed" in capsys.readouterr().err


def test_an_aborting_rank_brings_the_others_down_through_the_store():
    store = FakeStore()
    groups, nccl, cuda, log = make_groups(2, timeout=30, store=store)
    groups[1].abort(1)                                 # e.g. an uncaught exception there
    assert store.check([f"nccl/test/{ABORT_KEY}"]) and groups[1].comm.aborted
    deadline = time.monotonic() + 5
    while groups[0].exited is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert groups[0].exited == 1 and groups[0].comm.aborted


def test_an_asynchronous_nccl_error_aborts():
    groups, *_ = make_groups(1, timeout=30)
    groups[0].comm.async_error = "NCCL_ERROR_REMOTE_ERROR"
    deadline = time.monotonic() + 5
    while groups[0].exited is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert groups[0].exited == 1


def test_shutdown_destroys_and_later_calls_fail():
    groups, *_ = make_groups(1)
    groups[0].shutdown()
    assert groups[0].comm.destroyed
    with pytest.raises(RuntimeError, match="destroyed"):
        groups[0].allreduce(np.ones(1))


def test_device_groups_never_take_the_shared_memory_path(monkeypatch):
    def refuse(*args):
        raise AssertionError("shared memory was created")
    monkeypatch.setattr(shared_memory, "create", refuse)
    monkeypatch.setattr(shared_memory, "enabled", lambda: True)
    groups, *_ = make_groups(2)
    buf = groups[0].comm_buffer(8, np.float32, np)        # nccl: never shared
    assert type(buf) is np.ndarray and not groups[0].reduces_locally(buf)

    class DeviceModule:   # another array module (CuPy's place): a CPU backend doesn't share
        @staticmethod
        def zeros(count, dtype):
            return ("device", count)
    pg = process_group.ProcessGroup(0, 2)
    assert pg.comm_buffer(4, np.float32, DeviceModule) == ("device", 4)
    assert pg.shared_buffer(("device", 4)) is None


def test_registry_and_automatic_choice(monkeypatch):
    assert "nccl" in world.BACKENDS
    mpirun = Environment(rank=0, world_size=2, local_world_size=2, source="openmpi",
                         under_mpi=True)
    run = Environment(rank=0, world_size=2, source="phalanx", store_endpoint="tcp://x:1")
    monkeypatch.setattr(world, "_gpu_in_use", lambda env: True)
    assert world._choose(None, mpirun) == "nccl" and world._choose(None, run) == "nccl"
    assert world._choose("gloo", mpirun) == "mpi"          # asked for a CPU backend
    assert world._choose(None, Environment()) == "local"    # a world of one
    monkeypatch.setattr(world, "_gpu_in_use", lambda env: False)
    assert world._choose(None, mpirun) == "mpi" and world._choose("nccl", mpirun) == "nccl"


def test_gpu_in_use_is_false_without_cupy_loaded(monkeypatch):
    from phalanx.tensor import backend
    monkeypatch.setattr(backend, "_cupy", None)
    assert not world._gpu_in_use(Environment(world_size=2, under_mpi=True))


def test_mpi_cuda_awareness_can_be_forced(monkeypatch):
    from phalanx.distributed import mpi_backend
    for text, expected in (("1", True), ("0", False)):
        monkeypatch.setenv(mpi_backend.CUDA_AWARE_ENV, text)
        monkeypatch.setattr(mpi_backend, "_cuda_aware", None)
        assert mpi_backend.cuda_aware() is expected
