"""Every collective, op and dtype over the mpi backend; run by `mpiexec -n N pytest --only-mpi`.

Rank r contributes values derived from r, so each rank knows the expected result. Every test
makes the same collective calls on every rank (a failed assertion must not leave a peer
waiting), and runs under a timeout that kills the job if it hangs.
"""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed import ReduceOp
from phalanx.tensor.dtypes import BF16_NP, is_floating_np

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    assert dist.get_backend() == "mpi"
    return dist.get_rank(), dist.get_world_size()


def T(array):
    return px.Tensor._make(np.ascontiguousarray(array))


def A(t):
    return t._data


DTYPES = [np.float64, np.float32, np.float16, BF16_NP, np.int64, np.int32, np.int8, np.uint8]
RTOL = {np.float16: 1e-3, BF16_NP: 1e-2}     # one rounding of the mean


def contribution(rank, dtype, n=5):
    return (np.arange(n) % 3 + rank + 1).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", list(ReduceOp), ids=lambda o: o.name)
def test_all_reduce_ops_and_dtypes(world, op, dtype):
    rank, size = world
    if op is ReduceOp.AVG and not is_floating_np(np.dtype(dtype)):
        with pytest.raises(TypeError, match="AVG needs a floating-point"):
            dist.all_reduce(T(contribution(rank, dtype)), op=op)
        return
    t = T(contribution(rank, dtype))
    version = t._version[0]
    dist.all_reduce(t, op=op)
    rows = np.stack([contribution(r, np.float64) for r in range(size)])
    expected = {ReduceOp.SUM: rows.sum(0), ReduceOp.AVG: rows.mean(0), ReduceOp.MAX: rows.max(0),
                ReduceOp.MIN: rows.min(0), ReduceOp.PRODUCT: rows.prod(0)}[op]
    np.testing.assert_allclose(A(t).astype(np.float64), expected.astype(dtype).astype(np.float64),
                               rtol=RTOL.get(dtype, 1e-12))
    assert A(t).dtype == dtype and t._version[0] > version


def test_bfloat16_travels_through_every_verb(world):
    """MPI has no bfloat16: its bits travel as uint16, and reductions combine them as
    bfloat16 (an MPI user-defined op)."""
    rank, size = world

    def bf(values):
        return T(np.asarray(values, np.float32).astype(BF16_NP))

    t = bf(np.arange(4) + rank)
    dist.broadcast(t, src=size - 1)
    assert A(t).dtype == BF16_NP and A(t).astype(float).tolist() == list(np.arange(4) + size - 1)
    outs = [bf(np.zeros(3)) for _ in range(size)]
    dist.all_gather(outs, bf(np.full(3, 0.5 + rank)))
    assert [A(o).astype(float).tolist() for o in outs] == [[0.5 + r] * 3 for r in range(size)]
    out = bf(np.zeros(2))
    dist.reduce_scatter_tensor(out, bf(np.arange(2 * size) * (rank + 1)))
    mine = np.arange(2 * size)[2 * rank:2 * rank + 2] * sum(range(1, size + 1))
    assert A(out).astype(float).tolist() == mine.tolist()
    t = bf([1.5, -2.0]) * (rank + 1)
    dist.reduce(t, dst=0, op=ReduceOp.MIN)
    if rank == 0:
        assert A(t).astype(float).tolist() == [1.5, -2.0 * size]
    got = bf(np.zeros(size))
    dist.all_to_all_single(got, bf(np.arange(size) + 10 * rank))
    assert A(got).astype(float).tolist() == [10 * r + rank for r in range(size)]


def test_all_reduce_bool_is_logical(world):
    rank, size = world
    t = T(np.array([rank == 0, True, False]))
    dist.all_reduce(t, op=ReduceOp.MAX)
    assert A(t).tolist() == [True, True, False]
    t = T(np.array([rank == 0, True, False]))
    dist.all_reduce(t, op=ReduceOp.MIN)
    assert A(t).tolist() == [False, True, False]


def test_all_reduce_async_and_non_contiguous(world):
    rank, size = world
    base = np.tile(np.arange(6.0)[:, None] + rank, (1, 4))
    t = T(base)
    view = t.t()                                   # non-contiguous: goes through a copy
    work = dist.all_reduce(view, async_op=True)
    work.wait()
    assert work.is_completed()
    total = sum(np.arange(6.0)[:, None] + r for r in range(size))
    np.testing.assert_array_equal(A(t), np.tile(total, (1, 4)))
    works = [dist.all_reduce(T(np.full(1000, float(rank))), async_op=True) for _ in range(5)]
    for w in works:
        w.wait()


