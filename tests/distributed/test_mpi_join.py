"""DDP's `join()` (and ZeRO's) on uneven inputs, on N ranks, against one process.

Rank r holds `start + 2 r` batches of B samples. At step k the ranks still training are
A_k = {r : k < start + 2 r}; DDP's gradient is the sum of their shards' gradients over the
world size (PyTorch's default) or over |A_k|, which is one process's gradient of the loss
summed over those shards and divided the same way. Every rank also trains that reference.
"""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed import SyncBatchNorm, ZeroRedundancyOptimizer, comm_hooks
from phalanx.distributed.algorithms import Join

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(90)]
B = 3
TOL = 1e-10


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


class Backwards(nn.Module):
    """Layers registered in the reverse of the order they run, so DDP rebuilds its buckets at
    the second step (a broadcast a joined rank must match)."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 3)
        self.mid = nn.Linear(8, 8)
        self.inp = nn.Linear(5, 8)

    def forward(self, x):
        return self.out(self.mid(self.inp(x).tanh()).relu())


def counts(start):
    return [start + 2 * r for r in range(dist.get_world_size())]


def data(start, seed=0):
    """Per step: every rank's shard (x, y) of the ranks that still have a batch then."""
    rng = np.random.default_rng(seed)
    n = counts(start)
    return [[(px.tensor(rng.standard_normal((B, 5))), px.tensor(rng.integers(0, 3, B)))
             for r in range(len(n)) if k < n[r]] for k in range(max(n))]


def build(**kwargs):
    px.manual_seed(7 + dist.get_rank())            # DDP must take rank 0's weights
    ddp = DDP(Backwards().double(), bucket_cap_mb=0.0002, **kwargs)
    return ddp, copy.deepcopy(ddp.module)


def ref_backward(ref, shards, divisor):
    loss = sum(F.cross_entropy(ref(x), y, reduction="sum") for x, y in shards)
    (loss / (B * divisor)).backward()


def close(a, b, what):
    a, b = a.detach().numpy(), b.detach().numpy()
    err = float(np.max(np.abs(a - b)))
    assert err <= TOL * max(1.0, float(np.max(np.abs(b)))), f"{what}: differs by {err:g}"


def same_params(model, ref, grads=True):
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        close(q, p, name)
        if grads:
            close(q.grad, p.grad, f"grad of {name}")


