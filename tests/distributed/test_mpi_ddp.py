"""DistributedDataParallel, SyncBatchNorm, comm hooks and ZeRO on N ranks, against one process.

Every rank also trains a plain copy of the model on the concatenated global batch (the
reference); DDP on the rank's shard must give the same gradients and weights in float64.
"""
import contextlib
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed import SyncBatchNorm, ZeroRedundancyOptimizer, comm_hooks, reducer

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(90)]
TOL = 1e-10
B = 4                                     # samples per rank


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


@pytest.fixture(params=["shared", "private"])
def memory(request, monkeypatch):
    """Buckets in memory every rank maps (all ranks run here), or private ones all-reduced
    through MPI."""
    if request.param == "private":
        monkeypatch.setenv("PHALANX_SHARED_MEMORY", "0")
    return request.param


def batches(steps, shape, classes, seed=0):
    """The same global batches on every rank: (x, y) of N*B samples per step."""
    n = dist.get_world_size() * B
    rng = np.random.default_rng(seed)
    return [(px.tensor(rng.standard_normal((n,) + shape)),
             px.tensor(rng.integers(0, classes, n))) for _ in range(steps)]


def shard(t):
    r = dist.get_rank()
    return t[r * B:(r + 1) * B]


def wrap(make, **kwargs):
    """A DDP model built with a rank-dependent seed (DDP must broadcast rank 0's weights),
    and the reference: a copy of what DDP ended up with."""
    px.manual_seed(1234 + dist.get_rank())
    model = make().double()
    ddp = DDP(model, **kwargs)
    return ddp, copy.deepcopy(model)


def assert_close(a, b, what, tol=TOL):
    a = a._data if hasattr(a, "_data") else a
    b = b._data if hasattr(b, "_data") else b
    err = float(np.max(np.abs(a - b))) if np.size(a) else 0.0
    assert err <= tol * max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0), \
        f"{what}: max abs difference {err:g}"


def compare(ddp, ref, tol=TOL):
    for (name, p), q in zip(ref.named_parameters(), ddp.module.parameters()):
        if p.grad is None or q.grad is None:
            assert p.grad is None and q.grad is None, f"{name}: grad None on one side only"
        else:
            assert_close(q.grad, p.grad, f"grad of {name}", tol)
        assert_close(q, p, name, tol)
    for (name, b), c in zip(ref.named_buffers(), ddp.module.buffers()):
        assert_close(c.double(), b.double(), f"buffer {name}", tol)


def train(ddp, ref, data, make_opt, loss_fn=F.cross_entropy, tol=TOL, set_to_none=True,
          after_backward=None):
    opt_d, opt_r = make_opt(ddp.parameters()), make_opt(ref.parameters())
    for x, y in data:
        opt_d.zero_grad(set_to_none)
        opt_r.zero_grad(set_to_none)
        loss_fn(ddp(shard(x)), shard(y)).backward()
        loss_fn(ref(x), y).backward()
        compare(ddp, ref, tol)
        if after_backward is not None:
            after_backward()
        opt_d.step()
        opt_r.step()
        compare(ddp, ref, tol)


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3))


@pytest.mark.parametrize("as_view", [True, False])
@pytest.mark.parametrize("set_to_none", [True, False])   # .grad copied / kept as the view
def test_mlp_matches_one_process(world, set_to_none, as_view, memory, monkeypatch):
    ddp, ref = wrap(mlp, bucket_cap_mb=0.0005, gradient_as_bucket_view=as_view)
    assert len(ddp.reducer.buckets) > 1
    group = ddp.process_group
    assert all(group.reduces_locally(b.flat) == (memory == "shared")
               for b in ddp.reducer.buckets)
    in_place = []                                 # linear computed each .grad in its bucket
    fill = reducer._fill_view
    monkeypatch.setattr(reducer, "_fill_view", lambda p, view, as_view: (
        in_place.append(p.grad is not None and p.grad._data is view), fill(p, view, as_view)))
    kept = {}

    def keep_first_grads():                       # a user keeping the first step's gradients
        if not kept:
            kept.update({id(q): (q.grad, q.grad.numpy().copy()) for q in ddp.parameters()})
    train(ddp, ref, batches(3, (6,), 3), lambda p: px.optim.SGD(p, lr=0.1, momentum=0.9),
          set_to_none=set_to_none, after_backward=keep_first_grads)
    n = len(list(ddp.module.parameters()))
    # a .grad of its own kept from an earlier step gets no bucket home (set_to_none=False)
    assert in_place == [True] * (3 * n if as_view or set_to_none else n) + [False] * (
        0 if as_view or set_to_none else 2 * n)
    for b in ddp.reducer.buckets:
        for p, view in zip(b.params, b.views):
            assert (p.grad._data is view) == as_view
    if not as_view and set_to_none:               # PyTorch's default: kept gradients stay
        for grad, values in kept.values():
            np.testing.assert_array_equal(grad.numpy(), values)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.bn1 = nn.BatchNorm1d(3, momentum=None, bias=False)   # 2.13: scale, no shift

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.bn1(self.fc(x.flatten(1)))


