"""FSDP1's `FullyShardedDataParallel` in one process (a world of one) next to PyTorch's own
FSDP1 on gloo (CPU, `use_orig_params=True`): the same units picked by every auto-wrap policy,
the same names (parameters, state dicts, optimizer state dicts), the same training trajectory
(each sharding strategy, mixed precision, no_sync, clip_grad_norm_), and the arguments that
cannot be honoured refused by name. Many ranks: test_mpi_fsdp1.py."""
import contextlib
import functools

import numpy as np
import pytest
import torch
import torch.distributed.fsdp as tfsdp
import torch.distributed.fsdp.wrap as twrap

import phalanx as px
import phalanx.distributed.fsdp as fsdp
import phalanx.distributed.fsdp.wrap as wrap
from phalanx.distributed.fsdp import FullyShardedDataParallel as FSDP
from phalanx.distributed.tensor import DTensor

TORCH_CPU = torch.device("cpu")


@functools.lru_cache(maxsize=None)
def _classes(lib):
    """(Net, Block) of one library: a BatchNorm, attention blocks in a ModuleList, a head."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.ff = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 8))

        def forward(self, x):
            h = x + self.attn(x, x, x, need_weights=False)[0]
            return h + self.ff(self.norm(h))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)
            self.embed = nn.Linear(4, 8)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = self.embed(self.bn(x.transpose(1, 2)).transpose(1, 2))
            for block in self.blocks:
                h = block(h)
            return self.head(h)
    return Net, Block


def _pair(dtype="float64"):
    """(ours, theirs): the same weights."""
    torch.manual_seed(0)
    theirs = _classes(torch)[0]().to(getattr(torch, dtype))
    ours = _classes(px)[0]().to(getattr(px, dtype))
    ours.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


def _policies(lib):
    """Every kind of policy PyTorch takes, built for one library."""
    w = wrap if lib is px else twrap
    Net, Block = _classes(lib)
    return {
        **{f"size_{n}": functools.partial(w.size_based_auto_wrap_policy, min_num_params=n)
           for n in (100, 300, 600, 1000)},
        "size_no_leaves": functools.partial(w.size_based_auto_wrap_policy, min_num_params=100,
                                            force_leaf_modules=set(),
                                            exclude_wrap_modules=set()),
        "transformer": functools.partial(w.transformer_auto_wrap_policy,
                                         transformer_layer_cls={Block}),
        "lambda": functools.partial(w.lambda_auto_wrap_policy,
                                    lambda_fn=lambda m: isinstance(m, lib.nn.Linear)),
        "always": w.always_wrap_policy,
        "module_policy": w.ModuleWrapPolicy({Block, lib.nn.LayerNorm}),
        "custom": w.CustomPolicy(lambda m: isinstance(m, lib.nn.Sequential)),
    }


def _units(model, cls):
    return [name for name, m in model.named_modules() if isinstance(m, cls)]


@pytest.mark.parametrize("policy", list(_policies(px)))
@pytest.mark.parametrize("mixed", [False, True], ids=["", "mixed_precision"])
def test_auto_wrap_picks_pytorchs_units(world_of_one, torch_world, policy, mixed):
    """With mixed precision the BatchNorm gets a unit of its own (PyTorch's
    _module_classes_to_ignore)."""
    ours, theirs = _pair()
    kw = lambda lib: dict(mixed_precision=(fsdp if lib is px else tfsdp).MixedPrecision(
        param_dtype=lib.float32)) if mixed else {}
    ours = FSDP(ours, auto_wrap_policy=_policies(px)[policy], **kw(px))
    theirs = tfsdp.FullyShardedDataParallel(theirs, auto_wrap_policy=_policies(torch)[policy],
                                            device_id=TORCH_CPU, use_orig_params=True,
                                            **kw(torch))
    assert _units(ours, FSDP) == _units(theirs, tfsdp.FullyShardedDataParallel)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if mixed:
        assert ours.bn.mixed_precision.param_dtype is None    # full precision, as PyTorch's
    if policy in ("size_100", "transformer", "always", "custom"):
        assert len(_units(ours, FSDP)) > 2


def test_wrapped_names_and_module(world_of_one):
    model = FSDP(px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2)))
    assert model.module is model._fsdp_wrapped_module
    assert isinstance(model.module, px.nn.Sequential) and isinstance(model[0], px.nn.Linear)
    assert [n for n, _ in model.named_parameters()][:1] == ["_fsdp_wrapped_module.0.weight"]
    assert all(isinstance(p, DTensor) for p in model.parameters())
    with FSDP.summon_full_params(model):
        assert [n for n, _ in model.named_parameters()][:1] == ["0.weight"]
        assert not isinstance(model.module[0].weight, DTensor)
    assert isinstance(model.module[0].weight, DTensor)
    with px.no_grad():          # an evaluation leaves the shards registered (an optimizer
        model(px.ones(1, 3))    # built afterwards must get them, as FSDP1's stay the same)
    assert all(isinstance(p, DTensor) for p in model.parameters())


def _torch_model(theirs, **kwargs):
    return tfsdp.FullyShardedDataParallel(theirs, device_id=TORCH_CPU, use_orig_params=True,
                                          **kwargs)


def _steps(ours, theirs, steps=3, dtype="float64", clip=None, accumulate=1, optim="Adam"):
    """Train both alike. (SGD where rounding differs: Adam turns the noise of a zero
    gradient, as attention's key bias has, into steps of its learning rate.)"""
    opt = getattr(px.optim, optim)(ours.parameters(), lr=0.05)
    topt = getattr(torch.optim, optim)(theirs.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        for micro in range(accumulate):
            x = rng.standard_normal((4, 5, 4)).astype(dtype)
            sync = micro == accumulate - 1
            with (contextlib.nullcontext() if sync else ours.no_sync()):
                ours(px.tensor(x)).pow(2).mean().backward()
            with (contextlib.nullcontext() if sync else theirs.no_sync()):
                theirs(torch.tensor(x)).pow(2).mean().backward()
        if clip is not None:
            norm, tnorm = ours.clip_grad_norm_(clip), theirs.clip_grad_norm_(clip)
            np.testing.assert_allclose(norm.item(), tnorm.item(), rtol=1e-6)
        opt.step()
        topt.step()
        opt.zero_grad()
        topt.zero_grad()


def _assert_same(ours, theirs, rtol=1e-9, atol=1e-10):
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert str(mine[k].dtype).split(".")[-1] == str(ref[k].dtype).split(".")[-1], k
        np.testing.assert_allclose(mine[k].numpy(), ref[k].numpy(), rtol=rtol, atol=atol,
                                   err_msg=k)


@pytest.mark.parametrize("strategy", ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD"])
def test_training_follows_pytorch_fsdp1(world_of_one, torch_world, strategy):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"],
                sharding_strategy=getattr(fsdp.ShardingStrategy, strategy))
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"],
                          sharding_strategy=getattr(tfsdp.ShardingStrategy, strategy))
    _steps(ours, theirs, clip=0.5)
    _assert_same(ours, theirs)


def test_no_sync_accumulates_as_pytorch(world_of_one, torch_world):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["size_300"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["size_300"])
    _steps(ours, theirs, steps=2, accumulate=3)
    _assert_same(ours, theirs)


def test_mixed_precision_follows_pytorch(world_of_one, torch_world):
    """float32 model, float16 compute, float32 reduction, float16 buffers; the BatchNorm in
    its own full-precision unit. Buffers come back in float32 in the state dict."""
    ours, theirs = _pair("float32")
    mp = lambda lib, m: m.MixedPrecision(param_dtype=lib.float16, reduce_dtype=lib.float32,
                                         buffer_dtype=lib.float16)
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"], mixed_precision=mp(px, fsdp))
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"],
                          mixed_precision=mp(torch, tfsdp))
    with px.no_grad(), torch.no_grad():     # (PyTorch's FSDP1 wants a backward after a
        out, tout = ours(px.ones(2, 5, 4)), theirs(torch.ones(2, 5, 4))   # grad forward)
    assert out.dtype == px.float16 and tout.dtype == torch.float16
    _steps(ours, theirs, steps=2, dtype="float32", optim="SGD")
    _assert_same(ours, theirs, rtol=2e-2, atol=2e-3)


