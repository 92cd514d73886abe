"""FSDP1's `FullyShardedDataParallel` over the mpi backend (2 and 3 ranks): every sharding
strategy and auto-wrap policy trains to the weights one process gets on the concatenated batch
(float64), and no_sync, clip_grad_norm_, mixed precision (against fully_shard with the same
policy), state dicts of each type, optimizer state dicts, summon_full_params (keeping
no_sync's gradients), sync_module_states, meta-device initialisation, weights tied across
units, parameters used on some ranks only and ShardedGradScaler work across ranks."""
import functools

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.device_mesh import init_device_mesh
from phalanx.distributed.fsdp import FullyShardedDataParallel as FSDP
from phalanx.distributed.fsdp import (FullOptimStateDictConfig, FullStateDictConfig,
                                      MixedPrecision, MixedPrecisionPolicy, ShardingStrategy,
                                      StateDictType, fully_shard)
from phalanx.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
from phalanx.distributed.fsdp.wrap import (ModuleWrapPolicy, size_based_auto_wrap_policy,
                                           transformer_auto_wrap_policy)
from phalanx.distributed.tensor import DTensor

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

VOCAB, DIM, SEQ, PER_RANK = 11, 6, 4, 2


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.up = nn.Linear(DIM, 2 * DIM)
        self.down = nn.Linear(2 * DIM, DIM)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, tokens):
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


TRANSFORMER = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={Block})
SIZE = functools.partial(size_based_auto_wrap_policy, min_num_params=90)


def _pair(seed=0):
    px.manual_seed(seed)
    model, reference = Net().double(), Net().double()
    reference.load_state_dict(model.state_dict())
    return model, reference


def _batch(step):
    """The global batch of a step, and this rank's rows of it."""
    rng = np.random.default_rng(100 + step)
    tokens = px.tensor(rng.integers(0, VOCAB, (dist.get_world_size() * PER_RANK, SEQ)))
    rank = dist.get_rank()
    return tokens, tokens[rank * PER_RANK:(rank + 1) * PER_RANK]


def _loss(model, tokens):
    return F.cross_entropy(model(tokens).reshape(-1, VOCAB), tokens.roll(1, 1).reshape(-1))


def _assert_same(model, reference, rtol=1e-10, atol=1e-12):
    """FULL_STATE_DICT (the default): whole tensors under the original names."""
    mine, ref = model.state_dict(), reference.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert not isinstance(mine[k], DTensor), k
        np.testing.assert_allclose(mine[k].numpy(), ref[k].numpy(), rtol=rtol, atol=atol,
                                   err_msg=k)


def _train(model, reference, steps=2, clip=True, first=0):
    opt = px.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.05)
    for step in range(first, first + steps):
        whole, mine = _batch(step)
        _loss(model, mine).backward()
        _loss(reference, whole).backward()
        if clip:
            norm = model.clip_grad_norm_(0.5)
            np.testing.assert_allclose(norm.item(), nn.utils.clip_grad_norm_(
                reference.parameters(), 0.5).item(), rtol=1e-12)
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    return opt, ref_opt


@pytest.mark.parametrize("strategy", ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD",
                                      "HYBRID_SHARD", "HYBRID_SHARD 1xN", "HYBRID_SHARD Nx1"])
def test_every_strategy_matches_one_process(world, strategy):
    """HYBRID_SHARD alone: one shard group per node (one node here); with a device_mesh of
    (replicas, shard size): (1, N) shards over every rank, (N, 1) replicates."""
    rank, size = world
    name, *shape = strategy.split()
    shape = [shape[0].replace("N", str(size))] if shape else shape
    mesh = init_device_mesh("cpu", tuple(map(int, shape[0].split("x")))) if shape else None
    model, reference = _pair()
    model = FSDP(model, auto_wrap_policy=TRANSFORMER, device_mesh=mesh,
                 sharding_strategy=getattr(ShardingStrategy, name))
    assert [n for n, m in model.named_modules() if isinstance(m, FSDP)] == [
        "", "_fsdp_wrapped_module.layers.0", "_fsdp_wrapped_module.layers.1"]
    weight = model.module.head.weight
    shard_size = {"NO_SHARD": 1, "HYBRID_SHARD": size}.get(name, size) if not shape else \
        int(shape[0].split("x")[1])
    assert isinstance(weight, DTensor)
    assert VOCAB // shard_size <= weight.to_local().shape[0] <= -(-VOCAB // shard_size)
    _train(model, reference)
    _assert_same(model, reference)


