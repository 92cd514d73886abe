"""all_reduce_coalesced, all_gather_coalesced, the *_single names, get_backend_config and
breakpoint over the mpi backend (every rank makes the same calls)."""
import time

import pytest

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed import debugger

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def test_all_reduce_coalesced(world):
    rank, size = world
    a = px.full((2, 3), float(rank + 1), dtype=px.float64)
    b = px.tensor([float(rank)], dtype=px.float64)
    c = px.arange(4, dtype=px.float64)[::2]                  # not contiguous
    dist.all_reduce_coalesced([a, b, c])
    total = size * (size + 1) / 2
    assert a.tolist() == [[total] * 3] * 2 and b.tolist() == [total - size]
    assert c.tolist() == [0.0, 2.0 * size]
    work = dist.all_reduce_coalesced(a, op=dist.ReduceOp.MAX, async_op=True)
    work.wait()
    assert a.tolist() == [[total] * 3] * 2


def test_all_gather_coalesced(world):
    rank, size = world
    inputs = [px.full((2, 2), float(rank), dtype=px.float32), px.tensor([rank * 10.0])]
    outputs = [[px.zeros(2, 2), px.zeros(1)] for _ in range(size)]
    dist.all_gather_coalesced(outputs, inputs)
    for r in range(size):
        assert outputs[r][0].tolist() == [[float(r)] * 2] * 2
        assert outputs[r][1].tolist() == [r * 10.0]


def test_single_tensor_names(world):
    rank, size = world
    out = px.zeros(size * 2)
    dist.all_gather_single(out, px.tensor([rank, rank + 0.5]))
    assert out.tolist() == [v for r in range(size) for v in (r, r + 0.5)]
    mine = px.zeros(2)
    dist.reduce_scatter_single(mine, px.arange(2 * size, dtype=px.float32))
    assert mine.tolist() == [size * 2.0 * rank, size * (2.0 * rank + 1)]


def test_backend_config(world):
    assert dist.get_backend_config() == "cpu:mpi,cuda:mpi"


def test_breakpoint_holds_the_other_ranks(world, monkeypatch):
    """Rank 1 'debugs' for half a second (the debugger is replaced by a sleep): the others
    return only after it, and a skipped call stops nobody."""
    rank, _ = world
    stops = []

    class Sleeper:
        def message(self, text):
            stops.append(text)

        def set_trace(self):
            time.sleep(0.5)

    monkeypatch.setattr(debugger, "_RankDebugger", Sleeper)
    dist.barrier()
    start = time.monotonic()
    for _ in range(2):
        dist.breakpoint(rank=1, skip=1)       # one line: the first call is skipped
    took = time.monotonic() - start
    assert took >= 0.45, took
    assert len(stops) == (1 if rank == 1 else 0)
    if rank == 1:
        assert "dist.breakpoint(rank=1)" in stops[0]
    dist.barrier()