def test_state_dict_types_and_optimizer_state_match_pytorch(world_of_one, torch_world,
                                                            tmp_path):
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"])
    _steps(ours, theirs, steps=1)
    opt = px.optim.Adam(ours.parameters(), lr=0.05)
    topt = torch.optim.Adam(theirs.parameters(), lr=0.05)
    _steps_with(ours, opt, theirs, topt)
    full = FSDP.optim_state_dict(ours, opt)
    tfull = tfsdp.FullyShardedDataParallel.optim_state_dict(theirs, topt)
    assert set(full["state"]) == set(tfull["state"])
    assert full["param_groups"][0]["params"] == tfull["param_groups"][0]["params"]
    for name, entry in tfull["state"].items():
        np.testing.assert_allclose(full["state"][name]["exp_avg"].numpy(),
                                   entry["exp_avg"].numpy(), rtol=1e-10, atol=1e-14)
    cfg = (fsdp.ShardedStateDictConfig(), fsdp.ShardedOptimStateDictConfig())
    with FSDP.state_dict_type(ours, fsdp.StateDictType.SHARDED_STATE_DICT, *cfg):
        sharded = ours.state_dict()
        sharded_optim = FSDP.optim_state_dict(ours, opt)
        assert FSDP.get_state_dict_type(ours).state_dict_type.name == "SHARDED_STATE_DICT"
    assert FSDP.get_state_dict_type(ours).state_dict_type.name == "FULL_STATE_DICT"
    assert all(isinstance(v, DTensor) for k, v in sharded.items() if "running" not in k
               and "num_batches" not in k)
    assert isinstance(sharded_optim["state"]["head.weight"]["exp_avg"], DTensor)
    assert list(sharded) == list(theirs.state_dict())
    # resume from either: the same next step as the model that saved it
    for model_sd, optim_sd in ((ours.state_dict(), full), (sharded, sharded_optim)):
        again, _ = _pair()
        again = FSDP(again, auto_wrap_policy=_policies(px)["transformer"])
        again.load_state_dict(model_sd)
        again_opt = px.optim.Adam(again.parameters(), lr=0.05)
        again_opt.load_state_dict(FSDP.optim_state_dict_to_load(again, again_opt, optim_sd))
        x = px.ones(2, 5, 4, dtype=px.float64)
        for model, o in ((ours, opt), (again, again_opt)):
            model(x).sum().backward()
            o.step()
            o.zero_grad()
        for (name, p), q in zip(again.named_parameters(), ours.parameters()):
            np.testing.assert_array_equal(p.full_tensor().detach().numpy(),
                                          q.full_tensor().detach().numpy(), err_msg=name)
        _steps_with(ours, opt, theirs, topt)       # both move on: theirs stays the reference
    # the deprecated full_optim_state_dict: name keyed too, as PyTorch's
    old = FSDP.full_optim_state_dict(ours, opt)
    assert set(old["state"]) == set(tfull["state"])
    loadable = FSDP.shard_full_optim_state_dict(old, ours, optim=opt)
    assert set(loadable["state"]) == set(range(len(list(ours.parameters()))))


