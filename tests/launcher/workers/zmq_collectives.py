"""Runs every ZmqProcessGroup verb and checks the results against NumPy; exits 0 when all pass.

Started by tests/distributed/test_zmq_backend.py with RANK, WORLD_SIZE and the store env."""
import os
import sys
import threading

import numpy as np

from phalanx.distributed import shared_memory
from phalanx.distributed.process_group import ReduceOp
from phalanx.distributed.store import Store
from phalanx.distributed.zmq_backend import ZmqProcessGroup
from phalanx.tensor.dtypes import BF16_NP

rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
pg = ZmqProcessGroup.from_store(Store.from_env(timeout=30), rank, size, timeout=30)


def data(r, n, dtype=np.float64):
    return (np.arange(n, dtype=np.float64) * (r + 1) + r).astype(dtype)


for n in (0, 1, 7, 1000, 100_003, 1_000_000):          # empty, tiny, direct, ring, many chunks
    for dtype in (np.float32, np.float64, np.int64):
        x = data(rank, n, dtype)
        pg.allreduce(x).wait()
        expect = sum(data(r, n, dtype) for r in range(size)) if n else x
        assert np.array_equal(x, expect), (n, dtype)
for n in (7, 100_003):              # bfloat16 has no buffer protocol: sent as its bytes
    x = data(rank % 4, n, np.float32).astype(BF16_NP) / 64
    pg.allreduce(x, ReduceOp.AVG).wait()
    expect = sum(data(r % 4, n, np.float32).astype(BF16_NP) / 64 for r in range(size)) / size
    assert x.dtype == BF16_NP and np.allclose(x.astype(np.float32), expect.astype(np.float32),
                                              rtol=2e-2), n
    pg.broadcast(x, size - 1).wait()
    out = np.zeros((size, n), BF16_NP)
    pg.allgather(out, x).wait()
    assert (out == x).all()
x = data(rank, 300_000)
pg.allreduce(x, ReduceOp.MAX).wait()
assert np.array_equal(x, data(size - 1, 300_000))
x = data(rank, 50)
pg.allreduce(x, ReduceOp.AVG).wait()
assert np.allclose(x, sum(data(r, 50) for r in range(size)) / size)

# comm_buffer: ranks on one host share it; all-reduce is a pass over shared memory
for n in (1, 7, 100_003):
    for dtype, op in ((np.float32, ReduceOp.SUM), (np.int64, ReduceOp.MAX),
                      (np.float64, ReduceOp.AVG)):
        buf = pg.comm_buffer(n, dtype, np)
        assert pg.reduces_locally(buf) == (size > 1) and not buf.any()
        buf[...] = data(rank, n, dtype)
        expect = data(rank, n, dtype)
        pg.allreduce(buf, op).wait()
        pg.allreduce(expect, op).wait()             # a private array: the ring
        assert np.allclose(buf, expect, rtol=1e-6), (n, dtype, op)

# ... and across (simulated) hosts, host = rank % 2: four ranks make two hosts of two, where
# the all-reduce is per host in shared memory and across hosts over ZeroMQ
real_host_id = shared_memory.host_id
shared_memory.host_id = lambda: f"host{rank % 2}"
sub = pg.split(list(range(size)))                  # a new group lays itself out anew
for n in (3, 100_003):
    buf = sub.comm_buffer(n, np.float64, np)
    assert (sub._shared.find(buf) is not None) == (size == 4)
    buf[...] = data(rank, n)
    expect = data(rank, n)
    sub.allreduce(buf, ReduceOp.AVG).wait()
    sub.allreduce(expect, ReduceOp.AVG).wait()
    assert np.allclose(buf, expect), n
sub.shutdown()
shared_memory.host_id = real_host_id

works = [pg.allreduce(np.full(200_000, float(rank + i))) for i in range(5)]   # async, queued
for w in works:
    w.wait()

for root in range(size):
    for n in (5, 500_000):
        x = data(rank, n)
        pg.broadcast(x, root).wait()
        assert np.array_equal(x, data(root, n))

for n in (3, 300_000):
    out = np.zeros((size, n))
    pg.allgather(out, data(rank, n)).wait()
    assert np.array_equal(out, np.stack([data(r, n) for r in range(size)]))

    src = np.stack([data(rank * size + i, n) for i in range(size)])
    out = np.zeros(n)
    pg.reduce_scatter(out, src).wait()
    assert np.array_equal(out, sum(data(r * size + rank, n) for r in range(size)))

    out = np.zeros((size, n)) if rank == 0 else None
    pg.gather(out, data(rank, n), root=0).wait()
    if rank == 0:
        assert np.array_equal(out, np.stack([data(r, n) for r in range(size)]))

    out = np.zeros(n)
    pg.scatter(out, np.stack([data(i, n) for i in range(size)]) if rank == 1 % size else None,
               root=1 % size).wait()
    assert np.array_equal(out, data(rank, n))

    out = np.zeros((size, n))
    pg.alltoall(out, np.stack([data(rank * 10 + j, n) for j in range(size)])).wait()
    assert np.array_equal(out, np.stack([data(i * 10 + rank, n) for i in range(size)]))