@pytest.mark.parametrize("wait", ["poll", "spin"])
def test_async_all_reduce_waits_politely_or_spins(world, wait, monkeypatch):
    """On the communication thread the all-reduce is MPI's non-blocking one driven by tests
    between naps (the core stays free for backward), or MPI's blocking one with
    PHALANX_MPI_WAIT=spin; both give every op's exact result, bool and large arrays too."""
    from phalanx.distributed import mpi_backend
    monkeypatch.setenv(mpi_backend.WAIT_ENV, wait)
    rank, size = world
    seen = []
    real = mpi_backend._wait_politely
    monkeypatch.setattr(mpi_backend, "_wait_politely",
                        lambda request: seen.append(type(request).__name__) or real(request))
    big = T(np.arange(1 << 20, dtype=np.float32) * (rank + 1))
    flags = T(np.array([rank == 0, True, False]))
    works = [dist.all_reduce(big, async_op=True),
             dist.all_reduce(flags, op=ReduceOp.MAX, async_op=True)]
    for w in works:
        w.wait()
    np.testing.assert_array_equal(
        A(big), np.arange(1 << 20, dtype=np.float32) * (size * (size + 1) // 2))
    assert A(flags).tolist() == [True, True, False]
    # the arrival barrier always waits politely; the all-reduces only when polling
    assert len(seen) == (4 if wait == "poll" else 2), seen


def test_broadcast_reduce(world):
    rank, size = world
    for src in range(size):
        t = T(np.full((2, 3), float(rank)))
        dist.broadcast(t, src=src)
        np.testing.assert_array_equal(A(t), np.full((2, 3), float(src)))
    dst = size - 1
    t = T(np.full(3, rank + 1, dtype=np.int64))
    dist.reduce(t, dst=dst, op=ReduceOp.PRODUCT)
    if rank == dst:
        assert A(t).tolist() == [int(np.prod(np.arange(1, size + 1)))] * 3
    t = T(np.full(3, float(rank)))
    dist.reduce(t, dst=0, op=ReduceOp.AVG)
    if rank == 0:
        np.testing.assert_allclose(A(t), (size - 1) / 2)


def test_all_gather_variants(world):
    rank, size = world
    outs = [T(np.zeros((2, 2), np.float32)) for _ in range(size)]
    dist.all_gather(outs, T(np.full((2, 2), rank, np.float32)))
    for r, o in enumerate(outs):
        np.testing.assert_array_equal(A(o), np.full((2, 2), r))
    cat = T(np.zeros((2 * size, 3)))
    dist.all_gather_into_tensor(cat, T(np.full((2, 3), float(rank))))
    np.testing.assert_array_equal(A(cat), np.repeat(np.arange(size, dtype=float), 2)[:, None]
                                  * np.ones(3))
    stacked = T(np.zeros((size, 2, 3)))
    w = dist.all_gather_into_tensor(stacked, T(np.full((2, 3), float(rank))), async_op=True)
    w.wait()
    np.testing.assert_array_equal(A(stacked)[:, 0, 0], np.arange(size))
    with pytest.raises(ValueError, match="must be"):
        dist.all_gather_into_tensor(T(np.zeros(size + 1)), T(np.zeros(1)))
    with pytest.raises(ValueError, match="tensor_list"):
        dist.all_gather([T(np.zeros(3))] * (size + 1), T(np.zeros(3)))


def test_reduce_scatter_variants(world):
    rank, size = world
    inputs = [T(np.full(4, float(rank * 10 + i))) for i in range(size)]
    out = T(np.zeros(4))
    dist.reduce_scatter(out, inputs)
    np.testing.assert_array_equal(A(out), sum(r * 10 + rank for r in range(size)))
    big = T(np.arange(3.0 * size) + rank)
    out = T(np.zeros(3))
    dist.reduce_scatter_tensor(out, big, op=ReduceOp.MAX)
    np.testing.assert_array_equal(A(out), np.arange(3.0 * rank, 3.0 * rank + 3) + size - 1)
    out = T(np.zeros(3))
    dist.reduce_scatter_tensor(out, T(np.arange(3.0 * size)), op=ReduceOp.AVG)
    np.testing.assert_allclose(A(out), np.arange(3.0 * rank, 3.0 * rank + 3))


def test_gather_scatter(world):
    rank, size = world
    dst = size - 1
    gl = [T(np.zeros(2, np.int32)) for _ in range(size)] if rank == dst else None
    dist.gather(T(np.full(2, rank, np.int32)), gl, dst=dst)
    if rank == dst:
        assert [A(g).tolist() for g in gl] == [[r, r] for r in range(size)]
    sl = [T(np.full(3, float(r * r))) for r in range(size)] if rank == 0 else None
    out = T(np.zeros(3))
    dist.scatter(out, sl, src=0)
    np.testing.assert_array_equal(A(out), float(rank * rank))


def test_all_to_all_even_and_uneven(world):
    rank, size = world
    inp = T(np.arange(size * 2.0) + 100 * rank)
    out = T(np.zeros(size * 2))
    dist.all_to_all_single(out, inp)
    np.testing.assert_array_equal(A(out), np.concatenate(
        [np.arange(2.0 * rank, 2.0 * rank + 2) + 100 * r for r in range(size)]))
    # rank r sends j+1 rows to rank j; rank j receives j+1 rows from each rank
    ins = [T(np.full((j + 1, 2), r_val)) for j, r_val in
           enumerate([float(rank)] * size)]
    outs = [T(np.zeros((rank + 1, 2))) for _ in range(size)]
    dist.all_to_all(outs, ins)
    for r, o in enumerate(outs):
        np.testing.assert_array_equal(A(o), np.full((rank + 1, 2), float(r)))
    in_splits = [j + 1 for j in range(size)]
    out_splits = [rank + 1] * size
    inp = T(np.concatenate([np.full((n, 3), 10.0 * rank + j) for j, n in enumerate(in_splits)]))
    out = T(np.zeros((sum(out_splits), 3)))
    dist.all_to_all_single(out, inp, out_splits, in_splits)
    expected = np.concatenate([np.full((rank + 1, 3), 10.0 * r + rank) for r in range(size)])
    np.testing.assert_array_equal(A(out), expected)


def test_barrier_and_async_barrier(world):
    dist.barrier()
    w = dist.barrier(async_op=True)
    w.wait()
    assert w.is_completed()


def test_point_to_point_ring(world):
    rank, size = world
    right, left = (rank + 1) % size, (rank - 1) % size
    big = 1 << 18                     # larger than MPI's eager limit: rendezvous protocol
    send = T(np.full(big, float(rank)))
    recv = T(np.zeros(big))
    # every rank posts its send first: must not deadlock
    s = dist.isend(send, right, tag=7)
    r = dist.irecv(recv, left, tag=7)
    s.wait()
    r.wait()
    assert A(recv)[0] == left and A(recv)[-1] == left
    if rank == 0:
        dist.send(T(np.arange(3.0)), dst=1)
    elif rank == 1:
        got = T(np.zeros(3))
        assert dist.recv(got) == 0            # any source; returns the sender
        np.testing.assert_array_equal(A(got), np.arange(3.0))
    dist.barrier()
    ops = [dist.P2POp(dist.isend, T(np.full(2, float(rank))), right),
           dist.P2POp(dist.irecv, recv_small := T(np.zeros(2)), left)]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    assert A(recv_small).tolist() == [left, left]


def test_object_collectives(world):
    rank, size = world
    objs = [None] * size
    dist.all_gather_object(objs, {"rank": rank, "name": f"r{rank}"})
    assert objs == [{"rank": r, "name": f"r{r}"} for r in range(size)]
    lst = [rank, "x", None] if rank == 1 else [None, None, None]
    dist.broadcast_object_list(lst, src=1)
    assert lst == [1, "x", None]
    gathered = [None] * size if rank == 0 else None
    dist.gather_object(rank * 2, gathered, dst=0)
    if rank == 0:
        assert gathered == [2 * r for r in range(size)]
    out = [None]
    dist.scatter_object_list(out, [f"to{r}" for r in range(size)] if rank == 0 else None, src=0)
    assert out == [f"to{rank}"]


def test_object_point_to_point(world):
    """send_object_list / recv_object_list: a ring, then every rank answering rank 0."""
    rank, size = world
    right, left = (rank + 1) % size, (rank - 1) % size
    got = [None, None]
    if rank % 2 == 0:       # even ranks send first, so a ring of any size cannot deadlock
        dist.send_object_list([{"from": rank}, list(range(rank))], dst=right)
        assert dist.recv_object_list(got, src=left, use_batch=True) == left
    else:
        assert dist.recv_object_list(got, group_src=left) == left
        dist.send_object_list([{"from": rank}, list(range(rank))], dst=right, use_batch=True)
    assert got == [{"from": left}, list(range(left))]
    if rank == 0:
        answers = {}
        for _ in range(size - 1):
            one = [None]
            sender = dist.recv_object_list(one)
            answers[sender] = one[0]
        assert answers == {r: f"rank {r}" for r in range(1, size)}
    else:
        dist.send_object_list([f"rank {rank}"], dst=0)
    with pytest.raises(ValueError, match="exactly one of dst and group_dst"):
        dist.send_object_list([1], dst=0, group_dst=0)


def test_subgroups(world):
    rank, size = world
    mine, groups = dist.new_subgroups(group_size=1)
    assert len(groups) == size and dist.get_process_group_ranks(mine) == [rank]
    firsts = list(range(0, size, 2))
    lists = [firsts, [r for r in range(size) if r not in firsts]]
    mine, groups = dist.new_subgroups_by_enumeration(lists)
    members = lists[rank % 2]
    assert dist.get_process_group_ranks(mine) == members
    t = T(np.array([float(rank)]))
    dist.all_reduce(t, group=mine)
    assert A(t)[0] == sum(members)
    assert groups[1 - rank % 2] is dist.GroupMember.NON_GROUP_MEMBER
    dist.barrier()


def test_new_group_subset(world):
    rank, size = world
    members = [0, size - 1]
    g = dist.new_group(members)
    if rank in members:
        assert dist.get_world_size(g) == 2 and dist.get_rank(g) == members.index(rank)
        t = T(np.array([float(rank)]))
        dist.all_reduce(t, group=g)
        assert A(t)[0] == sum(members)
        t = T(np.array([float(rank)]))
        dist.broadcast(t, src=size - 1, group=g)  # src is a global rank
        assert A(t)[0] == size - 1
        assert dist.get_process_group_ranks(g) == members
    else:
        assert g is dist.GroupMember.NON_GROUP_MEMBER
        assert dist.all_reduce(T(np.zeros(1)), group=g) is None
        assert dist.get_rank(g) == -1
    dist.destroy_process_group(g)
    dist.barrier()


def test_debug_mode_names_ranks_and_values(world, monkeypatch):
    rank, size = world
    monkeypatch.setattr(dist.debug, "_enabled", True)
    t = T(np.zeros(3 if rank == 0 else 4, np.float32))
    with pytest.raises(dist.CollectiveMismatchError) as info:
        dist.all_reduce(t)
    msg = str(info.value)
    assert "rank 0: all_reduce(dtype=float32, op=SUM, shape=(3,))" in msg
    assert "shape=(4,)" in msg and "rank" in msg
    # different verbs on different ranks
    with pytest.raises(dist.CollectiveMismatchError, match="broadcast"):
        if rank == 0:
            dist.broadcast(T(np.zeros(2)), src=0)
        else:
            dist.all_reduce(T(np.zeros(2)))
    # different dtypes
    with pytest.raises(dist.CollectiveMismatchError, match="float64"):
        dist.all_reduce(T(np.zeros(2, np.float64 if rank == 0 else np.float32)))
    # and matching calls still work in debug mode
    t = T(np.ones(2))
    dist.all_reduce(t)
    assert A(t).tolist() == [size, size]


def test_world_queries(world):
    rank, size = world
    assert dist.is_initialized()
    assert dist.get_rank() == rank and 0 <= dist.get_local_rank() < size
    assert dist.get_local_world_size() == size            # every rank on this machine
    assert dist.group.WORLD is not None and dist.get_rank(dist.group.WORLD) == rank
    world = dist.group.WORLD            # PyTorch's ProcessGroup methods, and plain numbers
    assert (world.size(), world.rank()) == (size, rank) == (world.size, world.rank)
    assert list(range(world.size)) == list(range(size)) and f"{world.size}" == str(size)
    with pytest.raises(RuntimeError, match="already called"):
        dist.init_process_group()
    with pytest.raises(ValueError, match="not a member"):
        dist.broadcast(T(np.zeros(1)), src=size)


def test_destroy_and_init_again(world):
    rank, size = world
    dist.destroy_process_group()
    assert not dist.is_initialized()
    dist.init_process_group(backend="mpi")
    t = T(np.array([1.0]))
    dist.all_reduce(t)
    assert A(t)[0] == size


def test_a_collectives_future_runs_its_callbacks_without_a_wait(world):
    import threading
    rank, size = world
    t = T(np.full(3, rank + 1.0))
    done = threading.Event()
    seen = []
    dist.all_reduce(t, async_op=True).get_future().then(
        lambda f: seen.append(A(f.value()[0]).copy())).add_done_callback(lambda f: done.set())
    assert done.wait(30), "the future's callbacks did not run"
    np.testing.assert_array_equal(seen[0], np.full(3, size * (size + 1) / 2))
    dist.barrier()