def _steps_with(ours, opt, theirs, topt):
    x = np.linspace(-1, 1, 40).reshape(2, 5, 4)
    ours(px.tensor(x)).pow(2).sum().backward()
    theirs(torch.tensor(x)).pow(2).sum().backward()
    opt.step()
    topt.step()
    opt.zero_grad()
    topt.zero_grad()


def test_full_state_dict_config_and_buffer_dtypes(world_of_one, torch_world):
    ours, theirs = _pair("float32")
    mp = lambda lib, m: m.MixedPrecision(param_dtype=lib.float16, buffer_dtype=lib.float16)
    ours = FSDP(ours, mixed_precision=mp(px, fsdp))
    theirs = _torch_model(theirs, mixed_precision=mp(torch, tfsdp))
    _steps(ours, theirs, steps=1, dtype="float32", optim="SGD")
    assert ours.module.bn.running_mean.dtype == px.float16
    cfg = lambda m: m.FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(ours, fsdp.StateDictType.FULL_STATE_DICT, cfg(fsdp)):
        mine = ours.state_dict()
    with tfsdp.FullyShardedDataParallel.state_dict_type(
            theirs, tfsdp.StateDictType.FULL_STATE_DICT, cfg(tfsdp)):
        ref = theirs.state_dict()
    assert list(mine) == list(ref)
    for k in ref:
        assert str(mine[k].dtype).split(".")[-1] == str(ref[k].dtype).split(".")[-1], k
        np.testing.assert_allclose(mine[k].numpy(), ref[k].numpy(), rtol=1e-2, atol=1e-3,
                                   err_msg=k)


