"""The nccl backend on a real GPU with NCCL, world size 1 (NCCL refuses two ranks on one GPU;
benchmarks/gpu_check.sh runs this). Skipped without a GPU or NCCL."""
import numpy as np
import pytest

import phalanx as px
from phalanx.distributed.env import Environment
from phalanx.distributed.reduce_op import ReduceOp


def _nccl_or_reason():
    try:
        if not px.cuda.is_available():
            return "needs an NVIDIA GPU"
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cupy.cuda import nccl
        return None if getattr(nccl, "available", False) else "CuPy finds no NCCL library"
    except Exception as e:
        return f"CuPy is not usable ({e!r})"


reason = _nccl_or_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


@pytest.fixture(scope="module")
def group():
    from phalanx.distributed.nccl_backend import NcclProcessGroup
    px.cuda.set_device(0)
    pg = NcclProcessGroup.create(Environment(), timeout=60)
    yield pg
    pg.shutdown()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "bool"])
@pytest.mark.parametrize("op", list(ReduceOp))
def test_all_reduce_world_of_one(group, dtype, op):
    import cupy as cp
    if op is ReduceOp.AVG and dtype in ("int64", "bool"):
        pytest.skip("AVG is for floating tensors")
    a = (cp.arange(10) % 3).astype(dtype)
    before = a.get()
    group.allreduce(a, op).wait()
    np.testing.assert_array_equal(a.get(), before)


def test_every_verb_world_of_one(group):
    import cupy as cp
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    out = cp.zeros((1, 2, 3), cp.float32)
    group.allgather(out, a).wait()
    rs = cp.zeros((2, 3), cp.float32)
    group.reduce_scatter(rs, a[None]).wait()
    a2a = cp.zeros((1, 4), cp.int32)
    group.alltoall(a2a, cp.arange(4, dtype=cp.int32)[None]).wait()
    group.broadcast(a, 0).wait()
    group.reduce(a, 0).wait()
    group.barrier().wait()
    assert (out[0] == a).all() and (rs == a).all() and (a2a[0] == cp.arange(4)).all()
    assert group.allgather_object({"x": 1}) == [{"x": 1}]


def test_comm_stream_waits_for_the_producer(group):
    import cupy as cp
    side = cp.cuda.Stream(non_blocking=True)
    with side:
        a = cp.zeros(1 << 22, cp.float32)
        a += 1                          # queued on `side`, the producer
        work = group.allreduce(a)
        work.wait()                     # `side` now waits for the all-reduce
        total = float(a.sum())
    assert total == float(1 << 22)


def test_init_process_group_nccl(monkeypatch):
    import phalanx.distributed as dist
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group("nccl")
    try:
        assert dist.get_backend() == "nccl"
        t = px.ones(5, device="cuda")
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        assert t.cpu().numpy().tolist() == [1.0] * 5
    finally:
        dist.destroy_process_group()


def test_ddp_on_nccl_world_of_one(monkeypatch):
    """DDP's buckets all-reduced on the NCCL stream give the plain model's gradients."""
    import copy
    import phalanx.distributed as dist
    import phalanx.nn as nn
    import phalanx.nn.functional as F
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group("nccl")
    try:
        px.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).cuda()
        ref = copy.deepcopy(model)
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.0001)   # several buckets
        x = px.randn(32, 8, device="cuda")
        y = px.randint(0, 3, (32,), device="cuda")
        F.cross_entropy(ddp(x), y).backward()
        F.cross_entropy(ref(x), y).backward()
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad.cpu().numpy(), q.grad.cpu().numpy(), rtol=1e-5,
                                       atol=1e-6)
    finally:
        dist.destroy_process_group()