def test_size_based_nesting_and_no_sync_accumulation(world):
    model, reference = _pair()
    model = FSDP(model, auto_wrap_policy=SIZE)
    # each Block (174 elements) is a unit; the ModuleList is never one, and the head (77)
    # and the embedding (66) are under 90: they stay in the root's unit
    assert [n for n, m in model.named_modules() if isinstance(m, FSDP)] == [
        "", "_fsdp_wrapped_module.layers.0", "_fsdp_wrapped_module.layers.1"]
    for micro in range(3):
        whole, mine = _batch(micro)
        if micro < 2:
            with model.no_sync():
                _loss(model, mine).backward()
            assert all(p.grad is None for p in model.parameters())
        else:
            _loss(model, mine).backward()
        _loss(reference, whole).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.full_tensor().numpy(), q.grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=name)
    with pytest.raises(RuntimeError, match="root FSDP module"):
        with model.module.layers[0].no_sync():
            pass


def test_mixed_precision_is_fully_shards_policy(world):
    """MixedPrecision(param float32, reduce float64) trains as fully_shard on the same units
    with MixedPrecisionPolicy(float32, float64), and as one process to float32 accuracy."""
    model, reference = _pair()
    manual, _ = _pair()
    model = FSDP(model, auto_wrap_policy=TRANSFORMER, mixed_precision=MixedPrecision(
        param_dtype=px.float32, reduce_dtype=px.float64))
    policy = MixedPrecisionPolicy(param_dtype=px.float32, reduce_dtype=px.float64)
    for layer in manual.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(manual, mp_policy=policy)
    with px.no_grad():
        assert model(_batch(0)[1]).dtype == px.float32
    _train(model, reference, clip=False)
    opt = px.optim.AdamW(manual.parameters(), lr=0.05)
    for step in range(2):
        _loss(manual, _batch(step)[1]).backward()
        opt.step()
        opt.zero_grad()
    mine = model.state_dict()
    for k, v in manual.state_dict().items():
        np.testing.assert_array_equal(mine[k].numpy(), v.full_tensor().numpy(), err_msg=k)
    _assert_same(model, reference, rtol=1e-4, atol=1e-5)


def test_state_dicts_and_optimizer_state_resume(world):
    rank, size = world
    model, reference = _pair()
    model = FSDP(model, auto_wrap_policy=TRANSFORMER)
    opt, ref_opt = _train(model, reference, clip=False)
    everywhere = model.state_dict()
    only_rank0 = (FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
                  FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=True))
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, *only_rank0):
        saved = model.state_dict()
        optim_saved = FSDP.optim_state_dict(model, opt)
    assert list(everywhere) == list(reference.state_dict())
    if rank == 0:
        assert list(saved) == list(everywhere)
        assert optim_saved["state"]["head.weight"]["exp_avg"].shape == (VOCAB, DIM)
    else:
        assert saved == {} and optim_saved == {}
    with FSDP.state_dict_type(model, StateDictType.SHARDED_STATE_DICT):
        sharded = model.state_dict()
        optim_sharded = FSDP.optim_state_dict(model, opt)
    assert all(isinstance(v, DTensor) for v in sharded.values())
    for how in ("full", "sharded"):
        again, _ = _pair(seed=7)
        again = FSDP(again, auto_wrap_policy=TRANSFORMER)
        again_opt = px.optim.AdamW(again.parameters(), lr=0.05)
        if how == "full":        # the whole model on every rank, the optimizer from rank 0
            again.load_state_dict(everywhere)
            with FSDP.state_dict_type(again, StateDictType.FULL_STATE_DICT, *only_rank0):
                FSDP.optim_state_dict_to_load(again, again_opt, optim_saved,
                                              load_directly=True)
        else:
            with FSDP.state_dict_type(again, StateDictType.SHARDED_STATE_DICT):
                again.load_state_dict(sharded)
                again_opt.load_state_dict(FSDP.optim_state_dict_to_load(
                    again, again_opt, optim_sharded))
        _assert_same(again, model, rtol=0, atol=0)
        whole, mine = _batch(5)
        for m, o in ((again, again_opt), (model, opt), (reference, ref_opt)):
            _loss(m, mine if m is not reference else whole).backward()
            o.step()
            o.zero_grad()
        _assert_same(again, model, rtol=0, atol=0)      # the same step: the state came along
        _assert_same(model, reference)