def test_summon_full_params_writes_back_and_apply_initialises(world_of_one):
    model = FSDP(px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2)).double(),
                 auto_wrap_policy=wrap.ModuleWrapPolicy({px.nn.Linear}),
                 mixed_precision=fsdp.MixedPrecision(param_dtype=px.float32))
    with FSDP.summon_full_params(model, writeback=False):
        assert model.module[1].module.weight.dtype == px.float64    # not param_dtype
        with px.no_grad():
            model.module[1].module.weight.fill_(5.0)
    assert (model.state_dict()["1.weight"] != 5).all()
    with FSDP.summon_full_params(model):
        with px.no_grad():
            model.module[1].module.weight.fill_(5.0)
    assert (model.state_dict()["1.weight"] == 5).all()

    def init(m):
        if isinstance(m, px.nn.Linear):
            px.nn.init.constant_(m.weight, 0.25)
    model.apply(init)
    assert all((v == 0.25).all() for k, v in model.state_dict().items() if "weight" in k)
    out = model(px.ones(1, 3, dtype=px.float64))        # the forward sees the new values
    expected = (0.25 * 4 * (0.25 * 3 + model.state_dict()["0.bias"]).sum() / 4 +
                model.state_dict()["1.bias"])
    np.testing.assert_allclose(out.detach().numpy()[0], expected.numpy(), rtol=1e-6)


def test_meta_device_init(world_of_one):
    px.manual_seed(3)
    reference = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    with px.device("meta"):
        model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    seen = []

    def init(m):
        seen.append(type(m).__name__)
        m.to_empty(device="cpu", recurse=False)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    px.manual_seed(3)
    model = FSDP(model, param_init_fn=init)
    assert seen == ["Sequential", "Linear", "Linear"]          # breadth-first, as PyTorch
    for k, v in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy())
    with px.device("meta"):                                      # no param_init_fn:
        model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    px.manual_seed(3)                                            # reset_parameters()
    model = FSDP(model, auto_wrap_policy=wrap.always_wrap_policy)
    for k, v in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy())


def test_enable_wrap_and_nested_wrappers(world_of_one, torch_world):
    with wrap.enable_wrap(wrapper_cls=FSDP, sharding_strategy=fsdp.ShardingStrategy.NO_SHARD):
        inner = wrap.wrap(px.nn.Linear(3, 4))
        other = wrap.wrap(px.nn.Linear(4, 2), sharding_strategy=None)
    assert isinstance(inner, FSDP) and inner.sharding_strategy.name == "NO_SHARD"
    assert other.sharding_strategy.name == "FULL_SHARD"
    assert not isinstance(wrap.wrap(px.nn.Linear(1, 1)), FSDP)
    model = FSDP(px.nn.Sequential(inner, other))           # wrapping wrapped children by hand
    assert _units(model, FSDP) == ["", "_fsdp_wrapped_module.0", "_fsdp_wrapped_module.1"]
    assert FSDP.fsdp_modules(model, root_only=True) == [model]
    assert len(FSDP.fsdp_modules(model)) == 3
    model(px.ones(2, 3)).sum().backward()
    assert model.check_is_root() and not inner.check_is_root()
    with pytest.raises(RuntimeError, match="root FSDP"):
        inner.clip_grad_norm_(1.0)
    with pytest.raises(ValueError, match="not already have FSDP applied but found 0"):
        FSDP(px.nn.Sequential(FSDP(px.nn.Linear(2, 2)), px.nn.Linear(2, 2)),
             auto_wrap_policy=wrap.always_wrap_policy)
    twice = FSDP(FSDP(px.nn.Linear(2, 3)))                  # PyTorch takes it too
    assert list(twice.state_dict()) == ["weight", "bias"]
    twice(px.ones(1, 2)).sum().backward()
    assert twice.module.module.weight.grad is not None