def test_cnn_with_sync_batchnorm_matches_one_process(world, memory):
    px.manual_seed(7 + dist.get_rank())
    model = SyncBatchNorm.convert_sync_batchnorm(CNN().double())
    assert isinstance(model.bn, SyncBatchNorm) and isinstance(model.bn1, SyncBatchNorm)
    ddp = DDP(model)
    px.manual_seed(0)
    ref = CNN().double()
    ref.load_state_dict(model.state_dict())       # plain BatchNorm on the global batch
    train(ddp, ref, batches(3, (2, 8, 8), 3, seed=1),
          lambda p: px.optim.SGD(p, lr=0.1, momentum=0.9))
    ddp.eval()
    ref.eval()
    x, _ = batches(1, (2, 8, 8), 3, seed=2)[0]
    assert_close(ddp(shard(x)), ref(x)[dist.get_rank() * B:(dist.get_rank() + 1) * B],
                 "eval output")


class Routed(nn.Module):
    """Samples of class 0 go through head_a, the rest through head_b; `never` is never used."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 8)
        self.head_a = nn.Linear(8, 4)
        self.head_b = nn.Linear(8, 4)
        self.never = nn.Linear(8, 4)

    def forward(self, x, y):
        h = F.relu(self.body(x))
        idx = np.arange(len(y))
        total = 0.0
        for head, pick in ((self.head_a, idx[y.numpy() == 0]), (self.head_b,
                                                                idx[y.numpy() != 0])):
            if len(pick):
                sel = px.tensor(pick)
                total = total + F.cross_entropy(head(h[sel]), y[sel], reduction="sum")
        return total / len(y)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_unused_parameters_no_flag(world, set_to_none, memory):
    rank, size = world
    ddp, ref = wrap(Routed)
    n = size * B
    rng = np.random.default_rng(3)
    opt_d = px.optim.SGD(ddp.parameters(), lr=0.1, weight_decay=0.01)
    opt_r = px.optim.SGD(ref.parameters(), lr=0.1, weight_decay=0.01)
    for step in range(3):
        x = px.tensor(rng.standard_normal((n, 5)))
        y = rng.integers(1, 4, n)
        y[:B] = 0                     # rank 0's shard: head_a only; other shards: head_b only
        if step == 2:
            y[:] = 0                  # nobody uses head_b
        y = px.tensor(y)
        opt_d.zero_grad(set_to_none)
        opt_r.zero_grad(set_to_none)
        ddp(shard(x), shard(y)).backward()
        ref(x, y).backward()
        compare(ddp, ref)
        assert ddp.module.never.weight.grad is None
        if step == 2 and set_to_none:
            assert ddp.module.head_b.weight.grad is None
        opt_d.step()
        opt_r.step()
        compare(ddp, ref)


class TwoHeads(Routed):
    """Routed without the layer nobody uses."""

    def __init__(self):
        super().__init__()
        del self.never


@pytest.mark.parametrize("hook", [None, "allreduce"])
def test_parameters_unused_on_some_ranks_only(world, hook):
    """Rank 0's shard reaches both heads, the other shards head_b only: with a comm hook too,
    every rank learns what some rank used (there by one small all-reduce, on every rank: one
    rank skipping it would take the next step's collective for it)."""
    rank, size = world
    ddp, ref = wrap(TwoHeads)
    if hook:
        ddp.register_comm_hook(None, comm_hooks.allreduce_hook)
    n = size * B
    rng = np.random.default_rng(8)
    opt_d = px.optim.SGD(ddp.parameters(), lr=0.1)
    opt_r = px.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(3):
        x = px.tensor(rng.standard_normal((n, 5)))
        y = rng.integers(1, 4, n)
        y[0] = 0                      # class 0 (head_a) in rank 0's shard only
        y = px.tensor(y)
        opt_d.zero_grad()
        opt_r.zero_grad()
        ddp(shard(x), shard(y)).backward()
        ref(x, y).backward()
        compare(ddp, ref)
        opt_d.step()
        opt_r.step()
        compare(ddp, ref)


def test_bfloat16_model(world, memory):
    """A bfloat16 model (MPI has no such type) gets the mean of the ranks' gradients, equal on
    every rank and within bfloat16's rounding of one process's float64 gradient."""
    ddp, ref = wrap(mlp)
    ddp.module.to(px.bfloat16)
    x, y = batches(1, (6,), 3, seed=11)[0]
    F.cross_entropy(ddp(shard(x).to(px.bfloat16)), shard(y)).backward()
    ref.load_state_dict({k: v.double() for k, v in ddp.module.state_dict().items()})
    F.cross_entropy(ref(x), y).backward()
    grads = [None] * dist.get_world_size()
    dist.all_gather_object(grads, [p.grad.float().numpy() for p in ddp.module.parameters()])
    for (name, p), g in zip(ref.named_parameters(), grads[0]):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=0.05, atol=0.02, err_msg=name)
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_array_equal(a, b)


