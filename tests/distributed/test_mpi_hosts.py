"""comm_buffer and DDP across hosts, simulated: every rank claims to run on host `rank % 2`.

Run by `mpiexec -n N pytest --only-mpi`. Four ranks make two hosts of two: buckets are shared
per host and the all-reduce is hierarchical (per host in shared memory, across hosts through
MPI). Two ranks make one rank per host and three ranks uneven hosts: both fall back to
private buffers and MPI's all-reduce. Every case must equal MPI's all-reduce of private arrays.
"""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed import ReduceOp, shared_memory
from phalanx.distributed.comm_queue import blocking
from phalanx.distributed.world import resolve

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


@pytest.fixture
def group(monkeypatch):
    if not dist.is_initialized():
        dist.init_process_group()
    world = resolve(None)
    monkeypatch.setattr(shared_memory, "host_id", lambda: f"host{world.rank % 2}")
    group = world.split(list(range(world.size)))      # a new group lays itself out anew
    yield group
    group.shutdown()


def hierarchical(group):
    return group.size == 4


def test_layout_follows_the_hosts(group):
    buf = group.comm_buffer(1000, np.float64, np)
    shared = group._shared.find(buf)
    assert (shared is not None) == hierarchical(group)
    assert not group.reduces_locally(buf)             # across hosts: overlapped with backward
    if hierarchical(group):
        same_host = [r for r in range(group.size) if r % 2 == group.rank % 2]
        assert shared.host.ranks == same_host
        assert shared.across.size == 2 and group.rank in shared.across.ranks


CASES = [(ReduceOp.SUM, np.float64), (ReduceOp.AVG, np.float32), (ReduceOp.MAX, np.int64),
         (ReduceOp.MIN, np.int32), (ReduceOp.PRODUCT, np.float64), (ReduceOp.SUM, np.bool_)]


@pytest.mark.parametrize("n", [1, 3, 1001, 70_001])
@pytest.mark.parametrize("op,dtype", CASES,
                         ids=[f"{op.name}-{np.dtype(d).name}" for op, d in CASES])
def test_all_reduce_equals_mpi(group, op, dtype, n, monkeypatch):
    monkeypatch.setattr(shared_memory, "BLOCK_BYTES", 4096)
    values = ((np.arange(n) * 7 + group.rank * 3) % 11 - 4 + group.rank)
    values = values > 0 if dtype == np.bool_ else values.astype(dtype)
    buf = group.comm_buffer(n, dtype, np)
    buf[...] = values
    expected = values.copy()
    for _ in range(2):                                 # the buffers are reused
        blocking(group.allreduce, buf, op)
        blocking(group.allreduce, expected, op)
    # every rank reaches the same collectives whatever it finds, then asserts
    everyone = group.allgather_object((bool(np.allclose(buf, expected, rtol=1e-6)),
                                       buf.tobytes()))
    assert all(ok for ok, _ in everyone), f"ranks {[ok for ok, _ in everyone]} match MPI"
    assert all(b == everyone[0][1] for _, b in everyone), "ranks hold different results"


def test_ddp_matches_one_process(group):
    """DDP over the simulated hosts equals one process on the concatenated batch."""
    px.manual_seed(group.rank)                         # DDP must broadcast rank 0's weights
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    ddp = DDP(model, process_group=group, bucket_cap_mb=0.0005)
    assert all((group._shared.find(b.flat) is not None) == hierarchical(group)
               for b in ddp.reducer.buckets)
    assert ddp.reducer.overlapped == len(ddp.reducer.buckets) - 1
    ref = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    ref.load_state_dict(model.state_dict())
    opt_d = px.optim.SGD(ddp.parameters(), lr=0.1)
    opt_r = px.optim.SGD(ref.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    per_rank = 4
    for _ in range(3):
        x = px.tensor(rng.standard_normal((group.size * per_rank, 6)))
        y = px.tensor(rng.integers(0, 3, group.size * per_rank))
        mine = slice(group.rank * per_rank, (group.rank + 1) * per_rank)
        opt_d.zero_grad()
        opt_r.zero_grad()
        F.cross_entropy(ddp(x[mine]), y[mine]).backward()
        F.cross_entropy(ref(x), y).backward()
        for p, q in zip(ddp.module.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=0, atol=1e-12)
        opt_d.step()
        opt_r.step()
