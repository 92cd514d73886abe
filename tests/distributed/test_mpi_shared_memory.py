"""comm_buffer: buffers in memory every rank maps, all-reduced without messages (mpi backend).

Run by `mpiexec -n N pytest --only-mpi`; every rank is on this host, so buffers are shared
unless a test makes a rank refuse. Results must equal the MPI all-reduce of private arrays.
"""
import gc
import glob
import os

import numpy as np
import pytest

import phalanx.distributed as dist
from phalanx.distributed import ReduceOp, shared_memory
from phalanx.distributed.comm_queue import blocking
from phalanx.distributed.world import resolve

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def group():
    if not dist.is_initialized():
        dist.init_process_group()
    return resolve(None)


def contribution(rank, n, dtype):
    values = (np.arange(n) * 7 + rank * 3) % 11 - 4 + rank
    return (values > 0) if dtype == np.bool_ else values.astype(dtype)


def leftover_files(group):
    """Files this job left in /dev/shm (their names carry rank 0's pid)."""
    pid = group.broadcast_object(os.getpid(), 0)
    return glob.glob(os.path.join(shared_memory.DIRECTORY, f"phalanx-{pid}-*"))


DTYPES = [np.float64, np.float32, np.int64, np.int32, np.bool_]
CASES = [(op, dtype) for op in ReduceOp for dtype in DTYPES
         if op is not ReduceOp.AVG or np.dtype(dtype).kind == "f"]   # AVG: floats only


@pytest.mark.parametrize("n", [1, 2, 1001, 70_001])
@pytest.mark.parametrize("op,dtype", CASES,
                         ids=[f"{op.name}-{np.dtype(d).name}" for op, d in CASES])
def test_all_reduce_equals_mpi(group, op, dtype, n, monkeypatch):
    monkeypatch.setattr(shared_memory, "BLOCK_BYTES", 4096)     # many blocks per chunk
    buf = group.comm_buffer(n, dtype, np)
    assert group.reduces_locally(buf) and np.all(buf == 0) and buf.dtype == dtype
    buf[...] = contribution(group.rank, n, dtype)
    expected = contribution(group.rank, n, dtype)
    blocking(group.allreduce, buf, op)
    blocking(group.allreduce, expected, op)          # a private array: MPI's Allreduce
    if buf.dtype.kind == "f":
        ok = np.allclose(buf, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)
    else:
        ok = np.array_equal(buf, expected)
    # every rank reaches the same collectives whatever it finds, then asserts
    everyone = group.allgather_object((bool(ok), buf.tobytes()))
    assert all(ok for ok, _ in everyone), f"ranks {[ok for ok, _ in everyone]} match MPI"
    assert all(b == everyone[0][1] for _, b in everyone), "ranks hold different results"


def test_asynchronous_in_issue_order_with_other_collectives(group):
    bufs = [group.comm_buffer(50_000, np.float64, np) for _ in range(3)]
    for i, b in enumerate(bufs):
        b[...] = group.rank + i
    plain = np.full(10, float(group.rank))
    works = [group.allreduce(bufs[0]), group.allreduce(plain), group.allreduce(bufs[1]),
             group.allreduce(bufs[2], ReduceOp.MAX)]
    for w in works:
        w.wait()
    total = sum(range(group.size))
    assert np.all(bufs[0] == total) and np.all(plain == total)
    assert np.all(bufs[1] == total + group.size) and np.all(bufs[2] == group.size - 1 + 2)


def test_memory_is_unlinked_and_released_with_the_array(group):
    # this buffer's own entry, not a count: earlier tests' buffers may be released meanwhile
    # (by a collective's worker letting go of them), which a count would take for this one
    registered = group._shared._buffers
    buf = group.comm_buffer(1000, np.float32, np)
    key = shared_memory._key(buf)
    assert leftover_files(group) == []           # every rank mapped it: the name is gone
    assert key in registered
    view = buf[10:20]
    del buf
    gc.collect()
    assert key in registered                     # a view keeps it registered
    del view
    gc.collect()
    assert key not in registered
    assert group.comm_buffer(0, np.float32, np).shape == (0,)


@pytest.mark.parametrize("failure", ["map", "reserve", "disabled"])
def test_private_memory_when_a_rank_cannot_share(group, failure, monkeypatch):
    """A rank on another host cannot open the file, a full /dev/shm cannot reserve it: every
    rank then gets a private buffer, and all_reduce on it goes through MPI."""
    last = group.size - 1
    if failure == "map" and group.rank == last:
        monkeypatch.setattr(shared_memory, "_map", lambda path: None)
    if failure == "reserve" and group.rank == 0:
        def no_room(fd, offset, length):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(os, "posix_fallocate", no_room)
    if failure == "disabled":
        monkeypatch.setenv("PHALANX_SHARED_MEMORY", "0")
    buf = group.comm_buffer(100, np.float64, np)
    assert not group.reduces_locally(buf) and np.all(buf == 0)
    assert leftover_files(group) == []
    buf[...] = group.rank
    blocking(group.allreduce, buf, ReduceOp.SUM)
    assert np.all(buf == sum(range(group.size)))


@pytest.mark.parametrize("cores", ["one each", "all on one"])
def test_ranks_without_a_core_each_wait_politely(group, cores, monkeypatch):
    """Ranks that each have a core may spin while waiting for each other; oversubscribed ones
    must not (a spinning rank takes the core of the rank it waits for). Both give the sum."""
    rank = group.rank
    monkeypatch.setattr(shared_memory, "_cores", lambda: [rank] if cores == "one each" else [0])
    buf = group.comm_buffer(10_000, np.float64, np)
    assert group._shared.find(buf).own_cores == (cores == "one each")
    for step in range(3):
        buf[...] = rank + step
        blocking(group.allreduce, buf, ReduceOp.AVG)
        assert np.all(buf == (group.size - 1) / 2 + step)