def test_refusals_name_the_argument(world_of_one):
    from phalanx.distributed.device_mesh import init_device_mesh
    linear = lambda: px.nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match="keep_low_precision_grads"):
        FSDP(linear(), mixed_precision=fsdp.MixedPrecision(keep_low_precision_grads=True))
    with pytest.raises(NotImplementedError, match="LOCAL_STATE_DICT"):
        FSDP.set_state_dict_type(FSDP(linear()), fsdp.StateDictType.LOCAL_STATE_DICT)
    with pytest.raises(RuntimeError, match="Expected state_dict_config of type"):
        FSDP.set_state_dict_type(FSDP(linear()), fsdp.StateDictType.FULL_STATE_DICT,
                                 fsdp.ShardedStateDictConfig())
    with pytest.raises(NotImplementedError, match="register_comm_hook"):
        FSDP(linear()).register_comm_hook(None, None)
    with pytest.raises(NotImplementedError, match="process_group tuple"):
        FSDP(linear(), sharding_strategy=fsdp.ShardingStrategy.HYBRID_SHARD,
             process_group=(None, None))
    with pytest.raises(ValueError, match="2-D device_mesh"):
        FSDP(linear(), sharding_strategy=fsdp.ShardingStrategy.HYBRID_SHARD,
             device_mesh=init_device_mesh("cpu", (1,)))
    with pytest.raises(ValueError, match="both process_group and device_mesh"):
        FSDP(linear(), process_group=px.distributed.group.WORLD,
             device_mesh=init_device_mesh("cpu", (1,)))
    with pytest.raises(ValueError, match="should not include FSDP modules"):
        FSDP(linear(), ignored_modules=[FSDP(linear())])
    with pytest.raises(ValueError, match="both ignored_modules and ignored_states"):
        FSDP(linear(), ignored_modules=[], ignored_states=[])
    with pytest.raises(NotImplementedError, match="writeback=True and rank0_only=True"):
        with FSDP.summon_full_params(FSDP(linear()), rank0_only=True):
            pass
    with pytest.raises(NotImplementedError, match="optim_input"):
        FSDP.full_optim_state_dict(FSDP(linear()), None, optim_input=[])
    with pytest.raises(RuntimeError, match="can't use device cuda:0"):
        if px.cuda.is_available():
            raise RuntimeError("can't use device cuda:0 (skipped: a GPU is here)")
        FSDP(linear(), device_id=0)


def test_ignored_modules_stay_whole_and_unsynced(world_of_one):
    model = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    wrapped = FSDP(model, ignored_modules=[model[1]])
    assert isinstance(model[0].weight, DTensor) and not isinstance(model[1].weight, DTensor)
    other = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Linear(4, 2))
    FSDP(other, ignored_states=[other[0].bias])
    assert isinstance(other[0].weight, DTensor) and not isinstance(other[0].bias, DTensor)
    wrapped(px.ones(1, 3)).sum().backward()
    assert model[1].weight.grad is not None and list(wrapped.state_dict()) == \
        ["0.weight", "0.bias", "1.weight", "1.bias"]


@functools.lru_cache(maxsize=None)
def _tied_lm(lib):
    nn = lib.nn

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.mid = nn.Linear(8, 8)
            self.head = nn.Linear(8, 20, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, tokens):
            return self.head(lib.tanh(self.mid(self.emb(tokens))))
    return LM