pg.barrier().wait()
if size > 1:
    right, left = (rank + 1) % size, (rank - 1) % size
    send = pg.send(data(rank, 1000), right, tag=3)
    got = np.zeros(1000)
    assert pg.recv(got, left, tag=3).result() == left        # the result names the sender
    send.wait()
    assert np.array_equal(got, data(left, 1000))

    # receives posted before the sends, on every rank, small and zero-copy sizes
    for n in (10, 300_000):
        got = np.zeros(n)
        receive = pg.recv(got, left, tag=4)
        send = pg.send(data(rank, n), right, tag=4)
        receive.wait()
        send.wait()
        assert np.array_equal(got, data(left, n)) and receive.is_completed()

    # a pending receive does not hold up collectives issued after it
    got = np.zeros(5)
    receive = pg.recv(got, left, tag=5)
    x = np.full(7, 1.0)
    pg.allreduce(x).wait()
    assert np.all(x == size)
    pg.send(data(rank, 5), right, tag=5).wait()
    receive.wait()
    assert np.array_equal(got, data(left, 5))

    # receives match in the order they were posted, whichever is waited on first
    first, second = np.zeros(3), np.zeros(3)
    a, b = pg.recv(first, left, tag=6), pg.recv(second, left, tag=6)
    pg.send(np.full(3, 1.0), right, tag=6).wait()
    pg.send(np.full(3, 2.0), right, tag=6).wait()
    b.wait()
    a.wait()
    assert np.all(first == 1.0) and np.all(second == 2.0)

    # any source and any tag: rank 0 hears from everyone
    if rank == 0:
        senders = set()
        for _ in range(size - 1):
            got = np.zeros(2)
            senders.add(pg.recv(got, None, None).result())
            assert np.all(got == 0.5)
        assert senders == set(range(1, size)), senders
    else:
        pg.send(np.full(2, 0.5), 0, tag=rank).wait()
    pg.barrier().wait()        # or a wildcard receive could take the next section's message

    try:
        pg.send(np.zeros(2), rank)
        raise AssertionError("a send to oneself was accepted")
    except ValueError as e:
        assert "cannot send to" in str(e)
    receive = pg.recv(np.zeros(4), left, tag=7)     # sizes disagree: a clear error
    pg.send(np.zeros(3), right, tag=7).wait()
    try:
        receive.wait()
        raise AssertionError("a message of the wrong size was accepted")
    except Exception as e:                          # noqa: BLE001  (CollectiveError)
        assert "same size and dtype" in str(e), e
    pg.barrier().wait()

# submit: runs after the work issued before it, on the communication thread (the caller goes on);
# collectives it issues run right away, inside it
a = np.full(200_000, 1.0)
first = pg.allreduce(a)
go = threading.Event()


def hook():
    go.wait(20)                       # set by the caller after submit() returned
    before = a[0]
    b = np.full(10, float(rank))
    pg.allreduce(b).wait()
    return before, b[0]


hooked = pg.submit(hook)
go.set()
assert hooked.result() == (float(size), float(sum(range(size)))), hooked.result()
first.wait()

# sub-groups: every rank calls split in the same order; non-members get None
evens = pg.split(list(range(0, size, 2)))
tail = pg.split([size - 1, 0] if size > 1 else [0])
if rank % 2:
    assert evens is None
else:
    assert (evens.rank, evens.size, evens.ranks) == (rank // 2, (size + 1) // 2,
                                                     list(range(0, size, 2)))
    x = np.full(100_000, float(rank))
    evens.allreduce(x).wait()
    assert np.array_equal(x, np.full(100_000, float(sum(range(0, size, 2)))))
    evens.shutdown()
if rank in (0, size - 1):
    assert tail.ranks == ([size - 1, 0] if size > 1 else [0])
    x = np.array([float(rank)])
    tail.broadcast(x, root=0).wait()     # group rank 0 is global rank size-1
    assert x[0] == size - 1
    tail.shutdown()
else:
    assert tail is None

assert pg.allgather_object({"rank": rank}) == [{"rank": r} for r in range(size)]
assert pg.broadcast_object(["hi", rank], root=0) == ["hi", 0]
pg.shutdown()
print(f"rank {rank}: all collectives ok")
sys.exit(0)