def test_summon_full_params(world):
    rank, size = world
    model = FSDP(Net().double(), auto_wrap_policy=TRANSFORMER)
    with FSDP.summon_full_params(model):
        assert model.module.head.weight.shape == (VOCAB, DIM)
        assert not isinstance(model.module.layers[0].module.up.weight, DTensor)
        with px.no_grad():
            model.module.layers[0].module.up.weight.fill_(0.5)
            model.module.head.bias.copy_(px.arange(VOCAB, dtype=px.float64))
    sd = model.state_dict()
    assert (sd["layers.0.up.weight"] == 0.5).all()
    assert sd["head.bias"].tolist() == list(range(VOCAB))
    with FSDP.summon_full_params(model, rank0_only=True, writeback=False):
        whole = not isinstance(model.module.head.weight, DTensor)
        assert whole == (rank == 0)
    assert isinstance(model.module.head.weight, DTensor)


def test_sync_module_states_and_meta_init(world):
    rank, size = world
    px.manual_seed(rank)                        # a different model on every rank
    model = FSDP(Net().double(), auto_wrap_policy=TRANSFORMER, sync_module_states=True)
    px.manual_seed(0)
    reference = Net().double()                  # rank 0's
    _assert_same(model, reference, rtol=0, atol=0)

    with px.device("meta"):
        model = Net().double()

    def init(module):                            # called on each module, as PyTorch does
        module.to_empty(device="cpu", recurse=False)
        with px.no_grad():
            for name, p in module.named_parameters(recurse=False):
                p.fill_(0.1 * len(name))
    model = FSDP(model, auto_wrap_policy=TRANSFORMER, param_init_fn=init)
    for k, v in model.state_dict().items():
        assert (v == 0.1 * len(k.rsplit(".", 1)[1])).all(), k
    with px.device("meta"):
        model = Net().double()
    px.manual_seed(1)
    model = FSDP(model, auto_wrap_policy=TRANSFORMER)    # to_empty + reset_parameters()
    reference = Net().double()
    px.manual_seed(1)         # the units are made bottom-up, each breadth-first
    for m in (*reference.layers[0].children(), *reference.layers[1].children(),
              reference.embed, reference.head):
        m.reset_parameters()
    _assert_same(model, reference, rtol=0, atol=0)


class TiedNet(Net):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.head.weight = self.embed.weight


def test_weights_tied_across_units_train_as_one_process(world):
    """The embedding and the tied head wrapped apart (PyTorch's FSDP1 fails past one rank
    here): the weight is the root unit's, and one tensor trains."""
    px.manual_seed(0)
    model, reference = TiedNet().double(), TiedNet().double()
    reference.load_state_dict(model.state_dict())
    model = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({nn.Embedding, nn.Linear}))
    assert len(list(model.parameters())) == len(list(reference.parameters()))
    _train(model, reference)
    _assert_same(model, reference)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Linear(3, 3)
        self.q = nn.Linear(3, 3)

    def forward(self, x, use_q):
        h = self.p(x)
        return self.q(h) if use_q else h


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.branchy = Branchy()
        self.out = nn.Linear(3, 1)

    def forward(self, x, use_q):
        return self.out(self.branchy(x, use_q))


def test_parameters_used_on_some_ranks_get_zero_gradients_elsewhere(world):
    """Rank 1 alone uses q, inside a unit: FSDP1's flat parameter reduces zeros from the
    other ranks (the collective was a different size on each: an MPI abort)."""
    model, x = _train_with_rank_dependent_use(world, Outer, lambda r: r == 1)
    (model(x[:2], False) ** 2).mean().backward()     # no rank uses q: zeros, as FSDP1's
    assert (model.module.branchy.module.q.weight.grad.full_tensor() == 0).all()


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Branchy() for _ in range(3))

    def forward(self, x, skip_q_of):
        for i, block in enumerate(self.blocks):
            x = block(x, i != skip_q_of)
        return x