def test_tied_weights_in_sibling_units_stay_tied(world_of_one, torch_world):
    """Embedding and head wrapped apart: the tied weight goes to the lowest unit holding
    both (the root), one tensor as PyTorch's (which, past one rank, fails here)."""
    torch.manual_seed(0)
    theirs = _tied_lm(torch)().double()
    ours = _tied_lm(px)().double()
    ours.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    policy = lambda lib, w: w.ModuleWrapPolicy({lib.nn.Embedding, lib.nn.Linear})
    ours = FSDP(ours, auto_wrap_policy=policy(px, wrap))
    theirs = _torch_model(theirs, auto_wrap_policy=policy(torch, twrap))
    assert _units(ours, FSDP) == _units(theirs, tfsdp.FullyShardedDataParallel)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert ours.module.head.module.weight is ours.module.emb.module.weight
    opt, topt = px.optim.SGD(ours.parameters(), lr=1.0), torch.optim.SGD(theirs.parameters(),
                                                                         lr=1.0)
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    for _ in range(2):
        ours(px.tensor(tokens)).pow(2).mean().backward()
        theirs(torch.tensor(tokens)).pow(2).mean().backward()
        opt.step()
        topt.step()
        opt.zero_grad()
        topt.zero_grad()
    _assert_same(ours, theirs)
    assert (ours.state_dict()["emb.weight"] == ours.state_dict()["head.weight"]).all()


def test_summon_full_params_keeps_no_sync_gradients(world_of_one, torch_world):
    """Gradients accumulated under no_sync survive summon_full_params (and apply, which
    summons): the synced backward after it reduces every microbatch's."""
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, 5, 4)) for _ in range(3)]
    for x in xs[:2]:
        with ours.no_sync():
            ours(px.tensor(x)).pow(2).mean().backward()
        with theirs.no_sync():
            theirs(torch.tensor(x)).pow(2).mean().backward()
        with FSDP.summon_full_params(ours, with_grads=True):
            with tfsdp.FullyShardedDataParallel.summon_full_params(theirs, with_grads=True):
                for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
                    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9,
                                               atol=1e-12, err_msg=name)
        ours.apply(lambda m: None)
    ours(px.tensor(xs[2])).pow(2).mean().backward()
    theirs(torch.tensor(xs[2])).pow(2).mean().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.full_tensor().numpy(), q.grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=name)