@pytest.mark.parametrize("start", [0, 1], ids=["rank0-no-batch", "rank0-one-batch"])
@pytest.mark.parametrize("by_world", [True, False], ids=["by-world", "by-training"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
@pytest.mark.parametrize("as_view", [False, True], ids=["grad-own", "grad-view"])
def test_uneven_inputs_train_as_one_process(world, start, by_world, shared, as_view,
                                            monkeypatch):
    rank, size = world
    if not shared:
        monkeypatch.setenv("PHALANX_SHARED_MEMORY", "0")
    ddp, ref = build(gradient_as_bucket_view=as_view)
    opt = px.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    opt_ref = px.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    steps = data(start)
    with ddp.join(divide_by_initial_world_size=by_world):
        for k in range(counts(start)[rank]):
            x, y = steps[k][rank - (size - len(steps[k]))]
            opt.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
            opt_ref.zero_grad()
            ref_backward(ref, steps[k], size if by_world else len(steps[k]))
            same_params(ddp.module, ref)
            opt.step()
            opt_ref.step()
    for k in range(counts(start)[rank], len(steps)):    # what the joined rank did not train
        opt_ref.zero_grad()
        ref_backward(ref, steps[k], size if by_world else len(steps[k]))
        opt_ref.step()
    # every rank ends with the model of the last to join, and the last step's gradients
    same_params(ddp.module, ref)
    # rebuilt at the second step on every rank, in rank 0's order: none if rank 0 trained none
    assert ddp.reducer.rebuilt == (start > 0)
    x = px.tensor(np.ones((2, 5)))              # and DDP goes on after the join
    F.cross_entropy(ddp(x), px.tensor([0, 1])).backward()


def test_zero_redundancy_optimizer_joins_with_ddp(world):
    rank, size = world
    ddp, ref = build()
    opt = ZeroRedundancyOptimizer(ddp.parameters(), px.optim.Adam, lr=0.01)
    opt_ref = px.optim.Adam(ref.parameters(), lr=0.01)
    steps = data(1, seed=2)
    with Join([ddp, opt]):
        for k in range(counts(1)[rank]):
            x, y = steps[k][rank - (size - len(steps[k]))]
            opt.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
            opt.step()
    for shards in steps:
        opt_ref.zero_grad()
        ref_backward(ref, shards, size)
        opt_ref.step()
    same_params(ddp.module, ref, grads=False)


def test_comm_hook_under_join(world):
    rank, size = world
    ddp, ref = build()
    ddp.register_comm_hook(None, comm_hooks.allreduce_hook)
    steps = data(1, seed=3)
    with ddp.join():
        for k in range(counts(1)[rank]):
            x, y = steps[k][rank - (size - len(steps[k]))]
            ddp.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
    for shards in steps:
        ref.zero_grad()
        ref_backward(ref, shards, size)
    same_params(ddp.module, ref)                  # the last step's gradients, on every rank


def test_buffers_come_from_a_rank_still_training(world):
    """Buffers are broadcast before each forward from the highest rank still training (rank 0
    has stopped), so the running statistics are the last rank's own."""
    rank, size = world
    px.manual_seed(3)
    ddp = DDP(nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 3)).double())
    alone = nn.BatchNorm1d(5).double()
    steps = data(1, seed=4)
    with ddp.join():
        for k in range(counts(1)[rank]):
            x, y = steps[k][rank - (size - len(steps[k]))]
            F.cross_entropy(ddp(x), y).backward()
    for shards in steps:
        alone(shards[-1][0])                      # the last rank's shard at every step
    close(ddp.module[0].running_mean, alone.running_mean, "running_mean")
    close(ddp.module[0].running_var, alone.running_var, "running_var")


def test_throw_on_early_termination(world):
    rank, size = world
    ddp, _ = build()
    steps = data(1, seed=5)
    with pytest.raises(RuntimeError) as caught:
        with ddp.join(throw_on_early_termination=True):
            for k in range(counts(1)[rank]):
                x, y = steps[k][rank - (size - len(steps[k]))]
                F.cross_entropy(ddp(x), y).backward()
    expected = "Rank 0 exhausted all inputs" if rank == 0 else "Detected at least one rank"
    assert expected in str(caught.value)
    assert not ddp._join_config.enable
    t = px.tensor([float(rank)])                 # the ranks are still matched
    dist.all_reduce(t)
    assert t.item() == size * (size - 1) / 2


def test_no_sync_and_eval_forwards_under_join(world):
    """Forwards that do not synchronise (no_grad, no_sync) tell the joined ranks so: each step
    a pass under no_sync and a synchronised one on the same shard give twice the mean."""
    rank, size = world
    ddp, ref = build()
    steps = data(1, seed=6)
    with ddp.join():
        for k in range(counts(1)[rank]):
            x, y = steps[k][rank - (size - len(steps[k]))]
            ddp.zero_grad()
            with px.no_grad():
                ddp(x)
            with ddp.no_sync():
                F.cross_entropy(ddp(x), y).backward()
            F.cross_entropy(ddp(x), y).backward()
            ref.zero_grad()
            ref_backward(ref, steps[k], size / 2)
            same_params(ddp.module, ref)
    for shards in steps[counts(1)[rank]:]:
        ref.zero_grad()
        ref_backward(ref, shards, size / 2)
    same_params(ddp.module, ref)


def test_sync_batchnorm_cannot_join(world):
    ddp = DDP(nn.Sequential(nn.Linear(4, 4), SyncBatchNorm(4)))
    with pytest.raises(NotImplementedError, match="SyncBatchNorm"):
        ddp.join()