def test_a_parameter_unused_on_some_ranks_mid_model_trains_as_one_process(world):
    """Rank 0 leaves q unused in the middle unit only (conditional computation): each unit
    reduces once the parameters its forward read have their gradients, so every rank
    reduces the units in the same order (a hang with FULL_SHARD when the unit waited for
    all its parameters), and the weights follow one process's."""
    _train_with_rank_dependent_use(world, Chain, lambda r: 1 if r == 0 else -1)


def _train_with_rank_dependent_use(world, make, flag_of):
    """Two SGD steps of FSDP(make()) units of Branchy, each rank's forward given
    flag_of(rank), against one process averaging the ranks' losses; returns the model and
    the batch."""
    rank, size = world
    px.manual_seed(0)
    model, reference = make().double(), make().double()
    reference.load_state_dict(model.state_dict())
    model = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({Branchy}))
    opt = px.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = px.optim.SGD(reference.parameters(), lr=0.1)
    x = px.tensor(np.random.default_rng(0).standard_normal((2 * size, 3)))
    for _ in range(2):
        model(x[2 * rank:2 * rank + 2], flag_of(rank)).square().mean().backward()
        sum(reference(x[2 * r:2 * r + 2], flag_of(r)).square().mean()
            for r in range(size)).div(size).backward()
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()
    _assert_same(model, reference)
    return model, x


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.p, self.q = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):
        h = self.p(x)
        return h, self.q(h)


class Fork(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(TwoOutputs() for _ in range(3))

    def forward(self, x, use_second_of):
        for i, block in enumerate(self.blocks):
            h, k = block(x)
            x = h + k if i == use_second_of else h
        return x


def test_units_reduced_out_of_order_raise_on_every_rank(world):
    """The middle unit's second output (q's) reaches the loss on rank 1 only: on the other
    ranks q's gradient never comes, that unit reduces at the end of backward, and their
    second reduce-scatter is the first unit's, of the same size. Every rank raises instead
    of mixing the two. (SHARD_GRAD_OP: no all-gather between them in backward; with
    FULL_SHARD the next unit's all-gather meets a reduce-scatter: a hang, see the README.)"""
    rank, size = world
    px.manual_seed(0)
    model = FSDP(Fork().double(), auto_wrap_policy=ModuleWrapPolicy({TwoOutputs}),
                 sharding_strategy=ShardingStrategy.SHARD_GRAD_OP)
    x = px.tensor(np.random.default_rng(0).standard_normal((2, 3)))
    with pytest.raises(RuntimeError, match="reduced the gradients of different units"):
        model(x, 1 if rank == 1 else -1).sum().backward()
    dist.barrier()


def test_summon_full_params_keeps_no_sync_gradients_and_rank0_only_grads(world):
    rank, size = world
    model, reference = _pair()
    model = FSDP(model, auto_wrap_policy=TRANSFORMER)
    for micro in range(3):
        whole, mine = _batch(micro)
        if micro < 2:
            with model.no_sync():
                _loss(model, mine).backward()
            with FSDP.summon_full_params(model):    # e.g. logging the weights
                pass
        else:
            _loss(model, mine).backward()
        _loss(reference, whole).backward()
    with FSDP.summon_full_params(model, rank0_only=True, writeback=False, with_grads=True):
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            if rank == 0:                           # every rank gathered (no hang)
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10,
                                           atol=1e-13, err_msg=name)
            else:
                assert isinstance(p, DTensor)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.full_tensor().numpy(), q.grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=name)


def test_sharded_grad_scaler_skips_every_rank(world):
    """An inf in one rank's shard, or in one rank's gradient of an ignored (unsharded)
    module, skips the step on every rank."""
    rank, size = world
    for where in ("shard", "ignored"):
        px.manual_seed(0)
        net = Net()
        model = FSDP(net, auto_wrap_policy=TRANSFORMER,
                     ignored_modules=[net.head] if where == "ignored" else None)
        opt = px.optim.SGD(model.parameters(), lr=0.1)
        scaler = ShardedGradScaler("cpu", init_scale=4.0)
        before = model.state_dict()
        scaler.scale(_loss(model, _batch(0)[1])).backward()
        if rank == 1:
            model.module.head.weight.grad._data[0, 0] = np.inf
        scaler.step(opt)
        scaler.update()
        assert scaler.get_scale() == 2.0
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), before[k].numpy(), err_msg=k)