def test_state_dict_names_under_checkpointing_and_submodules(world_of_one, torch_world):
    from phalanx.distributed.algorithms._checkpoint import checkpoint_wrapper as pcw
    from phalanx.distributed.checkpoint import state_dict as dsd
    from torch.distributed.algorithms._checkpoint import checkpoint_wrapper as tcw
    from torch.distributed.checkpoint import state_dict as tdsd
    ours, theirs = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"])
    pcw.apply_activation_checkpointing(ours, check_fn=lambda m: isinstance(m, px.nn.Linear))
    tcw.apply_activation_checkpointing(theirs, check_fn=lambda m: isinstance(m, torch.nn.Linear))
    _steps(ours, theirs, steps=1)
    opt, topt = px.optim.Adam(ours.parameters()), torch.optim.Adam(theirs.parameters())
    ours(px.ones(2, 5, 4, dtype=px.float64)).sum().backward()
    theirs(torch.ones(2, 5, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    topt.step()
    keys = set(FSDP.optim_state_dict(ours, opt)["state"])
    assert keys == set(tfsdp.FullyShardedDataParallel.optim_state_dict(theirs, topt)["state"])
    assert keys == set(ours.state_dict()) - {"bn.running_mean", "bn.running_var",
                                             "bn.num_batches_tracked"}
    with pytest.warns(FutureWarning):
        tsub = tdsd.get_model_state_dict(theirs, submodules={theirs.module.blocks[1]})
    sub = dsd.get_model_state_dict(ours, submodules={ours.module.blocks[1]})
    assert list(sub) == list(tsub) and sub
    inner = dsd.get_model_state_dict(ours, submodules={ours.module.blocks[1].module.ff},
                                     options=dsd.StateDictOptions(keep_submodule_prefixes=False))
    assert list(inner) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_legacy_optimizer_state_dict_helpers(world_of_one, torch_world):
    """sharded_optim_state_dict / flatten_sharded_optim_state_dict round trip, and
    rekey_optim_state_dict between FSDP's names and a plain optimizer's indices, as
    PyTorch's."""
    TF = tfsdp.FullyShardedDataParallel
    ours, theirs = _pair()
    plain, tplain = _pair()
    ours = FSDP(ours, auto_wrap_policy=_policies(px)["transformer"])
    theirs = _torch_model(theirs, auto_wrap_policy=_policies(torch)["transformer"])
    opt, topt = px.optim.Adam(ours.parameters(), lr=0.05), torch.optim.Adam(
        theirs.parameters(), lr=0.05)
    for m, o, lib in ((ours, opt, px), (theirs, topt, torch)):
        m(lib.ones(2, 5, 4, dtype=lib.float64)).pow(2).sum().backward()
        o.step()
    sharded = FSDP.sharded_optim_state_dict(ours, opt)
    assert all(isinstance(v, DTensor) for st in sharded["state"].values()
               for k, v in st.items() if k != "step")
    again = px.optim.Adam(ours.parameters(), lr=0.05)
    again.load_state_dict(FSDP.flatten_sharded_optim_state_dict(sharded, ours, again))
    a, b = opt.state_dict(), again.state_dict()
    for i in a["state"]:
        for k in a["state"][i]:
            whole = lambda v: v.full_tensor() if isinstance(v, DTensor) else v
            np.testing.assert_array_equal(whole(a["state"][i][k]).numpy(),
                                          whole(b["state"][i][k]).numpy())
    full = FSDP.full_optim_state_dict(ours, opt)
    tfull = TF.full_optim_state_dict(theirs, topt)
    tids = TF.rekey_optim_state_dict(tfull, tfsdp.OptimStateKeyType.PARAM_ID, tplain)
    ids = FSDP.rekey_optim_state_dict(full, fsdp.OptimStateKeyType.PARAM_ID, plain)
    assert sorted(ids["state"]) == sorted(tids["state"])
    assert [g["params"] for g in ids["param_groups"]] == \
        [g["params"] for g in tids["param_groups"]]
    plain_opt = px.optim.Adam(plain.parameters(), lr=0.05)
    plain_opt.load_state_dict(ids)             # the unwrapped model takes it
    for i, st in tids["state"].items():
        np.testing.assert_allclose(ids["state"][i]["exp_avg"].numpy(),
                                   st["exp_avg"].numpy(), rtol=1e-9, atol=1e-12)
    names = FSDP.rekey_optim_state_dict(plain_opt.state_dict(),
                                        fsdp.OptimStateKeyType.PARAM_NAME, plain)
    tnames = TF.rekey_optim_state_dict(tids, tfsdp.OptimStateKeyType.PARAM_NAME, tplain)
    assert sorted(names["state"]) == sorted(tnames["state"]) == sorted(full["state"])
    assert names["param_groups"][0]["params"] == tnames["param_groups"][0]["params"]
    assert FSDP.rekey_optim_state_dict(full, fsdp.OptimStateKeyType.PARAM_NAME, ours) is full
    with pytest.raises(NotImplementedError, match="optim_input"):
        FSDP.rekey_optim_state_dict(full, fsdp.OptimStateKeyType.PARAM_ID, plain,
                                    optim_input=[])


def test_sharded_grad_scaler_signature_and_skip(world_of_one):
    from phalanx.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
    scaler = ShardedGradScaler("cpu", 8.0, 0.25, 4.0, 1)     # PyTorch's positional order
    assert (scaler._backoff_factor, scaler._growth_factor) == (0.25, 4.0)
    model = FSDP(px.nn.Linear(3, 2), mixed_precision=fsdp.MixedPrecision(
        param_dtype=px.float16))
    opt = px.optim.SGD(model.parameters(), lr=0.1)
    loss = model(px.ones(1, 3)).sum()
    assert loss.dtype == px.float16 and scaler.scale(loss).dtype == px.float16
    scaler.scale(loss).backward()
    before = model.state_dict()["weight"].numpy().copy()
    model.module.weight.grad._data[0, 0] = np.inf
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0
    np.testing.assert_array_equal(model.state_dict()["weight"].numpy(), before)