def test_debug_mode_checks_buckets_too(world, monkeypatch):
    monkeypatch.setattr(dist.debug, "_enabled", True)
    ddp, ref = wrap(mlp, bucket_cap_mb=0.0005)
    train(ddp, ref, batches(1, (6,), 3, seed=9), lambda p: px.optim.SGD(p, lr=0.1))


def test_no_sync_accumulates_then_syncs(world):
    ddp, ref = wrap(mlp)
    data = batches(3, (6,), 3, seed=4)
    with ddp.no_sync():
        for x, y in data[:2]:
            F.cross_entropy(ddp(shard(x)), shard(y)).backward()
            F.cross_entropy(ref(x), y).backward()
    local = [p.grad.numpy().copy() for p in ddp.module.parameters()]
    x, y = data[2]
    F.cross_entropy(ddp(shard(x)), shard(y)).backward()
    F.cross_entropy(ref(x), y).backward()
    compare(ddp, ref)
    assert any(not np.allclose(a, p.grad.numpy()) for a, p in
               zip(local, ddp.module.parameters()))   # the local sums were not yet averaged


@contextlib.contextmanager
def launches_and_grads(ddp):
    """The events of the block in order: "launch" for each bucket all-reduce DDP starts,
    "grad" for each gradient that arrives."""
    events = []
    group, original = ddp.process_group, ddp.process_group.allreduce

    def spy(array, op=dist.ReduceOp.SUM):
        events.append("launch")
        return original(array, op)
    group.allreduce = spy
    hooks = [p.register_post_accumulate_grad_hook(lambda p: events.append("grad"))
             for p in ddp.module.parameters()]
    try:
        yield events
    finally:
        del group.allreduce
        for h in hooks:
            h.remove()


def test_overlap_launches_buckets_during_backward(world, memory):
    """Buckets all-reduced through MPI start while backward runs; buckets in shared memory
    are reduced when it ends (that is computation: a thread would only take cores)."""
    ddp, _ = wrap(mlp, bucket_cap_mb=0.0005)
    with launches_and_grads(ddp) as events:
        x, y = batches(1, (6,), 3)[0]
        F.cross_entropy(ddp(shard(x)), shard(y)).backward()
    launches = [i for i, e in enumerate(events) if e == "launch"]
    grads = [i for i, e in enumerate(events) if e == "grad"]
    assert len(launches) == len(ddp.reducer.buckets)   # usage flags ride in the buckets
    if memory == "private":
        assert launches[1] < grads[-1], f"no bucket started before backward ended: {events}"
    else:
        assert launches[0] > grads[-1], f"a bucket started during backward: {events}"


class Backwards(nn.Module):
    """Layers registered in the reverse of the order they run: the first bucket DDP fills from
    the registration order holds the gradients backward produces last."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(16, 3)
        self.mid = nn.Linear(16, 16)
        self.inp = nn.Linear(6, 16)

    def forward(self, x):
        return self.out(self.mid(self.inp(x).tanh()).relu())


@pytest.mark.parametrize("as_view", [True, False])
def test_buckets_are_rebuilt_in_the_order_gradients_arrive(world, memory, as_view):
    """As PyTorch's DDP: at the second step the buckets are refilled in the order the first
    backward's gradients arrived, so the first bucket is complete early and (through MPI)
    starts during backward; the training equals one process throughout."""
    ddp, ref = wrap(Backwards, bucket_cap_mb=0.0005, gradient_as_bucket_view=as_view)
    data = batches(3, (6,), 3, seed=3)
    waited = []                      # per step: gradients arrived before the first launch
    with launches_and_grads(ddp) as events:
        def count():
            waited.append(events[:events.index("launch")].count("grad"))
            events.clear()
        train(ddp, ref, data, lambda p: px.optim.SGD(p, lr=0.1, momentum=0.9),
              after_backward=count)
    assert ddp.reducer.rebuilt
    first = ddp.reducer.buckets[0].params
    assert any(p is ddp.module.out.weight for p in first), "out's gradients come first"
    if memory == "private":         # (in shared memory all are reduced when backward ends)
        assert waited[2] < waited[0], waited
    for b in ddp.reducer.buckets:       # gradients live in (or were copied from) the new ones
        for p, view in zip(b.params, b.views):
            assert (p.grad._data is view) == as_view


class WithSpare(Backwards):
    """Backwards, plus a layer the forward never uses."""

    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(3, 3)


@pytest.mark.parametrize("make, flags, rebuilt", [
    (Backwards, {}, True),
    (Backwards, {"find_unused_parameters": True}, False),            # as PyTorch
    (Backwards, {"find_unused_parameters": True, "static_graph": True}, True),
    (WithSpare, {}, False),                    # rank 0's first backward left one unused
], ids=["default", "find_unused", "find_unused+static", "unused"])
def test_when_buckets_are_rebuilt(world, make, flags, rebuilt):
    ddp, ref = wrap(make, bucket_cap_mb=0.0005, **flags)
    before = [[id(p) for p in b.params] for b in ddp.reducer.buckets]
    train(ddp, ref, batches(2, (6,), 3, seed=4), lambda p: px.optim.SGD(p, lr=0.1))
    after = [[id(p) for p in b.params] for b in ddp.reducer.buckets]
    assert (after != before) == rebuilt


def future_hook(process_group, bucket):
    """A hook as PyTorch's documentation writes one: it returns a Future of the reduced
    bucket. The sum stays in the bucket, the mean is a new tensor: DDP must use the value."""
    group = process_group if process_group is not None else dist.group.WORLD
    size = group.size()                 # PyTorch's ProcessGroup method
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0] / size)


def _power_sgd(rank):
    return comm_hooks.PowerSGDState(None, matrix_approximation_rank=rank, start_powerSGD_iter=2,
                                    min_compression_rate=0)


# hook -> (state, hook) maker, and how close to one process's gradients the mean must be
HOOKS = {
    "allreduce": (lambda: (None, comm_hooks.allreduce_hook), TOL),
    "future": (lambda: (None, future_hook), TOL),
    "fp16": (lambda: (None, comm_hooks.fp16_compress_hook), 2e-3),
    "bf16": (lambda: (None, comm_hooks.bf16_compress_hook), 2e-2),
    "fp16_wrapper": (lambda: (None, comm_hooks.fp16_compress_wrapper(comm_hooks.allreduce_hook)),
                     2e-3),
    "bf16_wrapper_powersgd_full": (
        lambda: (_power_sgd(16), comm_hooks.bf16_compress_wrapper(comm_hooks.powerSGD_hook)),
        2e-2),
    "quantize_per_tensor": (lambda: (None, comm_hooks.quantization_pertensor_hook), 1e-2),
    "quantize_per_channel": (lambda: (None, comm_hooks.quantization_perchannel_hook), 1e-2),
    "powersgd_full": (lambda: (_power_sgd(16), comm_hooks.powerSGD_hook), TOL),
    "batched_powersgd_full": (lambda: (_power_sgd(16), comm_hooks.batched_powerSGD_hook), TOL),
}


@pytest.mark.parametrize("hook", list(HOOKS))
def test_comm_hooks(world, hook):
    """Every hook that averages (exactly, or within its compression's rounding) trains as one
    process; PowerSGD of full rank is exact (after its two plain steps)."""
    ddp, ref = wrap(mlp, bucket_cap_mb=0.0005)
    make, tol = HOOKS[hook]
    ddp.register_comm_hook(*make())
    train(ddp, ref, batches(4, (6,), 3, seed=5), lambda p: px.optim.SGD(p, lr=0.05), tol=tol)


@pytest.mark.parametrize("hook", ["powerSGD", "batched_powerSGD"])
def test_low_rank_powersgd_agrees_across_ranks(world, hook):
    """Rank-1 PowerSGD is lossy: gradients must still agree across ranks (and, for the
    per-matrix hook, be of rank 1)."""
    ddp, _ = wrap(mlp, bucket_cap_mb=0.0005)
    state = _power_sgd(1)
    ddp.register_comm_hook(state, getattr(comm_hooks, hook + "_hook"))
    opt = px.optim.SGD(ddp.parameters(), lr=0.05)
    for x, y in batches(4, (6,), 3, seed=5):
        opt.zero_grad()
        F.cross_entropy(ddp(shard(x)), shard(y)).backward()
        opt.step()
    if hook == "powerSGD":
        w = ddp.module[2].weight.grad.numpy()
        assert np.linalg.matrix_rank(w, tol=1e-8) == 1
    rate, before, after = state.compression_stats()
    assert before > after > 0 and rate == before / after
    grads = [None] * dist.get_world_size()
    dist.all_gather_object(grads, [p.grad.numpy() for p in ddp.module.parameters()])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_array_equal(a, b)


def test_noop_hook_leaves_each_rank_its_own_gradients(world):
    ddp, ref = wrap(mlp)
    ddp.register_comm_hook(None, comm_hooks.noop_hook)
    x, y = batches(1, (6,), 3, seed=6)[0]
    F.cross_entropy(ddp(shard(x)), shard(y)).backward()
    F.cross_entropy(ref(shard(x)), shard(y)).backward()      # this rank's shard alone
    compare(ddp, ref)


def test_zero_redundancy_optimizer_matches_adam(world):
    ddp, ref = wrap(mlp)
    ref_ddp = DDP(ref)
    zero = ZeroRedundancyOptimizer(ddp.parameters(), px.optim.Adam, lr=0.01,
                                   weight_decay=0.001)
    plain = px.optim.Adam(ref_ddp.parameters(), lr=0.01, weight_decay=0.001)
    owned = len(zero.owned_parameters)
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, owned)
    assert sum(counts) == len(list(ddp.parameters())) and min(counts) >= 1
    for x, y in batches(3, (6,), 3, seed=6):
        for model, opt in ((ddp, zero), (ref_ddp, plain)):
            opt.zero_grad()
            F.cross_entropy(model(shard(x)), shard(y)).backward()
            opt.step()
        for p, q in zip(ddp.parameters(), ref_ddp.parameters()):
            assert_close(p, q, "weights")
    zero.consolidate_state_dict(to=0)
    if dist.get_rank() == 0:
        full, expected = zero.state_dict(), plain.state_dict()
        assert sorted(full["state"]) == sorted(expected["state"])
        for k in expected["state"]:
            assert_close(full["state"][k]["exp_avg"], expected["state"][k]["exp_avg"],
                         f"exp_avg {k}")
    sd = [zero.state_dict() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(sd, src=0)
    zero2 = ZeroRedundancyOptimizer(ddp.parameters(), px.optim.Adam, lr=0.5)
    zero2.load_state_dict(sd[0])
    assert zero2.param_groups[0]["lr"] == 0.01


def test_wrap_checks_model_and_names_first_difference(world):
    rank, _ = world
    width = 16 if rank == 0 else 15
    model = nn.Sequential(nn.Linear(6, width), nn.Linear(width, 3)).double()
    with pytest.raises(RuntimeError) as info:
        DDP(model)
    msg = str(info.value)
    assert "'0.weight'" in msg and "(16, 6)" in msg and "(15, 6)" in msg, msg


def test_broadcast_buffers_and_state_dict(world):
    rank, _ = world
    px.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    ddp = DDP(model)
    model[1].running_mean._data[...] = rank        # diverge on purpose
    ddp.eval()
    ddp(px.tensor(np.ones((2, 3))))
    assert model[1].running_mean.numpy().tolist() == [0.0] * 4     # rank 0's, everywhere
    sd = ddp.state_dict()
    assert list(sd) == list(model.state_dict())
    plain = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    plain.load_state_dict(sd)
    ddp.load_state_dict({"module." + k: v for k, v in sd.items()})   # PyTorch-style keys
    assert isinstance(ddp.module, nn.Sequential)
    import phalanx.nn.parallel
    assert phalanx.nn.parallel.DistributedDataParallel is DDP


def test_init_sync_and_buffer_sync_flags(world):
    """PyTorch 2.13's flags: init_sync=False leaves each rank's weights; broadcast_buffers
    (deprecated, it warns) False syncs buffers neither at init nor before forward;
    forward_sync_buffers=False syncs them at init only."""
    rank, size = world

    def build(**kwargs):
        px.manual_seed(50 + rank)                 # a different model on every rank
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
        model[1].running_mean._data[...] = rank
        return DDP(model, **kwargs), model

    def everywhere(t):
        seen = [None] * size
        dist.all_gather_object(seen, t.detach().numpy().tolist())
        return seen

    ddp, model = build(init_sync=False)
    assert len({str(w) for w in everywhere(model[0].weight)}) == size
    ddp, model = build()
    assert len({str(w) for w in everywhere(model[0].weight)}) == 1
    with pytest.warns(FutureWarning, match="broadcast_buffers` is deprecated"):
        ddp, model = build(broadcast_buffers=False)
    assert not ddp.broadcast_buffers and not ddp.will_sync_module_buffers()
    ddp.eval()
    ddp(px.tensor(np.ones((2, 3))))
    assert model[1].running_mean.numpy().tolist() == [float(rank)] * 4   # never synced
    ddp, model = build(forward_sync_buffers=False)
    assert model[1].running_mean.numpy().tolist() == [0.0] * 4           # synced at init
    model[1].running_mean._data[...] = rank
    ddp.eval()
    ddp(px.tensor(np.ones((2, 3))))
    assert model[1].running_mean.numpy().tolist() == [float(rank)] * 4   # not before forward


def test_bucket_cap_mb_list(world):
    """Each bucket capped in turn by the list (PyTorch 2.13's bucket_cap_mb_list); training
    equals one process."""
    limits = [0.0002, 0.0005, 0.0003]
    ddp, ref = wrap(mlp, bucket_cap_mb_list=limits)
    assert ddp.reducer.limits == [int(mb * (1 << 20)) for mb in limits]
    expected = reducer.assign_buckets(list(ddp.module.parameters())[::-1],
                                      dist.group.WORLD, ddp.reducer.limits)
    assert [[id(p) for p in b.params] for b in ddp.reducer.buckets] == \
        [[id(p) for p in b.params] for b in expected]
    # the last layer's bias and weight fill the first bucket (209 B), where one cap of 524 B
    # would have taken the next bias too
    assert [len(b.params) for b in ddp.reducer.buckets] == [2, 2, 2]
    train(ddp, ref, batches(2, (6,), 3, seed=12), lambda p: px.optim.SGD(p, lr=0.1))
